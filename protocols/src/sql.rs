//! SQL text normalization, and the pieces the SQL protocols' parsers share.
//!
//! [`normalize`] reduces a statement to its shape: literals become `?`, comments go, runs of
//! whitespace become one space, so statements that differ only in values group together and
//! no value (a password, a token) reaches a `calls` row. [`verb`] is the statement's first
//! keyword.
//!
//! The MySQL and PostgreSQL parsers also share the SQL side of their rows: a statement's
//! shape, NUL-terminated text fields, and the masking of values quoted in error messages.
//! (Their framing of length-prefixed messages is in `framing`, their bounded map of prepared
//! statements in `bounded_map`.)

/// Longest normalized statement, in bytes.
pub const MAX_NORMALIZED: usize = 4096;
/// Longest verb, in bytes.
const MAX_VERB: usize = 32;

/// `sql` with every literal replaced by `?`, comments removed and whitespace collapsed.
///
/// Literals: single-quoted strings (`''` and backslash escapes, with an optional `E`, `N`,
/// `X`, `B` or `_charset` prefix), PostgreSQL dollar-quoted strings, and numbers (decimal,
/// exponent, `0x` hex, `0b` binary). Double-quoted and backquoted text is an identifier and is
/// kept, as are digits inside identifiers (`t1`) and `$1` placeholders. An unterminated string
/// (a statement cut by the capture size) becomes `?` up to the end. The result is at most
/// [`MAX_NORMALIZED`] bytes.
pub fn normalize(sql: &str) -> String {
    normalize_dialect(sql, false)
}

/// [`normalize`] for MySQL, where a double-quoted text is a string literal (the default
/// `sql_mode` has no ANSI_QUOTES), so it becomes `?` too; backquoted names are kept.
pub fn normalize_mysql(sql: &str) -> String {
    normalize_dialect(sql, true)
}

fn normalize_dialect(sql: &str, double_quoted_strings: bool) -> String {
    let b = sql.as_bytes();
    let mut out = Normalized {
        text: String::with_capacity(sql.len().min(MAX_NORMALIZED)),
        space: false,
    };
    let mut i = 0;
    while i < b.len() && out.text.len() < MAX_NORMALIZED {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                out.space = true;
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = line_comment_end(b, i);
                out.space = true;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = block_comment_end(b, i);
                out.space = true;
            }
            b'\'' => {
                i = string_end(b, i, b'\'');
                out.push("?");
            }
            b'"' if double_quoted_strings => {
                i = string_end(b, i, b'"');
                out.push("?");
            }
            b'"' | b'`' => {
                let end = identifier_end(b, i, c);
                out.push(&sql[i..end]);
                i = end;
            }
            b'$' => match dollar_quote_end(b, i) {
                Some(end) => {
                    out.push("?");
                    i = end;
                }
                None => {
                    let end = i + 1 + b[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
                    out.push(&sql[i..end]);
                    i = end;
                }
            },
            b'0'..=b'9' => {
                let end = number_end(b, i);
                if b.get(end).is_some_and(|&d| is_word_byte(d)) {
                    // MySQL allows identifiers that start with digits (`1st_col`).
                    let end = word_end(b, end);
                    out.push(&sql[i..end]);
                    i = end;
                } else {
                    out.push("?");
                    i = end;
                }
            }
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i = number_end(b, i);
                out.push("?");
            }
            _ if is_word_start(c) => {
                let end = word_end(b, i);
                if b.get(end) == Some(&b'\'') && is_string_prefix(&b[i..end]) {
                    i = string_end(b, end, b'\'');
                    out.push("?");
                } else {
                    out.push(&sql[i..end]);
                    i = end;
                }
            }
            _ => {
                // Other ASCII (operators, punctuation); bytes >= 0x80 start words above.
                out.push(&sql[i..i + 1]);
                i += 1;
            }
        }
    }
    if out.text.len() > MAX_NORMALIZED {
        let mut cut = MAX_NORMALIZED;
        while !out.text.is_char_boundary(cut) {
            cut -= 1;
        }
        out.text.truncate(cut);
    }
    out.text
}

