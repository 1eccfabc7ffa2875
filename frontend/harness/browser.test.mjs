// The editors in a real browser: Debian's Chromium, driven by playwright-core, on the harness
// page (harness.tsx). It fills the datasource config, completes SQL, switches query types, reads
// the SQL the builders generate and the query JSON the editors save, and saves screenshots.
// Run: node harness/browser.test.mjs (from frontend/). Fails when Chromium is missing.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

import { buildHarness, DIST } from './build.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) {
  console.error(`browser test: ${CHROMIUM} is missing (apt-get install chromium; scripts/setup.sh does)`);
  process.exit(1);
}
const shots = process.env.KINDLING_SCREENSHOTS ?? join(DIST, 'screenshots');
mkdirSync(shots, { recursive: true });

const page_ = await buildHarness();
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update'],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`file://${page_}`);
  const json = async (id) => JSON.parse(await page.locator(`#${id}`).textContent());

  // Datasource config: one agent, then a wrong one shown inline once the field is left.
  await page.getByRole('button', { name: 'Add agent' }).click();
  await page.getByRole('textbox', { name: 'Agent 1', exact: true }).fill('10.0.0.5:50051');
  await page.keyboard.press('Tab');
  assert.deepEqual(await json('options'), { agents: ['10.0.0.5:50051'] });
  await page.getByRole('button', { name: 'Add agent' }).click();
  await page.getByRole('textbox', { name: 'Agent 2', exact: true }).fill('127.0.0.1:99999');
  await page.keyboard.press('Tab');
  assert.equal(
    (await page.getByRole('alert').textContent()).trim(),
    'Port must be a number from 1 to 65535, got "99999"'
  );
  await page.getByRole('textbox', { name: 'Server name' }).fill('agents.kindling');
  assert.equal((await json('options')).tlsServerName, 'agents.kindling');
  await page.locator('#config').screenshot({ path: join(shots, 'config.png') });

  // SQL with completion from the schema.
  const sql = page.getByRole('textbox', { name: 'SQL' });
  await sql.fill('');
  await sql.pressSequentially('SELECT re');
  await page.getByRole('button', { name: 'resource' }).click();
  assert.equal((await json('query')).rawSql, 'SELECT resource');
  // Highlighted: the keyword is drawn in another colour than the column name, under the field.
  const drawn = await page
    .locator('#query-editor pre span')
    .evaluateAll((spans) => spans.map((s) => [s.textContent, getComputedStyle(s).color]));
  assert.deepEqual(drawn.map(([text]) => text), ['SELECT', ' resource']);
  assert.notEqual(drawn[0][1], drawn[1][1]);
  await page.locator('#query-editor').screenshot({ path: join(shots, 'sql.png') });

  // A builder: its view's SQL is generated, shown and saved; Edit as SQL hands it over.
  await page.getByRole('radio', { name: 'Calls', exact: true }).click();
  await page.getByRole('radio', { name: 'Endpoints', exact: true }).click();
  await page.getByRole('textbox', { name: 'Node' }).fill('n1');
  const saved = await json('query');
  assert.equal(saved.queryType, 'calls');
  assert.equal(saved.view, 'endpoints');
  assert.equal(saved.format, 'table');
  assert.match(saved.rawSql, /FROM calls WHERE \$__timeFilter\(ts\) AND node = 'n1' AND TRUE GROUP BY protocol, method, resource/);
  assert.equal(await page.getByRole('textbox', { name: 'Generated SQL' }).inputValue(), saved.rawSql);
  await page.locator('#query-editor').screenshot({ path: join(shots, 'builder.png') });
  await page.getByRole('button', { name: 'Edit as SQL' }).click();
  assert.equal((await json('query')).queryType, 'sql');
  assert.equal(await page.getByRole('textbox', { name: 'SQL' }).inputValue(), saved.rawSql);

  // Service map and call trace: their fields, saved as the query JSON.
  await page.getByRole('radio', { name: 'Service map', exact: true }).click();
  await page.getByRole('textbox', { name: 'Protocol' }).fill('http');
  assert.equal((await json('query')).protocol, 'http');
  await page.getByRole('radio', { name: 'Call trace', exact: true }).click();
  await page.getByRole('textbox', { name: 'Connection' }).fill('21');
  await page.getByRole('textbox', { name: 'Start (ns)' }).fill('1700000000000000001');
  const trace = await json('query');
  assert.deepEqual([trace.queryType, trace.node, trace.connId, trace.ts], ['trace', 'n1', '21', '1700000000000000001']);
  await page.locator('#query-editor').screenshot({ path: join(shots, 'trace.png') });
  // Every type switch ran the query, as did the view switch.
  assert.ok(Number(await page.locator('#runs').textContent()) >= 4);
  assert.deepEqual(errors, []);
  console.log(`browser test: ok (Chromium ${browser.version()}; screenshots in ${shots})`);
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
