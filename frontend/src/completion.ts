/** The `schema` resource of the backend (plugin-backend/src/grafana/resource.rs). */
export interface Schema {
  tables: Array<{ name: string; timeColumn: string | null; columns: Array<{ name: string; type: string; nullable: boolean }> }>;
  functions: Array<{ name: string; description: string }>;
  macros: string[];
}

export interface Completion {
  /** What replaces the word being typed. */
  text: string;
  /** Where it comes from: `table`, a table's name for a column, `function` or `macro`. */
  detail: string;
}

/** Most completions offered at once. */
export const MAX_COMPLETIONS = 10;

/**
 * Completions for the word that ends at `cursor` in `sql`: table and table-function names after
 * FROM or JOIN; elsewhere the columns of the tables the SQL names (or of every table when it
 * names none), then the macros. Matching is by prefix, case-insensitive; an empty word gets none.
 */
export function completions(schema: Schema, sql: string, cursor: number): { from: number; items: Completion[] } {
  const before = sql.slice(0, cursor);
  const word = /[\w$]*$/.exec(before)?.[0] ?? '';
  const from = cursor - word.length;
  if (word === '') {
    return { from, items: [] };
  }
  const prefix = word.toLowerCase();
  const matches = (text: string) => text.toLowerCase().startsWith(prefix) && text.toLowerCase() !== prefix;
  const previous = /(\w+)\s+[\w$]*$/.exec(before)?.[1]?.toUpperCase();
  let items: Completion[];
  if (previous === 'FROM' || previous === 'JOIN') {
    items = [
      ...schema.tables.map((t) => ({ text: t.name, detail: 'table' })),
      ...schema.functions.map((f) => ({ text: `${f.name}(`, detail: 'function' })),
    ];
  } else {
    const named = new Set(
      Array.from(sql.matchAll(/\b(?:FROM|JOIN)\s+(\w+)/gi), (m) => m[1].toLowerCase())
    );
    const tables = schema.tables.filter((t) => named.size === 0 || named.has(t.name));
    const seen = new Set<string>();
    items = [];
    for (const t of tables) {
      for (const c of t.columns) {
        if (!seen.has(c.name)) {
          seen.add(c.name);
          items.push({ text: c.name, detail: t.name });
        }
      }
    }
    items.push(...schema.macros.map((m) => ({ text: m.replace(/\(.*$/, '('), detail: 'macro' })));
  }
  return { from, items: items.filter((i) => matches(i.text)).slice(0, MAX_COMPLETIONS) };
}