/// The first keyword of `sql`, uppercased (`SELECT`, `INSERT`, `BEGIN`, ...), after leading
/// whitespace, comments and parentheses; empty when `sql` starts with no word.
pub fn verb(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | b'(' => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => i = line_comment_end(b, i),
            b'/' if b.get(i + 1) == Some(&b'*') => i = block_comment_end(b, i),
            _ => break,
        }
    }
    b[i..]
        .iter()
        .take_while(|c| c.is_ascii_alphabetic() || **c == b'_')
        .take(MAX_VERB)
        .map(|c| char::from(c.to_ascii_uppercase()))
        .collect()
}

/// Normalized text being built: tokens joined by single spaces where the input had any.
#[derive(Debug)]
struct Normalized {
    text: String,
    /// Whitespace (or a comment) came since the last token.
    space: bool,
}

impl Normalized {
    fn push(&mut self, token: &str) {
        if self.space && !self.text.is_empty() {
            self.text.push(' ');
        }
        self.space = false;
        self.text.push_str(token);
    }
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

fn word_end(b: &[u8], start: usize) -> usize {
    start + b[start..].iter().take_while(|&&c| is_word_byte(c)).count()
}

/// Whether `word`, directly followed by a quote, prefixes a string literal: `E'..'`, `N'..'`,
/// `X'..'`, `B'..'`, or a MySQL charset introducer like `_utf8mb4'..'`.
fn is_string_prefix(word: &[u8]) -> bool {
    matches!(
        word,
        [b'e' | b'E' | b'n' | b'N' | b'x' | b'X' | b'b' | b'B']
    ) || (word.len() > 1 && word[0] == b'_')
}

/// Index after the newline ending the `--` comment at `start` (or the end).
fn line_comment_end(b: &[u8], start: usize) -> usize {
    b[start..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| start + p + 1)
}

/// Index after the `*/` ending the `/*` comment at `start` (or the end).
fn block_comment_end(b: &[u8], start: usize) -> usize {
    b[start + 2..]
        .windows(2)
        .position(|w| w == b"*/")
        .map_or(b.len(), |p| start + 2 + p + 2)
}

/// Index after the single-quoted string at `start`; `''` and backslash escapes stay inside.
fn string_end(b: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            q if q == quote && b.get(i + 1) == Some(&quote) => i += 2,
            q if q == quote => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// Index after the quoted identifier at `start` (a doubled quote stays inside).
fn identifier_end(b: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// Index after the dollar-quoted string (`$$..$$`, `$tag$..$tag$`) at `start`, if one starts
/// there (`$1` does not).
fn dollar_quote_end(b: &[u8], start: usize) -> Option<usize> {
    let tag_len = b[start + 1..]
        .iter()
        .take_while(|&&c| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80)
        .count();
    let after_tag = start + 1 + tag_len;
    if b.get(after_tag) != Some(&b'$') || b.get(start + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let tag = &b[start..=after_tag];
    let body = after_tag + 1;
    Some(
        b[body..]
            .windows(tag.len())
            .position(|w| w == tag)
            .map_or(b.len(), |p| body + p + tag.len()),
    )
}

/// Index after the number at `start`: `0x1F`, `0b101`, `12`, `1.5`, `.5`, `1e-3`.
fn number_end(b: &[u8], start: usize) -> usize {
    let digits =
        |from: usize, ok: fn(&u8) -> bool| from + b[from..].iter().take_while(|c| ok(c)).count();
    if b[start] == b'0' && b.len() > start + 2 {
        match b[start + 1] {
            b'x' | b'X' if b[start + 2].is_ascii_hexdigit() => {
                return digits(start + 2, u8::is_ascii_hexdigit);
            }
            b'b' | b'B' if matches!(b[start + 2], b'0' | b'1') => {
                return digits(start + 2, |c| matches!(c, b'0' | b'1'));
            }
            _ => {}
        }
    }
    let mut i = digits(start, u8::is_ascii_digit);
    if b.get(i) == Some(&b'.') {
        i = digits(i + 1, u8::is_ascii_digit);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        if b.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
            i = digits(i + 1 + sign, u8::is_ascii_digit);
        }
    }
    i
}

/// The shape of a statement, as a `calls` row shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    /// [`verb`] of the text.
    pub(crate) verb: String,
    /// [`normalize`]d text.
    pub(crate) normalized: String,
}

impl Statement {
    /// The shape of `text`, which may be cut short (invalid UTF-8 is replaced).
    pub(crate) fn of(text: &[u8]) -> Self {
        let sql = String::from_utf8_lossy(text);
        Self {
            verb: verb(&sql),
            normalized: normalize(&sql),
        }
    }

    /// [`Statement::of`] in MySQL's dialect ([`normalize_mysql`]).
    pub(crate) fn of_mysql(text: &[u8]) -> Self {
        let sql = String::from_utf8_lossy(text);
        Self {
            verb: verb(&sql),
            normalized: normalize_mysql(&sql),
        }
    }
}

/// The first `max` bytes of `text` up to its first NUL, as text (invalid UTF-8 replaced).
pub(crate) fn text_field(text: &[u8], max: usize) -> String {
    let end = text
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(text.len())
        .min(max);
    String::from_utf8_lossy(&text[..end]).into_owned()
}

/// `message` with everything from its first `quote` to its last replaced by `quote?quote`
/// (to its end when there is only one, as in a message cut short).
///
/// For the error codes whose messages quote values of the failed statement (a duplicate key,
/// a value of the wrong type, the text after a syntax error): the statement's literals are
/// redacted from `resource`, and must not come back through `error_message`. Greedy on
/// purpose: a quoted value may itself hold quotes (`near 'x = 'secret'' at line 1`), so
/// nothing between the outermost quotes is kept, identifiers included.
pub(crate) fn mask_quoted(message: &str, quote: char) -> String {
    let Some(first) = message.find(quote) else {
        return message.to_owned();
    };
    let last = message.rfind(quote).filter(|&l| l > first);
    let rest = last.map_or("", |l| &message[l + quote.len_utf8()..]);
    format!("{}{quote}?{quote}{rest}", &message[..first])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_masked_outermost_quotes_first() {
        assert_eq!(
            mask_quoted("Duplicate entry 'secret' for key 't.PRIMARY'", '\''),
            "Duplicate entry '?'"
        );
        assert_eq!(
            mask_quoted("syntax to use near 'WHERE x = 'secret'' at line 1", '\''),
            "syntax to use near '?' at line 1"
        );
        assert_eq!(
            mask_quoted("invalid input syntax for type integer: \"secret\"", '"'),
            "invalid input syntax for type integer: \"?\""
        );
        // Cut after the opening quote: masked to the end.
        assert_eq!(mask_quoted("near 'secr", '\''), "near '?'");
        assert_eq!(mask_quoted("no quotes", '\''), "no quotes");
    }

    #[test]
    fn normalize_replaces_literals() {
        let cases: &[(&str, &str)] = &[
            ("SELECT 1", "SELECT ?"),
            (
                "select * from t1 where col_2 = 42",
                "select * from t1 where col_2 = ?",
            ),
            (
                "SELECT * FROM t WHERE a IN (1, 2, 3)",
                "SELECT * FROM t WHERE a IN (?, ?, ?)",
            ),
            ("SELECT 'it''s', 'a\\'b', E'x\\n'", "SELECT ?, ?, ?"),
            (
                "SELECT 1.5, .5, 1e10, 2.5E-3, 0xFF, 0b101, -7",
                "SELECT ?, ?, ?, ?, ?, ?, -?",
            ),
            (
                "SELECT \"Col 1\" FROM `my table`",
                "SELECT \"Col 1\" FROM `my table`",
            ),
            ("SELECT \"a\"\"b\" FROM t", "SELECT \"a\"\"b\" FROM t"),
            ("  SELECT\n\t a\r\n  FROM   t  ", "SELECT a FROM t"),
            (
                "SELECT a -- trailing comment 'x'\nFROM t",
                "SELECT a FROM t",
            ),
            ("SELECT /* hint 42 */ a FROM t", "SELECT a FROM t"),
            ("SELECT/*x*/1", "SELECT ?"),
            (
                "SELECT $1, $2 FROM t WHERE a = $10",
                "SELECT $1, $2 FROM t WHERE a = $10",
            ),
            ("SELECT $$body 'x' 1$$, $f$ q $f$", "SELECT ?, ?"),
            (
                "SELECT _utf8mb4'abc', N'x', X'0A', B'01'",
                "SELECT ?, ?, ?, ?",
            ),
            ("SELECT 1col FROM t", "SELECT 1col FROM t"),
            (
                "INSERT INTO t VALUES (1,'a'),(2,'b')",
                "INSERT INTO t VALUES (?,?),(?,?)",
            ),
            (
                "SELECT a FROM t WHERE b = 'unterminated",
                "SELECT a FROM t WHERE b = ?",
            ),
            ("SELECT 'ü', ü1 FROM ünï", "SELECT ?, ü1 FROM ünï"),
            (
                "UPDATE t SET a=a+1 WHERE id=7",
                "UPDATE t SET a=a+? WHERE id=?",
            ),
            (
                "SELECT x::int4, t.c2 FROM s.t",
                "SELECT x::int4, t.c2 FROM s.t",
            ),
            ("", ""),
            ("   ", ""),
            ("-- only a comment", ""),
            ("SELECT 'a' /* unterminated", "SELECT ?"),
        ];
        for (sql, want) in cases {
            assert_eq!(normalize(sql), *want, "{sql:?}");
        }
    }

    #[test]
    fn normalize_never_leaks_secrets() {
        let secret = "hunter2-S3cr3t";
        let statements = [
            format!("SELECT * FROM users WHERE password = '{secret}'"),
            format!("ALTER USER bob IDENTIFIED BY '{secret}'"),
            format!("SELECT 1 WHERE x = E'\\'{secret}'"),
            format!("SELECT 'a''{secret}'"),
            format!("SELECT $$ {secret} $$"),
            format!("SELECT $tag$ {secret} $tag$"),
            format!("INSERT INTO t VALUES ('{secret}"),
            format!("SELECT _binary'{secret}'"),
            format!("SELECT 1 /* {secret} */"),
            format!("SELECT 1 -- {secret}"),
        ];
        for sql in &statements {
            let got = normalize(sql);
            assert!(!got.contains("hunter2"), "{sql:?} -> {got:?}");
            assert!(!got.contains("S3cr3t"), "{sql:?} -> {got:?}");
        }
        assert!(!normalize("SELECT 4111111111111111").contains("4111"));
    }

    #[test]
    fn mysql_double_quoted_strings_are_literals() {
        let sql = "SELECT * FROM `t` WHERE pw = \"kl-secret\" AND n = \"a\"\"b\"";
        assert_eq!(
            normalize_mysql(sql),
            "SELECT * FROM `t` WHERE pw = ? AND n = ?"
        );
        // Elsewhere (PostgreSQL) they are identifiers.
        assert_eq!(normalize("SELECT \"Col\" FROM t"), "SELECT \"Col\" FROM t");
    }

    #[test]
    fn normalize_is_bounded() {
        let long = format!("SELECT {}", "abcdefghü, ".repeat(2000));
        let got = normalize(&long);
        assert!(got.len() <= MAX_NORMALIZED);
        assert!(got.starts_with("SELECT abcdefghü, "));
        let values = format!("INSERT INTO t VALUES {}", "(1, 'x'), ".repeat(5000));
        assert!(normalize(&values).len() <= MAX_NORMALIZED);
    }

    #[test]
    fn verbs() {
        let cases = [
            ("select 1", "SELECT"),
            ("  \n INSERT INTO t", "INSERT"),
            ("/* c */ -- d\n update t set a = 1", "UPDATE"),
            ("((SELECT 1) UNION (SELECT 2))", "SELECT"),
            ("BEGIN", "BEGIN"),
            ("create table t (a int)", "CREATE"),
            ("delete from t", "DELETE"),
            ("with x as (select 1) select * from x", "WITH"),
            ("", ""),
            ("123", ""),
            ("/* unterminated", ""),
        ];
        for (sql, want) in cases {
            assert_eq!(verb(sql), want, "{sql:?}");
        }
        assert_eq!(verb(&"A".repeat(100)).len(), MAX_VERB);
    }
}
