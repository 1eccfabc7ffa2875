/** A piece of SQL text and what it is, for colouring. */
export interface SqlToken {
  text: string;
  kind: 'keyword' | 'string' | 'number' | 'macro' | 'comment' | 'plain';
}

const KEYWORDS = new Set(
  (
    'SELECT FROM WHERE GROUP BY ORDER HAVING LIMIT OFFSET AND OR NOT AS JOIN LEFT RIGHT FULL INNER OUTER ' +
    'CROSS ON USING CASE WHEN THEN ELSE END IN IS NULL DISTINCT UNION ALL WITH ASC DESC BETWEEN LIKE ILIKE ' +
    'CAST TRUE FALSE INTERVAL TIMESTAMP OVER PARTITION EXISTS'
  ).split(' ')
);

/**
 * Splits SQL into tokens whose concatenation is exactly the input: keywords, 'strings' (with
 * '' escapes; an unterminated one runs to the end), numbers, Grafana macros and variables
 * (`$__timeFilter`, `$node`), `--` comments, and everything else as plain text.
 */
export function tokenize(sql: string): SqlToken[] {
  const tokens: SqlToken[] = [];
  const re = /(--[^\n]*)|('(?:[^']|'')*'?)|(\$\{?[\w.:]+\}?)|(\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b)|([A-Za-z_][\w]*)|([\s\S])/gi;
  let m: RegExpExecArray | null;
  while ((m = re.exec(sql)) !== null) {
    const [text, comment, string, macro, number, word] = m;
    let kind: SqlToken['kind'] = 'plain';
    if (comment) {
      kind = 'comment';
    } else if (string) {
      kind = 'string';
    } else if (macro) {
      kind = 'macro';
    } else if (number) {
      kind = 'number';
    } else if (word && KEYWORDS.has(word.toUpperCase())) {
      kind = 'keyword';
    }
    const last = tokens[tokens.length - 1];
    if (kind === 'plain' && last?.kind === 'plain') {
      last.text += text;
    } else {
      tokens.push({ text, kind });
    }
  }
  return tokens;
}
