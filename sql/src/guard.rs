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
//!   [`YieldAfterMultiInput`], which makes joins and recursive queries yield to the async
//!   runtime so that the time limit can end them, and [`BoundedOutput`] versions of the
//!   functions whose output size is a product of their arguments (`repeat('x', 2000000000)`
//!   allocated 2 GB outside any memory pool: found by the `ticket` fuzz target).

use std::sync::Arc;

use datafusion::{
    arrow::{
        array::{Array, ArrayRef, AsArray},
        compute::{cast, kernels::length::length},
        datatypes::{DataType, FieldRef, Int64Type},
    },
    common::{
        DataFusionError, Result, config::ConfigOptions, tree_node::Transformed, tree_node::TreeNode,
    },
    execution::{
        SessionStateBuilder,
        disk_manager::{DiskManagerBuilder, DiskManagerMode},
        memory_pool::GreedyMemoryPool,
        runtime_env::RuntimeEnvBuilder,
    },
    logical_expr::{
        ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
        ScalarUDFImpl, Signature,
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

/// Deepest nesting of `CASE` and of parentheses opened by a keyword (`CAST(`, `SUBSTRING(`,
/// `EXTRACT(`...). When such an expression fails to parse, sqlparser backtracks and parses its
/// inside again, so the time doubles with each level: 24 unclosed `CAST(` took 27.8 s of CPU
/// in a release agent, and parsing cannot be interrupted. At 12 levels the worst case is a few
/// milliseconds; dashboards nest two or three.
pub const MAX_SQL_NESTING: usize = 12;

/// Refuses SQL longer than [`MAX_SQL_BYTES`], with more than [`MAX_SQL_OPERATORS`]
/// operators and keywords, or nested deeper than [`MAX_SQL_NESTING`], with a message that says
/// which limit and by how much.
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
    let nesting = keyword_nesting(&tokens);
    if nesting > MAX_SQL_NESTING {
        return Err(format!(
            "SQL with CASE or function-keyword parentheses nested {nesting} deep exceeds the \
             limit of {MAX_SQL_NESTING}"
        ));
    }
    Ok(())
}

/// The deepest nesting of `CASE ... END` and of parentheses that follow a keyword. Unclosed
/// ones count as open to the end.
fn keyword_nesting(tokens: &[Token]) -> usize {
    let is_keyword = |t: &Token, k: Option<Keyword>| match t {
        Token::Word(w) if w.quote_style.is_none() => match k {
            Some(k) => w.keyword == k,
            None => w.keyword != Keyword::NoKeyword,
        },
        _ => false,
    };
    // For each open parenthesis: whether a keyword opened it.
    let mut parens: Vec<bool> = Vec::new();
    let (mut cases, mut depth, mut deepest) = (0usize, 0usize, 0usize);
    let mut previous: Option<&Token> = None;
    for token in tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_))) {
        match token {
            Token::LParen => {
                let opened_by_keyword = previous.is_some_and(|p| is_keyword(p, None));
                parens.push(opened_by_keyword);
                depth += usize::from(opened_by_keyword);
            }
            Token::RParen => {
                if parens.pop() == Some(true) {
                    depth = depth.saturating_sub(1);
                }
            }
            t if is_keyword(t, Some(Keyword::CASE)) => {
                cases += 1;
                depth += 1;
            }
            t if cases > 0 && is_keyword(t, Some(Keyword::END)) => {
                cases -= 1;
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        deepest = deepest.max(depth);
        previous = Some(token);
    }
    deepest
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

/// Most a size-multiplying function may produce in one call (over one batch), in bytes.
pub const MAX_FUNCTION_OUTPUT: u64 = 64 << 20;

/// How a function's output size, in bytes, follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum OutputSize {
    /// `repeat(text, n)`: bytes of the text times n.
    Repeat,
    /// `lpad/rpad(text, n [, fill])`: n characters, up to 4 bytes each.
    Pad,
    /// `array_repeat(value, n)`: n times the bytes of the value (a list counts all of its
    /// elements: nested repeats multiply).
    ArrayRepeat,
    /// `array_resize(list, n [, value])`: n elements of the value's bytes (8 without one).
    ArrayResize,
    /// `range/generate_series(start, stop [, step])` over integers: (stop - start) / step
    /// elements of 8 bytes.
    Range,
}

/// The functions wrapped in [`BoundedOutput`], by name.
const BOUNDED_FUNCTIONS: [(&str, OutputSize); 7] = [
    ("repeat", OutputSize::Repeat),
    ("lpad", OutputSize::Pad),
    ("rpad", OutputSize::Pad),
    ("array_repeat", OutputSize::ArrayRepeat),
    ("array_resize", OutputSize::ArrayResize),
    ("range", OutputSize::Range),
    ("generate_series", OutputSize::Range),
];

/// A function whose output size is a product of its arguments, checked against
/// [`MAX_FUNCTION_OUTPUT`] before it allocates anything; otherwise the function itself.
/// DataFusion's memory pool does not see what scalar functions allocate.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BoundedOutput {
    inner: ScalarUDF,
    size: OutputSize,
}

