//! Bounds every query runs within, on agents and coordinators alike, beyond the memory pool and
//! the time limit each side sets.
//!
//! - [`check_sql`] refuses SQL text that could exhaust a thread's stack before any limit
//!   applies. DataFusion plans, optimizes and drops expression trees recursively, so
//!   `1+1+...+1` with a few thousand terms overflows a 2 MiB thread stack and aborts the whole
//!   process (the agent with its capture, or the Grafana plugin). sqlparser's own recursion
//!   limit covers nested parentheses and subqueries, not such flat chains of operators, whose
//!   tree is as deep as the chain is long. The check counts tokens, without parsing, so it is
//!   cheap and cannot itself recurse.
//! - [`bounded_context`] builds the session a query runs in: a memory pool with no spilling,
//!   and [`YieldAfterMultiInput`], which makes joins and recursive queries yield to the async
//!   runtime so that the time limit can end them.

use std::sync::Arc;

use datafusion::{
    common::{Result, config::ConfigOptions, tree_node::Transformed, tree_node::TreeNode},
    execution::{
        SessionStateBuilder,
        disk_manager::{DiskManagerBuilder, DiskManagerMode},
        memory_pool::GreedyMemoryPool,
        runtime_env::RuntimeEnvBuilder,
    },
    physical_optimizer::PhysicalOptimizerRule,
    physical_plan::{ExecutionPlan, coop::CooperativeExec},
    prelude::{SessionConfig, SessionContext},
    sql::sqlparser::{
        dialect::GenericDialect,
        keywords::Keyword,
        tokenizer::{Token, Tokenizer},
    },
};

/// Longest SQL text accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 256 << 10;

/// Most operators and keywords one SQL text may hold: an upper bound of how deep its
/// expression tree can be. A chain of 500 operators plans and runs within 2 MiB of stack in a
/// debug build (the coordinator's tests check it on the test thread; 1000 overflowed it);
/// dashboards use tens. Lists (`IN (...)`, select lists) are separated by commas, which do not
/// count.
pub const MAX_SQL_OPERATORS: usize = 500;

/// Refuses SQL longer than [`MAX_SQL_BYTES`] or with more than [`MAX_SQL_OPERATORS`]
/// operators and keywords, with a message that says which limit and by how much.
pub fn check_sql(sql: &str) -> Result<(), String> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(format!(
            "SQL of {} bytes exceeds the limit of {MAX_SQL_BYTES} bytes",
            sql.len()
        ));
    }
    // A text the tokenizer rejects is left to the parser, whose error is clearer.
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let operators = tokens.iter().filter(|t| is_operator(t)).count();
    if operators > MAX_SQL_OPERATORS {
        return Err(format!(
            "SQL with {operators} operators and keywords exceeds the limit of \
             {MAX_SQL_OPERATORS} (expressions that deep could exhaust the stack)"
        ));
    }
    Ok(())
}

/// Whether `token` can add a level to an expression tree: every symbol but separators, and
/// every keyword (column names that are also keywords count too: the bound only has to be an
/// upper bound).
fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(w) => w.keyword != Keyword::NoKeyword && w.quote_style.is_none(),
        Token::EOF
        | Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Comma
        | Token::Whitespace(_)
        | Token::Period
        | Token::SemiColon
        | Token::RParen
        | Token::Placeholder(_) => false,
        _ => true,
    }
}

/// A physical optimizer rule that wraps every operator with two or more inputs (joins, unions,
/// recursive queries) in a [`CooperativeExec`], which spends the async task's budget on every
/// batch it passes up.
///
/// DataFusion makes scans cooperative, but a join whose build side is in memory can produce
/// billions of rows from one probe batch without ever returning `Pending` (a cross join under
/// an `ORDER BY ... LIMIT`, for instance): the task never yields, and neither the query's
/// time limit nor a cancelled request can stop it. With the wrapper it yields every 128
/// batches.
#[derive(Debug, Default)]
pub struct YieldAfterMultiInput;

impl PhysicalOptimizerRule for YieldAfterMultiInput {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if node.children().len() < 2 {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(
                Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "YieldAfterMultiInput"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A session whose queries hold at most `memory_bytes` (over it a query fails: it never
/// spills to disk) and yield often enough to be stopped by their time limit.
pub fn bounded_context(config: SessionConfig, memory_bytes: usize) -> Result<SessionContext> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(GreedyMemoryPool::new(memory_bytes)))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()?;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(YieldAfterMultiInput))
        .build();
    Ok(SessionContext::new_with_state(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_over_the_limits_is_refused_with_the_numbers() {
        let chain = |n: usize| format!("SELECT {}1 FROM calls", "1+".repeat(n));
        // SELECT and FROM count, as do the n operators.
        assert_eq!(check_sql(&chain(MAX_SQL_OPERATORS - 2)), Ok(()));
        assert_eq!(
            check_sql(&chain(MAX_SQL_OPERATORS - 1)).unwrap_err(),
            "SQL with 501 operators and keywords exceeds the limit of 500 (expressions that \
             deep could exhaust the stack)"
        );
        // 600 `=`, 599 OR, and SELECT, *, FROM and WHERE.
        let or_chain = format!("SELECT * FROM calls WHERE {}", ["pid = 1"; 600].join(" OR "));
        assert!(check_sql(&or_chain).unwrap_err().starts_with("SQL with 1203 operators"));
        // Lists do not count: a dashboard's multi-value variable can expand to thousands.
        let in_list = format!(
            "SELECT * FROM calls WHERE \"resource\" IN ({})",
            (0..5000).map(|i| format!("'/r{i}'")).collect::<Vec<_>>().join(", ")
        );
        assert_eq!(check_sql(&in_list), Ok(()));
        let long = format!("SELECT '{}'", "x".repeat(MAX_SQL_BYTES));
        assert_eq!(
            check_sql(&long).unwrap_err(),
            format!("SQL of {} bytes exceeds the limit of 262144 bytes", long.len())
        );
        // Text the tokenizer rejects goes on to the parser, which names the mistake.
        assert_eq!(check_sql("SELECT 'unterminated"), Ok(()));
    }
}
