//! [`QueryEngine`]: plans SQL with DataFusion over [`AgentTable`]s and runs it, the same way for
//! the `kindling` CLI and the Grafana plugin.

use std::{sync::Arc, time::Duration};

use datafusion::{
    arrow::{datatypes::SchemaRef, record_batch::RecordBatch},
    prelude::{SQLOptions, SessionConfig, SessionContext},
};
use futures::StreamExt;
use kindling_wire::schema;

use crate::{
    agents::{AgentSet, QueryAgents},
    error::{AgentError, Error, Result, list_failures},
    scan::AgentTable,
};

/// Bounds of every query the engine runs.
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    /// Wall-clock bound of a query, from planning to its last row.
    pub timeout: Duration,
    /// Memory the coordinator may hold in sorts, joins and aggregations of one query.
    pub memory_bytes: usize,
    /// Most rows a result may have; more are cut off and the result marked truncated.
    pub max_rows: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            memory_bytes: 512 << 20,
            max_rows: 1_000_000,
        }
    }
}

/// The rows of a query.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    /// Result schema.
    pub schema: SchemaRef,
    /// Result rows.
    pub batches: Vec<RecordBatch>,
    /// Whether rows beyond [`EngineLimits::max_rows`] were cut off.
    pub truncated: bool,
    /// Agents queried (resolved addresses, plus names that did not resolve).
    pub agents: usize,
    /// Agents that did not answer: the result is partial, without their rows.
    pub missing: Vec<AgentError>,
    /// Named clusters none of whose agents answered, with their number of agents.
    pub clusters_down: Vec<(String, usize)>,
    /// Bytes of Flight messages received from agents.
    pub bytes_received: u64,
}

impl QueryOutput {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// For a partial result, the warning that names the missing agents, and first the
    /// clusters of which no agent answered.
    pub fn partial_warning(&self) -> Option<String> {
        let clusters: String = self
            .clusters_down
            .iter()
            .map(|(name, n)| format!("cluster {name} did not answer (none of its {n} agents); "))
            .collect();
        (!self.missing.is_empty()).then(|| {
            format!(
                "partial result: {clusters}{} of {} agents did not answer: {}",
                self.missing.len(),
                self.agents,
                list_failures(&self.missing)
            )
        })
    }
}

/// Runs SQL over every agent's tables.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    agents: Arc<AgentSet>,
    limits: EngineLimits,
    push_aggregates: bool,
}

/// Options allowing queries only: no DDL, DML, COPY or SET.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

impl QueryEngine {
    /// An engine over `agents`. An agent's answer is bounded by the smaller of its own
    /// timeout and 90% of the query's, so that a slow agent leaves a partial result rather
    /// than a timed-out query.
    pub fn new(mut agents: AgentSet, limits: EngineLimits) -> Self {
        agents.agent_timeout = agents.agent_timeout.min(limits.timeout.mul_f64(0.9));
        Self {
            agents: Arc::new(agents),
            limits,
            push_aggregates: true,
        }
    }

    /// The same engine, splitting aggregates into partial aggregates on agents (the default)
    /// or not (agents send rows; for comparisons).
    pub fn with_partial_aggregation(mut self, on: bool) -> Self {
        self.push_aggregates = on;
        self
    }

    /// The agents queried.
    pub fn agents(&self) -> &AgentSet {
        &self.agents
    }

    /// The limits applied.
    pub fn limits(&self) -> EngineLimits {
        self.limits
    }

    /// A session with every agent table and the DNS monitor's functions registered, and the
    /// agents its scans query (resolved now; they record which agents do not answer).
    pub async fn context(&self) -> Result<(SessionContext, Arc<QueryAgents>)> {
        let agents = Arc::new(QueryAgents::resolve(Arc::clone(&self.agents)).await);
        let config = SessionConfig::new()
            .with_information_schema(true)
            // One partition per agent already gives parallelism; repartitioning small results
            // only costs.
            .with_target_partitions(agents.agents.len().clamp(1, 16));
        // Over the memory limit a query fails (it never spills what was captured to disk);
        // joins yield so that the time limit can end them.
        let ctx = kindling_sql::guard::bounded_context(config, self.limits.memory_bytes)?;
        ctx.register_udaf(kindling_sql::digest::quantile_udaf());
        if self.push_aggregates {
            ctx.add_optimizer_rule(Arc::new(crate::pushdown::push_aggregates()));
            ctx.add_optimizer_rule(Arc::new(crate::pushdown::push_top_k()));
        }
        for table in schema::TABLES {
            let provider = AgentTable::new(
                table,
                schema::by_name(table).expect("every listed table has a schema"),
                Arc::clone(&agents),
            );
            ctx.register_table(table, Arc::new(provider))?;
        }
        crate::dns_monitor::register(&ctx).await?;
        ctx.register_table(
            crate::health::AGENTS_TABLE,
            Arc::new(crate::health::AgentsTable::new(Arc::clone(&self.agents))),
        )?;
        Ok((ctx, agents))
    }

    /// Plans and runs `sql`, collecting at most `max_rows` rows within the time limit.
    pub async fn query(&self, sql: &str) -> Result<QueryOutput> {
        let timeout = self.limits.timeout;
        tokio::time::timeout(timeout, self.run(sql))
            .await
            .map_err(|_| Error::Timeout(timeout.as_secs_f64()))?
    }

    async fn run(&self, sql: &str) -> Result<QueryOutput> {
        kindling_sql::guard::check_sql(sql).map_err(Error::Query)?;
        let sql = kindling_sql::keyword_columns::quote_keyword_columns(sql);
        let (ctx, agents) = self.context().await?;
        let df = ctx.sql_with_options(&sql, read_only()).await?;
        let mut stream = df.execute_stream().await?;
        // The stream's schema, not the logical plan's: DataFusion can type an expression
        // differently in the two (`u64_column * 2` is Decimal128(20, 0) in the plan and
        // Decimal128(38, 0) in the batches), and results must agree with their batches.
        let schema: SchemaRef = stream.schema();
        let mut batches = Vec::new();
        let mut rows = 0;
        let mut truncated = false;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let room = self.limits.max_rows - rows;
            if batch.num_rows() > room {
                batches.push(batch.slice(0, room));
                truncated = true;
                break;
            }
            rows += batch.num_rows();
            batches.push(batch);
        }
        let missing = agents.missing();
        let none_answered = !missing.is_empty()
            && agents
                .agents
                .iter()
                .all(|a| missing.iter().any(|m| m.agent == a.name));
        if none_answered {
            return Err(Error::Unavailable(missing));
        }
        Ok(QueryOutput {
            schema,
            batches,
            truncated,
            agents: agents.configured(),
            clusters_down: agents.clusters_down(),
            missing,
            bytes_received: agents.received.load(std::sync::atomic::Ordering::Relaxed),
        })
    }
}
