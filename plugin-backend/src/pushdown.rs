//! Partial aggregation on agents: [`push_aggregates`], a logical optimizer rule that splits a
//! GROUP BY over one agent table into a partial aggregate each agent runs on its own rows and a
//! final aggregate that merges the agents' groups on the coordinator. The bytes an agent sends
//! then grow with the number of groups, not the number of rows.
//!
//! It applies to an `Aggregate` whose input is a table scan of an agent table, under any
//! filters, column projections and an alias, when every aggregate is COUNT, SUM, MIN, MAX,
//! AVG (Float64) or `approx_percentile_cont` (two arguments) without DISTINCT, FILTER or
//! ORDER BY, and the group keys, arguments and filters can be written as SQL. Percentiles
//! travel as t-digests (`kindling_sql::digest`), one per group and column, merged on the
//! coordinator. Anything else runs as before: the agents send the rows, the coordinator
//! aggregates. (A single COUNT(DISTINCT x) qualifies: DataFusion first turns it into a GROUP
//! BY x.)
//!
//! ```text
//! Aggregate: groupBy=[resource], aggr=[count(*), avg(latency)]          (what the user wrote)
//!   Filter: ts > ...
//!     TableScan: calls
//! ```
//! becomes
//! ```text
//! Projection: g0 AS resource, f0 AS count(*), f1 / f2 AS avg(latency)  (on the coordinator)
//!   Aggregate: groupBy=[g0], aggr=[sum(p0) AS f0, sum(p1) AS f1, sum(p2) AS f2]
//!     TableScan: __kindling_partial_calls                              (one scan per agent:)
//!       SELECT resource AS g0, count(1) AS p0, sum(latency) AS p1, count(latency) AS p2
//!       FROM calls WHERE ts > ... GROUP BY resource
//! ```
//!
//! Why not datafusion-distributed: see ARCHITECTURE.md ("Partial aggregation").

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::{
    arrow::datatypes::{DataType, Field, Schema, SchemaRef},
    catalog::{Session, TableProvider},
    common::{
        DFSchema, Result, ScalarValue,
        tree_node::{Transformed, TreeNode},
    },
    datasource::{TableType, provider_as_source, source_as_provider},
    functions_aggregate::expr_fn::{count, max, min, sum},
    logical_expr::{
        Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, TableScan, cast, col,
        expr::{AggregateFunction, AggregateFunctionParams},
        lit,
    },
    optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule},
    physical_plan::ExecutionPlan,
};

use kindling_sql::digest;

use crate::{
    agents::QueryAgents,
    fragment::{expr_sql, push_where, quote_ident, unqualify},
    scan::{AgentScanExec, AgentTable, TopK},
};

/// A logical optimizer rule that hands work to agents: `rewrite` returns the plan that replaces
/// a node, or `None` to leave it. Two exist: [`push_aggregates`] and [`push_top_k`].
#[derive(Debug)]
pub struct AgentRule {
    name: &'static str,
    order: ApplyOrder,
    rewrite: fn(&LogicalPlan) -> Result<Option<LogicalPlan>>,
}

/// Partial aggregation on agents; see the module documentation.
pub fn push_aggregates() -> AgentRule {
    AgentRule {
        name: "kindling_push_aggregates_to_agents",
        order: ApplyOrder::BottomUp,
        rewrite: split,
    }
}

/// TopK on agents: each agent sends only its first k rows of `ORDER BY ... LIMIT k` over one
/// agent table (under filters, column projections and aliases), instead of every row. The
/// coordinator still sorts and limits the agents' rows, so the answer is the same; every
/// filter must reach the agents, as for aggregates.
pub fn push_top_k() -> AgentRule {
    AgentRule {
        name: "kindling_push_top_k_to_agents",
        order: ApplyOrder::TopDown,
        rewrite: top_k,
    }
}

