//! Column names the SQL parser would take for keywords, quoted before it sees them.
//!
//! Every table has a `cluster` column. DataFusion's dialect (sqlparser's generic one) allows a
//! trailing comma in a select list, and ends the list at a comma followed by a keyword that may
//! follow one, `CLUSTER` among them (Hive's `CLUSTER BY`): `SELECT node, cluster FROM calls`
//! fails with "Expected: ), found: cluster" although `SELECT cluster, node` works. No query of
//! ours uses `CLUSTER` as a keyword (DataFusion has no `CLUSTER BY`), so every bare `cluster`
//! word is quoted, lower-cased as the parser would have normalized it. The text is changed only
//! at those words' positions, found by sqlparser's tokenizer; strings and comments are
//! untouched.

use std::borrow::Cow;

use datafusion::sql::sqlparser::{
    dialect::GenericDialect,
    tokenizer::{Token, Tokenizer},
};

/// The columns quoted.
const KEYWORD_COLUMNS: [&str; 1] = ["cluster"];

/// `sql` with every bare word of [`KEYWORD_COLUMNS`] quoted (`"cluster"`); `sql` itself when
/// there is none, or when it does not tokenize (the parser then reports the error).
pub fn quote_keyword_columns(sql: &str) -> Cow<'_, str> {
    let lower = sql.to_ascii_lowercase();
    if !KEYWORD_COLUMNS.iter().any(|c| lower.contains(c)) {
        return Cow::Borrowed(sql);
    }
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        return Cow::Borrowed(sql);
    };
    // Byte offset of each line's start; a location's column counts characters from 1.
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let offset = |line: u64, column: u64| -> Option<usize> {
        let start = *line_starts.get(usize::try_from(line).ok()?.checked_sub(1)?)?;
        let skip = usize::try_from(column).ok()?.checked_sub(1)?;
        sql[start..]
            .char_indices()
            .nth(skip)
            .map(|(i, _)| start + i)
    };
    let mut out = String::with_capacity(sql.len() + 8);
    let mut copied = 0;
    for t in &tokens {
        let Token::Word(w) = &t.token else { continue };
        let lowered = w.value.to_ascii_lowercase();
        if w.quote_style.is_some() || !KEYWORD_COLUMNS.contains(&lowered.as_str()) {
            continue;
        }
        let Some(at) = offset(t.span.start.line, t.span.start.column) else {
            return Cow::Borrowed(sql);
        };
        let end = at + w.value.len();
        if sql.get(at..end) != Some(w.value.as_str()) {
            return Cow::Borrowed(sql);
        }
        out.push_str(&sql[copied..at]);
        out.push('"');
        out.push_str(&lowered);
        out.push('"');
        copied = end;
    }
    if copied == 0 {
        return Cow::Borrowed(sql);
    }
    out.push_str(&sql[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_cluster_words_are_quoted_and_nothing_else() {
        assert_eq!(
            quote_keyword_columns("SELECT node, cluster FROM calls"),
            r#"SELECT node, "cluster" FROM calls"#
        );
        assert_eq!(
            quote_keyword_columns(
                "SELECT r.CLUSTER,\n  'a cluster, ''cluster''' AS s -- cluster\n\
                 FROM calls r WHERE \"cluster\" = 'é' AND Cluster IN ('x')"
            ),
            "SELECT r.\"cluster\",\n  'a cluster, ''cluster''' AS s -- cluster\n\
             FROM calls r WHERE \"cluster\" = 'é' AND \"cluster\" IN ('x')"
        );
        // Nothing to quote, or not SQL the tokenizer takes: the text as it was.
        assert!(matches!(
            quote_keyword_columns("SELECT clusters FROM calls"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            quote_keyword_columns("SELECT cluster, 'unterminated"),
            Cow::Borrowed(_)
        ));
    }
}
