// Builds dist/ as Grafana loads a plugin: module.js is an AMD module (Grafana's SystemJS loader
// expects AMD), plugin.json, README.md and the logo beside it.
//
// The libraries below are not bundled: Grafana hands its own instances to every plugin, and a
// second React or @grafana/ui in the bundle would break hooks and theming. JSX compiles to
// React.createElement (tsconfig "jsx": "react") so that the bundle needs only `react`, which
// every Grafana version we support shares (react/jsx-runtime is not shared by older ones).
//
// The backend executable (gpx_kindling_linux_amd64) is copied into dist/ by a separate step after
// this build, because the build empties dist/ first.
import { readFileSync, rmSync } from 'node:fs';
import typescript from '@rollup/plugin-typescript';

const DIST = 'dist';

const SHARED_BY_GRAFANA = [
  'react',
  'react-dom',
  '@grafana/data',
  '@grafana/ui',
  '@grafana/runtime',
  '@emotion/css',
  'rxjs',
];

const pkg = JSON.parse(readFileSync('package.json', 'utf8'));

/** Empties dist/ once at the start, then emits the plugin's static files as assets. */
function pluginFiles() {
  return {
    name: 'kindling-plugin-files',
    buildStart() {
      rmSync(DIST, { recursive: true, force: true });
    },
    generateBundle() {
      const today = new Date().toISOString().slice(0, 10);
      const pluginJson = readFileSync('src/plugin.json', 'utf8')
        .replaceAll('%VERSION%', pkg.version)
        .replaceAll('%TODAY%', today);
      this.emitFile({ type: 'asset', fileName: 'plugin.json', source: pluginJson });
      this.emitFile({ type: 'asset', fileName: 'README.md', source: readFileSync('README.md') });
      this.emitFile({ type: 'asset', fileName: 'img/logo.svg', source: readFileSync('src/img/logo.svg') });
    },
  };
}

export default {
  input: 'src/module.ts',
  external: (id) => SHARED_BY_GRAFANA.some((name) => id === name || id.startsWith(`${name}/`)),
  output: {
    dir: DIST,
    entryFileNames: 'module.js',
    format: 'amd',
    sourcemap: true,
  },
  plugins: [
    typescript({ tsconfig: './tsconfig.json', exclude: ['**/*.test.ts', '**/*.test.tsx', 'jest.setup.ts'] }),
    pluginFiles(),
  ],
  onwarn(warning, warn) {
    // Nothing else may stay external: a new runtime dependency needs bundling (add
    // @rollup/plugin-node-resolve), or it would be missing in Grafana at load time.
    if (warning.code === 'UNRESOLVED_IMPORT') {
      throw new Error(`Unbundled import "${warning.exporter}": bundle it or add it to SHARED_BY_GRAFANA`);
    }
    warn(warning);
  },
};