/// Argument `i` as an Int64 array of the batch's length (non-integers: None).
fn int_arg(args: &ScalarFunctionArgs, i: usize) -> Result<Option<ArrayRef>> {
    let Some(arg) = args.args.get(i) else {
        return Ok(None);
    };
    let array = arg.to_array(args.number_rows)?;
    if !array.data_type().is_integer() {
        return Ok(None);
    }
    Ok(Some(cast(&array, &DataType::Int64)?))
}

/// Sum over rows of `f(row)`, saturating; null rows count 0.
fn sum_rows(n: usize, mut f: impl FnMut(usize) -> u64) -> u64 {
    (0..n).fold(0u64, |acc, i| acc.saturating_add(f(i)))
}

/// Bytes per row of argument `i` (at least `min`; `min` when it is absent).
fn row_bytes(args: &ScalarFunctionArgs, i: usize, min: u64) -> Result<u64> {
    let Some(arg) = args.args.get(i) else {
        return Ok(min);
    };
    let rows = args.number_rows.max(1);
    let bytes = arg.to_array(rows)?.to_data().get_slice_memory_size()? as u64;
    Ok((bytes / rows as u64).max(min))
}

fn int_at(a: &ArrayRef, i: usize) -> i64 {
    let a = a.as_primitive::<Int64Type>();
    if a.is_null(i) { 0 } else { a.value(i) }
}

impl BoundedOutput {
    /// The most this call could produce, in bytes.
    fn output_size(&self, args: &ScalarFunctionArgs) -> Result<u64> {
        let rows = args.number_rows.max(1);
        let count = |a: &ArrayRef, i| int_at(a, i).max(0) as u64;
        Ok(match self.size {
            OutputSize::Repeat => {
                let (Some(text), Some(n)) = (args.args.first(), int_arg(args, 1)?) else {
                    return Ok(0);
                };
                let text = cast(&text.to_array(rows)?, &DataType::LargeUtf8)?;
                let bytes: ArrayRef = length(&text)?;
                sum_rows(rows, |i| count(&bytes, i).saturating_mul(count(&n, i)))
            }
            OutputSize::Pad => match int_arg(args, 1)? {
                Some(n) => sum_rows(rows, |i| count(&n, i).saturating_mul(4)),
                None => 0,
            },
            OutputSize::ArrayRepeat | OutputSize::ArrayResize => {
                let Some(n) = int_arg(args, 1)? else {
                    return Ok(0);
                };
                let each = match self.size {
                    OutputSize::ArrayRepeat => row_bytes(args, 0, 8)?,
                    _ => row_bytes(args, 2, 8)?,
                };
                sum_rows(rows, |i| count(&n, i).saturating_mul(each))
            }
            OutputSize::Range => {
                let (Some(start), Some(stop)) = (int_arg(args, 0)?, int_arg(args, 1)?) else {
                    return Ok(0);
                };
                let step = int_arg(args, 2)?;
                sum_rows(rows, |i| {
                    let span = (i128::from(int_at(&stop, i)) - i128::from(int_at(&start, i)))
                        .unsigned_abs();
                    let step = step
                        .as_ref()
                        .map_or(1, |s| int_at(s, i))
                        .unsigned_abs()
                        .max(1);
                    u64::try_from(span / u128::from(step))
                        .unwrap_or(u64::MAX)
                        .saturating_mul(8)
                })
            }
        })
    }
}

impl ScalarUDFImpl for BoundedOutput {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let size = self.output_size(&args)?;
        if size > MAX_FUNCTION_OUTPUT {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() would produce {size} bytes in one batch; the limit is \
                 {MAX_FUNCTION_OUTPUT}",
                self.inner.name()
            )));
        }
        self.inner.invoke_with_args(args)
    }
}

