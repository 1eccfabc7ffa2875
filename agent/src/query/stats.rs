//! `agent_stats`: the agent's counters as a table, computed when scanned (one row per stored
//! table; the agent-wide counters repeat on each row).

use std::{
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use async_trait::async_trait;
use datafusion::{
    arrow::{
        array::{ArrayRef, StringArray, TimestampNanosecondArray, UInt64Array},
        datatypes::SchemaRef,
        record_batch::RecordBatch,
    },
    catalog::{Session, TableProvider},
    common::Result,
    datasource::{MemTable, TableType},
    logical_expr::Expr,
    physical_plan::ExecutionPlan,
};
use kindling_wire::schema;

use crate::{conntrack::Clock, pipeline::PipelineCounters, store::Store};

/// Identity and counters of this agent.
#[derive(Debug)]
pub struct AgentInfo {
    /// Fills `node`.
    pub node: String,
    /// Agent version.
    pub version: String,
    /// When the agent started.
    pub started: Instant,
    /// The pipeline's counters.
    pub counters: Arc<PipelineCounters>,
}

impl AgentInfo {
    /// Info for an agent on `node` started now.
    pub fn new(node: &str, counters: Arc<PipelineCounters>) -> Self {
        Self {
            node: node.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started: Instant::now(),
            counters,
        }
    }
}

/// The `agent_stats` table.
#[derive(Debug)]
pub struct AgentStatsTable {
    store: Arc<Store>,
    info: Arc<AgentInfo>,
}

impl AgentStatsTable {
    /// Stats of `store` and `info`.
    pub fn new(store: Arc<Store>, info: Arc<AgentInfo>) -> Self {
        Self { store, info }
    }

    /// The table's rows now.
    pub fn batch(&self) -> Result<RecordBatch> {
        let stats = self.store.stats();
        let n = stats.len();
        let c = &self.info.counters;
        let dropped_kernel = c.dropped_kernel();
        let dropped_user = c.dropped_user();
        let repeat = |v: u64| -> ArrayRef { Arc::new(UInt64Array::from(vec![v; n])) };
        let per_table = |f: &dyn Fn(&crate::store::TableStats) -> u64| -> ArrayRef {
            Arc::new(UInt64Array::from_iter_values(stats.values().map(f)))
        };
        let now = Clock::now().wall_now();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampNanosecondArray::from(vec![now; n]).with_timezone("UTC")),
            Arc::new(StringArray::from(vec![self.info.node.as_str(); n])),
            Arc::new(StringArray::from(vec![self.info.version.as_str(); n])),
            repeat(self.info.started.elapsed().as_nanos() as u64),
            repeat(c.events_received.load(Ordering::Relaxed)),
            repeat(dropped_kernel + dropped_user),
            repeat(dropped_kernel),
            repeat(dropped_user),
            repeat(self.store.config().budget_bytes),
            Arc::new(StringArray::from_iter_values(stats.keys())),
            per_table(&|s| s.rows_held),
            per_table(&|s| s.bytes_held),
            per_table(&|s| s.chunks_held),
            per_table(&|s| s.rows_evicted),
            per_table(&|s| s.bytes_evicted),
        ];
        Ok(RecordBatch::try_new(schema::agent_stats(), columns)?)
    }
}

#[async_trait]
impl TableProvider for AgentStatsTable {
    fn schema(&self) -> SchemaRef {
        schema::agent_stats()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let table = MemTable::try_new(schema::agent_stats(), vec![vec![self.batch()?]])?;
        table.scan(state, projection, filters, limit).await
    }
}
