import { ScopedVars } from '@grafana/data';

import { DEFAULT_QUERY, FORMAT_OPTIONS, QUERY_TYPE_OPTIONS, interpolateQuery, isRunnable } from './query';
import { KindlingQuery } from './types';

const query = (overrides: Partial<KindlingQuery> = {}): KindlingQuery => ({
  refId: 'A',
  queryType: 'sql',
  rawSql: 'SELECT 1',
  format: 'table',
  ...overrides,
});

describe('DEFAULT_QUERY', () => {
  it('selects the latest 100 flows as a table', () => {
    expect(DEFAULT_QUERY).toEqual({
      queryType: 'sql',
      rawSql: 'SELECT * FROM flows ORDER BY end_ts DESC LIMIT 100',
      format: 'table',
    });
  });
});

describe('FORMAT_OPTIONS', () => {
  it('offers exactly the formats of the query contract', () => {
    expect(FORMAT_OPTIONS.map((o) => o.value)).toEqual(['table', 'time_series']);
  });
});

describe('isRunnable', () => {
  it.each<[string, Partial<KindlingQuery>, boolean]>([
    ['plain SQL', {}, true],
    ['hidden', { hide: true }, false],
    ['empty SQL', { rawSql: '' }, false],
    ['blank SQL', { rawSql: ' \n\t ' }, false],
    ['missing SQL (an old or hand-written query)', { rawSql: undefined as unknown as string }, false],
  ])('%s -> %s', (_name, overrides, expected) => {
    expect(isRunnable(query(overrides))).toBe(expected);
  });
});

describe('interpolateQuery', () => {
  it('replaces variables in rawSql only, passing the scoped vars through', () => {
    const scopedVars: ScopedVars = { __interval: { text: '10s', value: '10s' } };
    const replace = jest.fn((sql?: string) => (sql ?? '').replace('$host', "'web-1'"));
    const input = query({ rawSql: 'SELECT * FROM flows WHERE host = $host' });

    const output = interpolateQuery(input, scopedVars, { replace });

    expect(output).toEqual({ ...input, rawSql: "SELECT * FROM flows WHERE host = 'web-1'" });
    expect(replace).toHaveBeenCalledTimes(1);
    expect(replace).toHaveBeenCalledWith('SELECT * FROM flows WHERE host = $host', scopedVars);
    expect(input.rawSql).toBe('SELECT * FROM flows WHERE host = $host');
  });
});

describe('builder query types', () => {
  it('offers exactly the query types the backend knows', () => {
    expect(QUERY_TYPE_OPTIONS.map((o) => o.value)).toEqual(['sql', 'calls', 'dns', 'tcp', 'service_map', 'trace']);
  });

  it.each<[string, Partial<KindlingQuery>, boolean]>([
    ['a service map without SQL', { queryType: 'service_map', rawSql: '' }, true],
    ['a hidden service map', { queryType: 'service_map', hide: true }, false],
    ['a trace naming its call', { queryType: 'trace', rawSql: '', node: 'n1', connId: 7, ts: '1700000000000000001' }, true],
    ['a trace without ts', { queryType: 'trace', rawSql: '', node: 'n1', connId: 7 }, false],
    ['a trace with a blank node', { queryType: 'trace', rawSql: '', node: ' ', connId: 7, ts: '1' }, false],
    ['a trace with connection 0', { queryType: 'trace', rawSql: '', node: 'n1', connId: 0, ts: '1' }, true],
  ])('%s -> %s', (_name, overrides, expected) => {
    expect(isRunnable(query(overrides))).toBe(expected);
  });

  it('interpolates the builder fields and sends a templated connId as a number', () => {
    const vars: Record<string, string> = { $node: 'n2', $conn: '21', $ts: '1700000000000000001' };
    const replace = (text?: string) => (text ?? '').replace(/\$\w+/g, (v) => vars[v] ?? v);
    const input = query({ queryType: 'trace', rawSql: '', node: '$node', connId: '$conn', ts: '$ts' });

    expect(interpolateQuery(input, {}, { replace })).toEqual({
      ...input,
      node: 'n2',
      connId: 21,
      ts: '1700000000000000001',
    });
    expect(interpolateQuery(query({ connId: 'x$conn' }), {}, { replace }).connId).toBe('x21');
  });

  it('sends a multi-value cluster variable as a comma-separated list', () => {
    const replace = jest.fn((text?: string, _vars?: ScopedVars, format?: string | Function) =>
      (text ?? '').replace('$cluster', format === 'csv' ? 'east,west' : '{east,west}')
    );
    const input = query({ queryType: 'service_map', rawSql: '', cluster: '$cluster' });

    expect(interpolateQuery(input, {}, { replace }).cluster).toBe('east,west');
    expect(replace).toHaveBeenCalledWith('$cluster', {}, 'csv');
  });
});