/// A session whose queries hold at most `memory_bytes` (over it a query fails: it never
/// spills to disk), yield often enough to be stopped by their time limit, and cannot make
/// a function allocate more than [`MAX_FUNCTION_OUTPUT`] at once.
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
    let bounded: Vec<ScalarUDF> = BOUNDED_FUNCTIONS
        .iter()
        .filter_map(|(name, size)| {
            let inner = state.scalar_functions().get(*name)?.as_ref().clone();
            Some(ScalarUDF::new_from_impl(BoundedOutput {
                inner,
                size: *size,
            }))
        })
        .collect();
    let ctx = SessionContext::new_with_state(state);
    for f in bounded {
        ctx.register_udf(f);
    }
    Ok(ctx)
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
        let or_chain = format!(
            "SELECT * FROM calls WHERE {}",
            ["pid = 1"; 600].join(" OR ")
        );
        assert!(
            check_sql(&or_chain)
                .unwrap_err()
                .starts_with("SQL with 1203 operators")
        );
        // Lists do not count: a dashboard's multi-value variable can expand to thousands.
        let in_list = format!(
            "SELECT * FROM calls WHERE \"resource\" IN ({})",
            (0..5000)
                .map(|i| format!("'/r{i}'"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(check_sql(&in_list), Ok(()));
        let long = format!("SELECT '{}'", "x".repeat(MAX_SQL_BYTES));
        assert_eq!(
            check_sql(&long).unwrap_err(),
            format!(
                "SQL of {} bytes exceeds the limit of 262144 bytes",
                long.len()
            )
        );
        // Text the tokenizer rejects goes on to the parser, which names the mistake.
        assert_eq!(check_sql("SELECT 'unterminated"), Ok(()));
    }

    /// The `ticket` fuzz target's open finding (bench/fuzz/regressions/ticket/nested_*): nested
    /// CASE and CAST( whose parse time doubles per level are refused before parsing.
    #[test]
    fn keyword_nesting_is_bounded() {
        let casts = |n: usize, close: bool| {
            let tail = if close {
                " AS BIGINT)".repeat(n)
            } else {
                String::new()
            };
            format!("SELECT {}pid{tail} FROM calls", "CAST(".repeat(n))
        };
        let cases = |n: usize| {
            format!(
                "SELECT {}1{} FROM calls",
                "CASE WHEN pid > 0 THEN ".repeat(n),
                " ELSE 0 END".repeat(n)
            )
        };
        let refused = |n: usize| {
            format!(
                "SQL with CASE or function-keyword parentheses nested {n} deep exceeds the limit of 12"
            )
        };
        // At the limit: accepted, and the parser answers (the closed form plans as usual).
        assert_eq!(check_sql(&casts(MAX_SQL_NESTING, true)), Ok(()));
        assert_eq!(check_sql(&casts(MAX_SQL_NESTING, false)), Ok(()));
        assert_eq!(check_sql(&cases(MAX_SQL_NESTING)), Ok(()));
        assert_eq!(check_sql(&casts(13, true)), Err(refused(13)));
        assert_eq!(check_sql(&casts(24, false)), Err(refused(24)));
        assert_eq!(check_sql(&cases(13)), Err(refused(13)));
        // CASE and CAST( add up; plain parentheses, and keywords after they close, do not.
        let mixed = format!(
            "SELECT {}pid{} FROM calls",
            "CASE WHEN CAST(".repeat(7),
            " AS INT) > 0 THEN 1 END".repeat(7)
        );
        assert_eq!(check_sql(&mixed), Err(refused(14)));
        let parens = format!("SELECT {}pid{} FROM calls", "(".repeat(40), ")".repeat(40));
        assert_eq!(check_sql(&parens), Ok(()));
        let siblings = format!("SELECT {} FROM calls", ["CAST(pid AS INT)"; 40].join(" + "));
        assert_eq!(check_sql(&siblings), Ok(()));
        // Unclosed at the limit: the parser fails (after 9 ms in a debug build, measured).
        let unclosed = datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &GenericDialect {},
            &casts(MAX_SQL_NESTING, false),
        );
        assert!(unclosed.is_err());
    }

    /// The `ticket` fuzz target's finding (bench/fuzz/regressions/ticket/repeat_2e9) and its
    /// kin: refused before they allocate; within the limit, the functions answer as before.
    #[tokio::test]
    async fn size_multiplying_functions_are_bounded() {
        let ctx = bounded_context(SessionConfig::new(), 64 << 20).unwrap();
        let run = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let batches = ctx.sql(sql).await?.collect().await?;
                let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?;
                Ok::<_, DataFusionError>(text.to_string())
            }
        };
        let limit = MAX_FUNCTION_OUTPUT;
        for (sql, message) in [
            (
                "SELECT repeat('x', 2000000000)",
                "repeat() would produce 2000000000 bytes",
            ),
            (
                "SELECT repeat('abc', 30000000)",
                "repeat() would produce 90000000 bytes",
            ),
            (
                "SELECT lpad('x', 2000000000)",
                "lpad() would produce 8000000000 bytes",
            ),
            (
                "SELECT rpad('x', 100000000, 'y')",
                "rpad() would produce 400000000 bytes",
            ),
            (
                "SELECT array_repeat(1, 100000000)",
                "array_repeat() would produce 800000000 bytes",
            ),
            // The fuzz target's second finding (regressions/ticket/nested_array_repeat): 1,000
            // elements repeated 100,000 times.
            (
                "SELECT array_repeat(array_repeat(2, 1000), 100000)",
                "array_repeat() would produce 800800000 bytes",
            ),
            (
                "SELECT array_resize([1], 100000000)",
                "array_resize() would produce 800000000 bytes",
            ),
            (
                "SELECT range(0, 10000000000)",
                "range() would produce 80000000000 bytes",
            ),
            (
                "SELECT generate_series(1, 10000000000, 2)",
                "generate_series() would produce 39999999992 bytes",
            ),
        ] {
            let err = run(sql).await.unwrap_err().to_string();
            assert!(
                err.contains(message)
                    && err.ends_with(&format!("in one batch; the limit is {limit}")),
                "{sql}: {err}"
            );
        }
        let ok = run("SELECT repeat('ab', 3) AS r, lpad('7', 3, '0') AS l, range(0, 3) AS g").await;
        assert_eq!(
            ok.unwrap(),
            "+--------+-----+-----------+\n| r      | l   | g         |\n+--------+-----+-----------+\n\
             | ababab | 007 | [0, 1, 2] |\n+--------+-----+-----------+"
        );
    }
}
