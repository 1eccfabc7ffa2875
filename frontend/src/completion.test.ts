import { completions, Schema } from './completion';

const schema: Schema = {
  tables: [
    {
      name: 'calls',
      timeColumn: 'ts',
      columns: [
        { name: 'ts', type: 'Timestamp', nullable: false },
        { name: 'resource', type: 'Utf8', nullable: false },
        { name: 'role', type: 'Utf8', nullable: false },
      ],
    },
    {
      name: 'flows',
      timeColumn: 'end_ts',
      columns: [
        { name: 'end_ts', type: 'Timestamp', nullable: false },
        { name: 'retransmits', type: 'UInt32', nullable: false },
        { name: 'role', type: 'Utf8', nullable: false },
      ],
    },
  ],
  functions: [{ name: 'dns_domains', description: '' }],
  macros: ['$__timeFilter(col)', '$__timeGroup(col, interval)'],
};

const at = (sql: string) => completions(schema, sql, sql.length);

describe('completions', () => {
  it('offers tables and table functions after FROM and JOIN', () => {
    expect(at('SELECT * FROM c').items).toEqual([{ text: 'calls', detail: 'table' }]);
    expect(at('SELECT * FROM calls JOIN f').items).toEqual([{ text: 'flows', detail: 'table' }]);
    expect(at('SELECT * FROM d').items).toEqual([{ text: 'dns_domains(', detail: 'function' }]);
  });

  it("offers the named tables' columns, each once, and the macros", () => {
    expect(at('SELECT r').items).toEqual([
      { text: 'resource', detail: 'calls' },
      { text: 'role', detail: 'calls' },
      { text: 'retransmits', detail: 'flows' },
    ]);
    expect(at('SELECT * FROM flows WHERE r').items).toEqual([
      { text: 'retransmits', detail: 'flows' },
      { text: 'role', detail: 'flows' },
    ]);
    expect(at('SELECT * FROM calls WHERE $__timeF').items).toEqual([{ text: '$__timeFilter(', detail: 'macro' }]);
  });

  it('replaces the word at the cursor, case-insensitively, and offers nothing for no word', () => {
    const sql = 'SELECT RES FROM calls';
    expect(completions(schema, sql, 'SELECT RES'.length)).toEqual({
      from: 'SELECT '.length,
      items: [{ text: 'resource', detail: 'calls' }],
    });
    expect(at('SELECT ').items).toEqual([]);
    expect(at('SELECT role').items).toEqual([]);
  });
});
