// Bundles harness.tsx (React, @grafana/ui and the plugin's editors) into dist/ for the browser.
import { build } from 'esbuild';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const DIST = join(here, 'dist');

export async function buildHarness() {
  mkdirSync(DIST, { recursive: true });
  await build({
    entryPoints: [join(here, 'harness.tsx')],
    bundle: true,
    outfile: join(DIST, 'harness.js'),
    format: 'iife',
    platform: 'browser',
    define: { 'process.env.NODE_ENV': '"production"', global: 'window' },
    loader: { '.svg': 'dataurl', '.woff': 'dataurl', '.woff2': 'dataurl', '.css': 'empty', '.png': 'dataurl' },
    logLevel: 'error',
  });
  writeFileSync(
    join(DIST, 'index.html'),
    '<!doctype html><html><head><meta charset="utf-8"><title>Kindling editors</title></head>' +
      '<body><div id="root"></div><script src="harness.js"></script></body></html>'
  );
  return join(DIST, 'index.html');
}