impl OptimizerRule for AgentRule {
    fn name(&self) -> &str {
        self.name
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(self.order)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        match (self.rewrite)(&plan)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// `plan` with its agent scan cut to each agent's top k, if it is a sort with a fetch over one.
fn top_k(plan: &LogicalPlan) -> Result<Option<LogicalPlan>> {
    let LogicalPlan::Sort(sort) = plan else {
        return Ok(None);
    };
    let Some(k) = sort.fetch else {
        return Ok(None);
    };
    let keys: Vec<Expr> = sort.expr.iter().map(|s| s.expr.clone()).collect();
    let Some((scan, mut resolved)) = scan_below(&sort.input, keys) else {
        return Ok(None);
    };
    let filters = resolved.split_off(sort.expr.len());
    let provider = source_as_provider(&scan.source)?;
    let Some(table) = provider.downcast_ref::<AgentTable>() else {
        return Ok(None);
    };
    if table.has_top_k() || filters.iter().any(|f| expr_sql(f).is_none()) {
        return Ok(None);
    }
    let mut order_by = Vec::new();
    for (s, key) in sort.expr.iter().zip(&resolved) {
        let Some(sql) = expr_sql(key) else {
            return Ok(None);
        };
        let direction = if s.asc { "ASC" } else { "DESC" };
        let nulls = if s.nulls_first {
            "NULLS FIRST"
        } else {
            "NULLS LAST"
        };
        order_by.push(format!("{sql} {direction} {nulls}"));
    }
    let cut = provider_as_source(Arc::new(table.with_top_k(TopK {
        order_by: order_by.join(", "),
        k,
    })));
    let table_name = scan.table_name.clone();
    let input = Arc::unwrap_or_clone(Arc::clone(&sort.input))
        .transform_up(|p| match p {
            LogicalPlan::TableScan(s) if s.table_name == table_name && s.fetch.is_none() => {
                Ok(Transformed::yes(LogicalPlan::TableScan(TableScan {
                    source: Arc::clone(&cut),
                    ..s
                })))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data;
    Ok(Some(LogicalPlan::Sort(datafusion::logical_expr::Sort {
        expr: sort.expr.clone(),
        input: Arc::new(input),
        fetch: sort.fetch,
    })))
}

/// How one aggregate is computed from the agents' partial columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merge {
    /// SUM of one partial column (COUNT, SUM).
    Sum,
    /// MIN of one partial column.
    Min,
    /// MAX of one partial column.
    Max,
    /// SUM of a partial sum divided by SUM of a partial count (AVG).
    Avg,
    /// The quantile (its f64 bits) of the merged partial t-digests (approx_percentile_cont).
    Quantile(u64),
}

fn digest(x: Expr) -> Expr {
    Expr::AggregateFunction(AggregateFunction::new_udf(
        Arc::new(digest::digest_udaf()),
        vec![x],
        false,
        None,
        vec![],
        None,
    ))
}

fn quantile(digests: Expr, q: f64) -> Expr {
    Expr::AggregateFunction(AggregateFunction::new_udf(
        Arc::new(digest::quantile_udaf()),
        vec![digests, lit(q)],
        false,
        None,
        vec![],
        None,
    ))
}

/// The scan under an aggregate, with every filter between them, and `exprs` (written over the
/// aggregate's input) rewritten over the scan's columns; `None` for other inputs.
fn scan_below(mut plan: &LogicalPlan, mut exprs: Vec<Expr>) -> Option<(&TableScan, Vec<Expr>)> {
    loop {
        match plan {
            LogicalPlan::TableScan(scan) if scan.fetch.is_none() => {
                exprs.extend(scan.filters.iter().cloned());
                return Some((scan, exprs));
            }
            LogicalPlan::Filter(filter) => {
                exprs.push(filter.predicate.clone());
                plan = &filter.input;
            }
            LogicalPlan::SubqueryAlias(alias) => plan = &alias.input,
            LogicalPlan::Projection(projection) => {
                // Replace each column the projection outputs with the expression it computes.
                let substitute = |e: Expr| {
                    e.transform_up(|e| match &e {
                        Expr::Column(c) => match projection.schema.maybe_index_of_column(c) {
                            Some(i) => Ok(Transformed::yes(
                                projection.expr[i].clone().unalias_nested().data,
                            )),
                            None => Ok(Transformed::no(e)),
                        },
                        _ => Ok(Transformed::no(e)),
                    })
                    .map(|t| t.data)
                };
                exprs = exprs
                    .into_iter()
                    .map(substitute)
                    .collect::<Result<_>>()
                    .ok()?;
                plan = &projection.input;
            }
            _ => return None,
        }
    }
}

/// The plan that replaces `plan`, if it is an aggregate this rule splits.
fn split(plan: &LogicalPlan) -> Result<Option<LogicalPlan>> {
    let LogicalPlan::Aggregate(aggregate) = plan else {
        return Ok(None);
    };
    // Group keys and aggregates, then the filters below, all over the scan's columns.
    let own: Vec<Expr> = aggregate
        .group_expr
        .iter()
        .chain(&aggregate.aggr_expr)
        .cloned()
        .collect();
    let Some((scan, mut resolved)) = scan_below(&aggregate.input, own) else {
        return Ok(None);
    };
    let filters = resolved.split_off(aggregate.group_expr.len() + aggregate.aggr_expr.len());
    let aggr_resolved = resolved.split_off(aggregate.group_expr.len());
    let group_resolved = resolved;
    let provider = source_as_provider(&scan.source)?;
    let Some(table) = provider.downcast_ref::<AgentTable>() else {
        return Ok(None);
    };
    let input_schema = aggregate.input.schema();

    // Agent side: group keys g*, partial aggregates p*.
    let mut select = Vec::new();
    let mut group_by = Vec::new();
    let mut partial_fields = Vec::new();
    for (i, (g, resolved)) in aggregate.group_expr.iter().zip(&group_resolved).enumerate() {
        if matches!(g, Expr::GroupingSet(_)) {
            return Ok(None);
        }
        let Some(sql) = expr_sql(resolved) else {
            return Ok(None);
        };
        let data_type = g.get_type(input_schema)?;
        select.push(format!("{sql} AS {}", quote_ident(&format!("g{i}"))));
        group_by.push(sql);
        partial_fields.push(Field::new(format!("g{i}"), data_type, true));
    }
    // Partial columns p*, each computed once however many aggregates use it; the final
    // aggregates f* over them, likewise; and each aggregate's value over the f* columns.
    let mut partials: Vec<Partial> = Vec::new();
    let mut finals: Vec<(Merge, usize)> = Vec::new();
    let mut outputs = Vec::new();
    for (a, resolved) in aggregate.aggr_expr.iter().zip(&aggr_resolved) {
        let Some((merge, parts)) = partials_of(a, resolved, input_schema)? else {
            return Ok(None);
        };
        let mut f_columns = Vec::new();
        for part in parts {
            let p = match partials.iter().position(|q| q.sql == part.sql) {
                Some(p) => p,
                // Two different aggregates the agent would name alike: leave it to rows.
                None if partials.iter().any(|q| q.name == part.name) => return Ok(None),
                None => {
                    let column = format!("p{}", partials.len());
                    select.push(format!("{} AS {}", part.sql, quote_ident(&column)));
                    partial_fields.push(Field::new(column, part.data_type.clone(), true));
                    partials.push(part);
                    partials.len() - 1
                }
            };
            let merge_one = if merge == Merge::Avg {
                Merge::Sum
            } else {
                merge
            };
            let f = match finals.iter().position(|x| *x == (merge_one, p)) {
                Some(f) => f,
                None => {
                    finals.push((merge_one, p));
                    finals.len() - 1
                }
            };
            f_columns.push(col(format!("f{f}")));
        }
        outputs.push(match (merge, f_columns.as_slice()) {
            (Merge::Avg, [s, c]) => {
                cast(s.clone(), DataType::Float64) / cast(c.clone(), DataType::Float64)
            }
            (_, [f]) => f.clone(),
            _ => return Ok(None),
        });
    }
    // Every filter must run before the agent aggregates.
    let Some(predicates) = filters.iter().map(expr_sql).collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    let mut sql = format!(
        "SELECT {} FROM {}",
        select.join(", "),
        quote_ident(table.name())
    );
    push_where(&mut sql, &predicates);
    if !group_by.is_empty() {
        sql.push_str(&format!(" GROUP BY {}", group_by.join(", ")));
    }

    // Coordinator side: merge the partial columns, then restore the aggregate's schema.
    let partial = PartialAggregateTable {
        table: table.name().to_owned(),
        schema: Arc::new(Schema::new(partial_fields)),
        sql,
        agents: Arc::clone(table.agents()),
    };
    let groups: Vec<Expr> = (0..group_by.len()).map(|i| col(format!("g{i}"))).collect();
    let final_exprs: Vec<Expr> = finals
        .iter()
        .enumerate()
        .map(|(f, (merge, p))| {
            let p = col(format!("p{p}"));
            let e = match merge {
                Merge::Min => min(p),
                Merge::Max => max(p),
                Merge::Sum | Merge::Avg => sum(p),
                Merge::Quantile(q) => quantile(p, f64::from_bits(*q)),
            };
            e.alias(format!("f{f}"))
        })
        .collect();
    let merged = LogicalPlanBuilder::scan(
        format!("__kindling_partial_{}", table.name()),
        provider_as_source(Arc::new(partial)),
        None,
    )?
    .aggregate(groups, final_exprs)?
    .build()?;
    let out_schema = aggregate.schema.as_ref();
    let mut exprs = Vec::new();
    for i in 0..group_by.len() {
        exprs.push(restore(
            col(format!("g{i}")),
            out_schema,
            i,
            merged.schema(),
        )?);
    }
    for (j, e) in outputs.into_iter().enumerate() {
        exprs.push(restore(e, out_schema, group_by.len() + j, merged.schema())?);
    }
    let rewritten = LogicalPlanBuilder::from(merged).project(exprs)?.build()?;
    Ok(Some(rewritten))
}

/// `e` with the type, name and qualifier of field `i` of `schema`.
fn restore(e: Expr, schema: &DFSchema, i: usize, input: &DFSchema) -> Result<Expr> {
    let (qualifier, field) = schema.qualified_field(i);
    let e = if e.get_type(input)? == *field.data_type() {
        e
    } else {
        cast(e, field.data_type().clone())
    };
    Ok(e.alias_qualified(qualifier.cloned(), field.name()))
}

/// One partial aggregate an agent computes.
struct Partial {
    /// Its SQL.
    sql: String,
    /// Its type.
    data_type: DataType,
    /// The name the agent's planner gives it (they must differ within one aggregate).
    name: String,
}

/// `f(arg)` as a partial aggregate: `on_scan` is the argument over the scan's columns, `over`
/// the same over `input`; `None` if it cannot be written as SQL or typed.
fn partial(f: fn(Expr) -> Expr, on_scan: Expr, over: Expr, input: &DFSchema) -> Option<Partial> {
    let on_scan = f(unqualify(on_scan));
    Some(Partial {
        sql: expr_sql(&on_scan)?,
        data_type: f(over).get_type(input).ok()?,
        name: on_scan.schema_name().to_string(),
    })
}

/// How `a` merges and the partial aggregates agents compute for it; `None` if `a` cannot be
/// split. `resolved` is `a` over the scan's columns, `a` is over `input`.
fn partials_of(
    a: &Expr,
    resolved: &Expr,
    input: &DFSchema,
) -> Result<Option<(Merge, Vec<Partial>)>> {
    let unalias = |e: &Expr| match e {
        Expr::Alias(alias) => alias.expr.as_ref().clone(),
        other => other.clone(),
    };
    let (
        Expr::AggregateFunction(AggregateFunction { func, params }),
        Expr::AggregateFunction(on_scan),
    ) = (unalias(a), unalias(resolved))
    else {
        return Ok(None);
    };
    if func.name() == "approx_percentile_cont" {
        return Ok(percentile_parts(&params, &on_scan.params, input));
    }
    if params.distinct
        || params.filter.is_some()
        || !params.order_by.is_empty()
        || params.null_treatment.is_some()
        || params.args.len() != 1
        || on_scan.params.args.len() != 1
    {
        return Ok(None);
    }
    let (on, over) = (on_scan.params.args[0].clone(), params.args[0].clone());
    // COUNT ignores values, and AVG's parts are summed exactly as integers while they fit in
    // 64 bits, so both take the argument without the cast the planner added. (The cast also
    // leaves names alike: count(x) and count(CAST(x ...)) would collide on the agent.)
    let parts = match func.name() {
        "count" => (
            Merge::Sum,
            vec![partial(count, uncast(&on), uncast(&over), input)],
        ),
        "sum" => (Merge::Sum, vec![partial(sum, on, over, input)]),
        "min" => (Merge::Min, vec![partial(min, on, over, input)]),
        "max" => (Merge::Max, vec![partial(max, on, over, input)]),
        "avg" if a.get_type(input)? == DataType::Float64 => (
            Merge::Avg,
            vec![
                partial(sum, uncast(&on), uncast(&over), input),
                partial(count, uncast(&on), uncast(&over), input),
            ],
        ),
        _ => return Ok(None),
    };
    Ok(parts
        .1
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .map(|p| (parts.0, p)))
}

/// `e` without the cast the planner added around it.
fn uncast(e: &Expr) -> Expr {
    match e {
        Expr::Cast(c) => c.expr.as_ref().clone(),
        other => other.clone(),
    }
}

/// `approx_percentile_cont(x, q)` or `approx_percentile_cont(q) WITHIN GROUP (ORDER BY x)`:
/// each agent sends the t-digest of x (shared by every percentile of x), the coordinator
/// merges them and reads quantile q. Not with a centroid count argument.
fn percentile_parts(
    params: &AggregateFunctionParams,
    on_scan: &AggregateFunctionParams,
    input: &DFSchema,
) -> Option<(Merge, Vec<Partial>)> {
    if params.distinct
        || params.filter.is_some()
        || params.order_by.len() > 1
        || params.args.len() != 2
        || on_scan.args.len() != 2
    {
        return None;
    }
    let q = match &params.args[1] {
        Expr::Literal(ScalarValue::Float64(Some(q)), _) => *q,
        _ => return None,
    };
    let descending = params.order_by.first().is_some_and(|s| !s.asc);
    let q = if descending { 1.0 - q } else { q };
    let part = partial(
        digest,
        uncast(&on_scan.args[0]),
        uncast(&params.args[0]),
        input,
    )?;
    Some((Merge::Quantile(q.to_bits()), vec![part]))
}

/// The agents' partial aggregate of one query, as a table the coordinator scans.
#[derive(Debug)]
struct PartialAggregateTable {
    table: String,
    schema: SchemaRef,
    sql: String,
    agents: Arc<QueryAgents>,
}

#[async_trait]
impl TableProvider for PartialAggregateTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let all = (0..self.schema.fields().len()).collect::<Vec<_>>();
        let (schema, sql) = match projection {
            Some(p) if *p != all => {
                let schema = Arc::new(self.schema.project(p)?);
                let columns: Vec<String> = schema
                    .fields()
                    .iter()
                    .map(|f| quote_ident(f.name()))
                    .collect();
                let sql = format!(
                    "SELECT {} FROM ({}) AS \"partial\"",
                    columns.join(", "),
                    self.sql
                );
                (schema, sql)
            }
            _ => (Arc::clone(&self.schema), self.sql.clone()),
        };
        Ok(Arc::new(AgentScanExec::new(
            &format!("{} (partial aggregate)", self.table),
            schema,
            sql,
            Arc::clone(&self.agents),
        )))
    }
}
