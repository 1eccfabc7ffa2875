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
  // Every field label of the query editor is drawn whole and clear of every input: none lies
  // under another field's input, none is cut by its own box.
  const assertLabelsClear = async (what) => {
    const problems = await page.locator('#query-editor').evaluate((root) => {
      const box = (e) => e.getBoundingClientRect();
      const hit = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
      const inputs = [...root.querySelectorAll('input:not([type=radio]), textarea')];
      return [...root.querySelectorAll('label')].flatMap((label) => {
        const name = label.textContent.trim();
        const under = inputs.filter((i) => hit(box(label), box(i))).map((i) => `${name} under ${i.getAttribute('aria-label')}`);
        return label.scrollWidth > label.clientWidth ? [...under, `${name} cut`] : under;
      });
    });
    assert.deepEqual(problems, [], what);
  };

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
  // Another cluster: its name and agents in jsonData.clusters.
  await page.getByRole('button', { name: 'Add cluster' }).click();
  await page.getByRole('textbox', { name: 'Cluster 1 name' }).fill('east');
  await page.getByRole('textbox', { name: 'Cluster 1 agents' }).fill('10.1.0.1:50051, 10.1.0.2:50051');
  await page.keyboard.press('Tab');
  assert.deepEqual((await json('options')).clusters, [{ name: 'east', agents: ['10.1.0.1:50051', '10.1.0.2:50051'] }]);
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
  await page.getByRole('textbox', { name: 'Cluster', exact: true }).fill('$cluster');
  const saved = await json('query');
  assert.equal(saved.queryType, 'calls');
  assert.equal(saved.view, 'endpoints');
  assert.equal(saved.format, 'table');
  assert.equal(
    saved.rawSql,
    'SELECT protocol, method, resource, count(*) AS calls, sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS errors, ' +
      'avg(CASE WHEN is_error THEN 1.0 ELSE 0.0 END) AS error_rate, ' +
      'approx_percentile_cont(duration_ns, 0.5) / 1e6 AS p50_ms, approx_percentile_cont(duration_ns, 0.95) / 1e6 AS p95_ms, ' +
      'approx_percentile_cont(duration_ns, 0.99) / 1e6 AS p99_ms ' +
      "FROM calls WHERE $__timeFilter(ts) AND node = 'n1' AND cluster IN (${cluster:sqlstring}) " +
      'GROUP BY protocol, method, resource ORDER BY calls DESC LIMIT 200'
  );
  assert.equal(saved.cluster, '$cluster');
  assert.equal(await page.getByRole('textbox', { name: 'Generated SQL' }).inputValue(), saved.rawSql);
  await page.locator('#query-editor').screenshot({ path: join(shots, 'builder.png') });
  await assertLabelsClear('calls builder');
  await page.getByRole('button', { name: 'Edit as SQL' }).click();
  assert.equal((await json('query')).queryType, 'sql');
  assert.equal(await page.getByRole('textbox', { name: 'SQL' }).inputValue(), saved.rawSql);

  // Service map and call trace: their fields, saved as the query JSON.
  await page.getByRole('radio', { name: 'Service map', exact: true }).click();
  await page.getByRole('textbox', { name: 'Protocol' }).fill('http');
  const map = await json('query');
  assert.deepEqual([map.protocol, map.cluster], ['http', '$cluster']);
  await assertLabelsClear('service map');
  await page.getByRole('radio', { name: 'Call trace', exact: true }).click();
  await page.getByRole('textbox', { name: 'Connection' }).fill('21');
  await page.getByRole('textbox', { name: 'Start (ns)' }).fill('1700000000000000001');
  const trace = await json('query');
  assert.deepEqual([trace.queryType, trace.node, trace.connId, trace.ts], ['trace', 'n1', '21', '1700000000000000001']);
  await assertLabelsClear('call trace');
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
