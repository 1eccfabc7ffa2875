import { tokenize } from './highlight';

describe('tokenize', () => {
  it('colours keywords, strings, numbers, macros and comments, and keeps every character', () => {
    const sql = "SELECT count(*) FROM calls WHERE $__timeFilter(ts) AND node = 'it''s' LIMIT 10 -- top";
    const tokens = tokenize(sql);
    expect(tokens.map((t) => t.text).join('')).toBe(sql);
    expect(tokens.filter((t) => t.kind !== 'plain')).toEqual([
      { text: 'SELECT', kind: 'keyword' },
      { text: 'FROM', kind: 'keyword' },
      { text: 'WHERE', kind: 'keyword' },
      { text: '$__timeFilter', kind: 'macro' },
      { text: 'AND', kind: 'keyword' },
      { text: "'it''s'", kind: 'string' },
      { text: 'LIMIT', kind: 'keyword' },
      { text: '10', kind: 'number' },
      { text: '-- top', kind: 'comment' },
    ]);
  });

  it('does not colour names that contain keywords or digits, and survives an open string', () => {
    expect(tokenize('select from_x, t1').filter((t) => t.kind !== 'plain')).toEqual([
      { text: 'select', kind: 'keyword' },
    ]);
    expect(tokenize("WHERE a = 'open")).toEqual([
      { text: 'WHERE', kind: 'keyword' },
      { text: ' a = ', kind: 'plain' },
      { text: "'open", kind: 'string' },
    ]);
    expect(tokenize('')).toEqual([]);
  });
});
