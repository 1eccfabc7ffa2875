import { ScopedVars } from '@grafana/data';

import { DEFAULT_QUERY, FORMAT_OPTIONS, interpolateQuery, isRunnable } from './query';
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
