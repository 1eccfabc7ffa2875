//! The SQL fragment sent to each agent for one table scan (format: `kindling_wire::ticket`).

use datafusion::{
    common::tree_node::{Transformed, TreeNode},
    logical_expr::Expr,
    sql::unparser::Unparser,
};

/// Quotes an identifier for DataFusion's SQL dialect.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Column name used when the coordinator needs rows but no columns (e.g. `count(*)`).
pub const ROW_MARKER: &str = "__kindling_row";

/// The fragment for scanning `table` with the pushed-down projection, filters and limit.
///
/// Filters the unparser cannot express are left out: the coordinator applies every filter
/// again above the scan (they are pushed as `Inexact`), so leaving one out costs bytes on the
/// wire, never correctness.
pub fn scan_sql(table: &str, columns: &[&str], filters: &[Expr], limit: Option<usize>) -> String {
    let select = if columns.is_empty() {
        format!("1 AS {}", quote_ident(ROW_MARKER))
    } else {
        columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let predicates: Vec<String> = filters
        .iter()
        .filter_map(|f| {
            let sql = expr_sql(f);
            if sql.is_none() {
                tracing::debug!(filter = %f, "Filter stays on the coordinator");
            }
            sql
        })
        .collect();
    let mut sql = format!("SELECT {select} FROM {}", quote_ident(table));
    push_where(&mut sql, &predicates);
    if let Some(n) = limit {
        sql.push_str(&format!(" LIMIT {n}"));
    }
    sql
}

/// `e` as SQL an agent can run, without table qualifiers; `None` if it cannot be written
/// (the unparser cannot express it, or it holds a placeholder or a subquery the agent cannot
/// evaluate).
pub fn expr_sql(e: &Expr) -> Option<String> {
    let unwritable = e
        .exists(|e| Ok(matches!(e, Expr::Placeholder(_) | Expr::ScalarSubquery(_))))
        .unwrap_or(true);
    if unwritable {
        return None;
    }
    Unparser::default()
        .expr_to_sql(&unqualify(e.clone()))
        .ok()
        .map(|ast| ast.to_string())
}

/// Appends ` WHERE (p1) AND (p2) ...` to `sql`, each predicate once; nothing if there is none.
pub fn push_where(sql: &mut String, predicates: &[String]) {
    let mut distinct: Vec<String> = Vec::new();
    for p in predicates {
        let p = format!("({p})");
        if !distinct.contains(&p) {
            distinct.push(p);
        }
    }
    if !distinct.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&distinct.join(" AND "));
    }
}

/// Drops table qualifiers: the fragment has exactly one table.
pub fn unqualify(e: Expr) -> Expr {
    e.transform(|e| match e {
        Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
            datafusion::common::Column::new_unqualified(c.name),
        ))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
    .expect("the closure never fails")
}

#[cfg(test)]
mod tests {
    use datafusion::{
        common::{Column, ScalarValue},
        logical_expr::{col, lit},
    };

    use super::*;

    #[test]
    fn projection_filters_and_limit() {
        let filter = Expr::Column(Column::new(Some("flows"), "dst_port"))
            .eq(lit(ScalarValue::UInt16(Some(8080))))
            .and(col("comm").like(lit("cu%")));
        assert_eq!(
            scan_sql("flows", &["pid", "comm"], &[filter], Some(5)),
            "SELECT \"pid\", \"comm\" FROM \"flows\" WHERE (((dst_port = 8080) AND comm LIKE 'cu%')) LIMIT 5"
        );
    }

    #[test]
    fn empty_projection_asks_for_row_markers() {
        assert_eq!(
            scan_sql("tcp_events", &[], &[], None),
            "SELECT 1 AS \"__kindling_row\" FROM \"tcp_events\""
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
