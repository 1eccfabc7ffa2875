//! [`QueryEngine`]: plans SQL with DataFusion over [`AgentTable`]s and runs it, the same way for
//! the `kindling` CLI and the Grafana plugin.

use std::{sync::Arc, time::Duration};

use datafusion::{
    arrow::{datatypes::SchemaRef, record_batch::RecordBatch},
    execution::{memory_pool::GreedyMemoryPool, runtime_env::RuntimeEnvBuilder},
    prelude::{SQLOptions, SessionConfig, SessionContext},
};
use futures::StreamExt;
use kindling_wire::schema;

use crate::{
    agents::AgentSet,
    error::{Error, Result},
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
}

impl QueryOutput {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Runs SQL over every agent's tables.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    agents: Arc<AgentSet>,
    limits: EngineLimits,
}

/// Options allowing queries only: no DDL, DML, COPY or SET.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

impl QueryEngine {
    /// An engine over `agents`.
    pub fn new(agents: AgentSet, limits: EngineLimits) -> Self {
        Self {
            agents: Arc::new(agents),
            limits,
        }
    }

    /// The agents queried.
    pub fn agents(&self) -> &AgentSet {
        &self.agents
    }

    /// The limits applied.
    pub fn limits(&self) -> EngineLimits {
        self.limits
    }

    /// A session with every agent table and the DNS monitor's functions registered.
    pub async fn context(&self) -> Result<SessionContext> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(GreedyMemoryPool::new(self.limits.memory_bytes)))
            .build_arc()?;
        let config = SessionConfig::new()
            .with_information_schema(true)
            // One partition per agent already gives parallelism; repartitioning small results
            // only costs.
            .with_target_partitions(self.agents.addrs.len().clamp(1, 16));
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        for table in schema::TABLES {
            let provider = AgentTable::new(
                table,
                schema::by_name(table).expect("every listed table has a schema"),
                Arc::clone(&self.agents),
            );
            ctx.register_table(table, Arc::new(provider))?;
        }
        crate::dns_monitor::register(&ctx).await?;
        Ok(ctx)
    }

    /// Plans and runs `sql`, collecting at most `max_rows` rows within the time limit.
    pub async fn query(&self, sql: &str) -> Result<QueryOutput> {
        let timeout = self.limits.timeout;
        tokio::time::timeout(timeout, self.run(sql))
            .await
            .map_err(|_| Error::Timeout(timeout.as_secs_f64()))?
    }

    async fn run(&self, sql: &str) -> Result<QueryOutput> {
        let ctx = self.context().await?;
        let df = ctx.sql_with_options(sql, read_only()).await?;
        let schema: SchemaRef = Arc::clone(df.schema().inner());
        let mut stream = df.execute_stream().await?;
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
        Ok(QueryOutput {
            schema,
            batches,
            truncated,
        })
    }
}
