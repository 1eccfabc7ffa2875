//! The agent's query layer: DataFusion over the local [`Store`] (the only part of the agent
//! that knows DataFusion). A coordinator's fragment arrives as SQL text (see
//! `kindling_wire::ticket`) and runs here against [`StoreTable`]s and the computed
//! `agent_stats` table, read-only and within a memory limit.

mod stats;
mod table;

use std::{sync::Arc, time::Duration};

use datafusion::{
    error::{DataFusionError, Result},
    execution::SendableRecordBatchStream,
    prelude::{SQLOptions, SessionConfig, SessionContext},
};
use kindling_wire::schema;

pub use stats::{
    AgentInfo, AgentStatsTable, Computed, ComputedTable, OpenCallsTable, ProtocolStatsTable,
};
pub use table::{ChunkScanExec, HistoryScanExec, StoreTable};

use crate::store::Store;

/// Bounds of one query on the agent.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Memory a query may hold in sorts, joins and aggregations.
    pub memory_bytes: usize,
    /// Wall-clock bound of a query, from planning to its last batch.
    pub timeout: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 128 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Runs query fragments against this agent's tables.
#[derive(Debug, Clone)]
pub struct LocalQueries {
    store: Arc<Store>,
    info: Arc<AgentInfo>,
    limits: QueryLimits,
}

/// Options that keep a fragment read-only: no DDL, DML, COPY or SET.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

impl LocalQueries {
    /// Queries over `store`, reporting `info` in `agent_stats`.
    pub fn new(store: Arc<Store>, info: Arc<AgentInfo>, limits: QueryLimits) -> Self {
        Self {
            store,
            info,
            limits,
        }
    }

    /// The query limits.
    pub fn limits(&self) -> QueryLimits {
        self.limits
    }

    /// The store queried.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// What `agent_stats` reports.
    pub fn info(&self) -> &Arc<AgentInfo> {
        &self.info
    }

    /// A fresh session with every table registered and the memory limit applied, whose
    /// queries yield often enough for the time limit to end them
    /// ([`kindling_sql::guard`]).
    pub fn context(&self) -> Result<SessionContext> {
        let config = SessionConfig::new().with_information_schema(true);
        let ctx = kindling_sql::guard::bounded_context(config, self.limits.memory_bytes)?;
        // The partial side of percentiles computed across agents.
        ctx.register_udaf(kindling_sql::digest::digest_udaf());
        for table in schema::STORED_TABLES {
            ctx.register_table(
                table,
                Arc::new(StoreTable::new(
                    Arc::clone(&self.store),
                    table,
                    &self.info.cluster,
                )),
            )?;
        }
        ctx.register_table(
            schema::AGENT_STATS,
            Arc::new(Computed(AgentStatsTable::new(
                Arc::clone(&self.store),
                Arc::clone(&self.info),
            ))),
        )?;
        ctx.register_table(
            schema::PROTOCOL_STATS,
            Arc::new(Computed(ProtocolStatsTable::new(Arc::clone(&self.info)))),
        )?;
        ctx.register_table(
            schema::OPEN_CALLS,
            Arc::new(Computed(OpenCallsTable::new(Arc::clone(&self.info)))),
        )?;
        Ok(ctx)
    }

    /// Plans and starts `sql`, a read-only query; batches stream as they are produced.
    pub async fn execute(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        kindling_sql::guard::check_sql(sql).map_err(DataFusionError::Plan)?;
        let sql = kindling_sql::keyword_columns::quote_keyword_columns(sql);
        let ctx = self.context()?;
        let df = tokio::time::timeout(self.limits.timeout, ctx.sql_with_options(&sql, read_only()))
            .await
            .map_err(|_| timeout_error(self.limits.timeout))??;
        df.execute_stream().await
    }
}

/// The error a query over its time limit ends with.
pub fn timeout_error(limit: Duration) -> DataFusionError {
    DataFusionError::ResourcesExhausted(format!(
        "query exceeded the agent's time limit of {} s",
        limit.as_secs_f64()
    ))
}

#[cfg(test)]
mod tests;
