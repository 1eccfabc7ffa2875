/// <reference types="node" />
import { readFileSync, writeFileSync } from 'fs';
import path from 'path';

import { BUILDER_VIEWS, isBuilder, withBuilderSql } from './builders';
import { KindlingQuery } from './types';

const query = (overrides: Partial<KindlingQuery>): KindlingQuery => ({
  refId: 'A',
  queryType: 'calls',
  rawSql: '',
  format: 'table',
  ...overrides,
});

describe('withBuilderSql', () => {
  it('starts a builder at its first view, for every node and protocol', () => {
    const q = withBuilderSql(query({ queryType: 'calls' }));
    expect(q.view).toBe('rate');
    expect(q.format).toBe('time_series');
    expect(q.rawSql).toBe(
      'SELECT $__timeGroup(ts, $__interval) AS time, protocol, count(*) / ($__interval_ms / 1000.0) AS calls_per_s ' +
        'FROM calls WHERE $__timeFilter(ts) GROUP BY 1, 2 ORDER BY 1'
    );
  });

  it('quotes literal filters and keeps variables optional', () => {
    const literal = withBuilderSql(query({ view: 'endpoints', node: "n'1", protocol: 'http' })).rawSql;
    expect(literal).toContain("AND node = 'n''1' AND protocol = 'http' GROUP BY");
    const variable = withBuilderSql(query({ queryType: 'tcp', view: 'drops', node: '$node' })).rawSql;
    expect(variable).toContain("AND ('$node' = '' OR node = '$node') AND event = 'drop'");
  });

  it('filters clusters by name or by a multi-value variable', () => {
    const named = withBuilderSql(query({ view: 'slowest', node: 'n1', cluster: "east, we'st" })).rawSql;
    expect(named).toContain("AND node = 'n1' AND cluster IN ('east', 'we''st') ORDER BY");
    const variable = withBuilderSql(query({ queryType: 'dns', view: 'failures', cluster: '${cluster}' })).rawSql;
    expect(variable).toContain("$__timeFilter(ts) AND cluster IN (${cluster:sqlstring}) AND rcode <> 'NOERROR'");
    expect(withBuilderSql(query({ view: 'slowest', cluster: ' ' })).rawSql).not.toContain('cluster IN');
  });

  it('falls back to the first view for an unknown one, and leaves other types alone', () => {
    expect(withBuilderSql(query({ queryType: 'dns', view: 'nope' })).view).toBe('latency');
    const sql = query({ queryType: 'sql', rawSql: 'SELECT 1' });
    expect(withBuilderSql(sql)).toBe(sql);
    expect(isBuilder('service_map')).toBe(false);
  });

  it('has distinct views with SQL for each builder', () => {
    for (const views of Object.values(BUILDER_VIEWS)) {
      const names = views.map((v) => v.value);
      expect(new Set(names).size).toBe(names.length);
      for (const v of views) {
        const sql = v.sql('', '');
        expect(sql).toMatch(/^SELECT .* FROM (calls|dns|flows|tcp_events) WHERE \$__timeFilter/);
        expect(sql).not.toMatch(/\bTRUE\b|AND\s+AND|WHERE\s+AND|AND\s+(GROUP|ORDER)/);
      }
    }
  });
});

describe('the builder queries the backend runs', () => {
  // plugin-backend/tests/dashboards.rs runs every query of this file against fixture agents
  // through Grafana host emulation. Regenerate it after changing a view:
  // UPDATE_BUILDER_QUERIES=1 npx jest builders
  const file = path.join(__dirname, '../../plugin-backend/tests/fixtures/builder_queries.json');

  it('are exactly what the builders generate now', () => {
    const all = Object.entries(BUILDER_VIEWS).flatMap(([queryType, views]) =>
      views.flatMap((v) =>
        ['', '$node'].map((node) =>
          withBuilderSql(
            query({
              queryType: queryType as KindlingQuery['queryType'],
              view: v.value,
              node,
              cluster: node === '' ? '' : '$cluster',
            })
          )
        )
      )
    );
    const text = JSON.stringify(all, null, 2) + '\n';
    if (process.env.UPDATE_BUILDER_QUERIES) {
      writeFileSync(file, text);
    }
    expect(readFileSync(file, 'utf8')).toBe(text);
  });
});
