//! `agent_stats` and `protocol_stats`: the agent's counters as tables, computed when scanned.
//! `agent_stats` has one row per stored table, `protocol_stats` one per L7 protocol; the
//! agent-wide counters repeat on each row.

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
use kindling_protocols::Protocol;
use kindling_wire::schema;

use crate::{
    counters::PipelineCounters, decode::Clock, history::HistoryHealth, k8s::Kubernetes,
    sessions::ProtocolCounters, store::Store,
};

/// Identity and counters of this agent.
#[derive(Debug)]
pub struct AgentInfo {
    /// Fills `node`.
    pub node: String,
    /// Fills `cluster` (`--cluster-name`; "" when not named).
    pub cluster: String,
    /// Agent version.
    pub version: String,
    /// When the agent started.
    pub started: Instant,
    /// The pipeline's counters.
    pub counters: Arc<PipelineCounters>,
    /// Kubernetes enrichment, when on.
    pub kubernetes: Option<Arc<Kubernetes>>,
    /// The history directory's health, when there is one.
    pub history: Option<Arc<HistoryHealth>>,
}

impl AgentInfo {
    /// Info for an agent on `node` started now.
    pub fn new(node: &str, counters: Arc<PipelineCounters>) -> Self {
        Self {
            node: node.to_owned(),
            cluster: String::new(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started: Instant::now(),
            counters,
            kubernetes: None,
            history: None,
        }
    }

    /// In the cluster `name`.
    pub fn with_cluster(mut self, name: &str) -> Self {
        self.cluster = name.to_owned();
        self
    }

    /// With the history's health.
    pub fn with_history(mut self, history: Option<Arc<HistoryHealth>>) -> Self {
        self.history = history;
        self
    }

    /// With the enrichment's counters.
    pub fn with_kubernetes(mut self, kubernetes: Option<Arc<Kubernetes>>) -> Self {
        self.kubernetes = kubernetes;
        self
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
}

/// Every protocol a session can be (gRPC is a call's protocol, counted in its `http2` session's
/// row), by name: the rows of `protocol_stats`, in their order.
fn session_protocols() -> Vec<Protocol> {
    let mut protocols: Vec<_> = Protocol::ALL
        .into_iter()
        .filter(|p| *p != Protocol::Grpc)
        .collect();
    protocols.sort_by_key(|p| p.as_str());
    protocols
}

/// The `protocol_stats` table.
#[derive(Debug)]
pub struct ProtocolStatsTable {
    info: Arc<AgentInfo>,
}

impl ProtocolStatsTable {
    /// Stats of the L7 parsers behind `info`.
    pub fn new(info: Arc<AgentInfo>) -> Self {
        Self { info }
    }
}

/// The `open_calls` table: what the capture thread's last sweep found in flight.
#[derive(Debug)]
pub struct OpenCallsTable {
    info: Arc<AgentInfo>,
}

impl OpenCallsTable {
    /// The calls in flight that `info`'s capture thread published.
    pub fn new(info: Arc<AgentInfo>) -> Self {
        Self { info }
    }
}

impl ComputedTable for OpenCallsTable {
    fn schema(&self) -> SchemaRef {
        schema::by_name(schema::OPEN_CALLS).expect("a served table")
    }

    fn batch(&self) -> Result<RecordBatch> {
        let published = self.info.counters.open_calls.lock();
        let published = published.unwrap_or_else(|e| e.into_inner());
        let stored = published
            .clone()
            .unwrap_or_else(|| RecordBatch::new_empty(schema::calls()));
        // The rows as the capture thread built them, with the cluster after `node`.
        let served = self.schema();
        let at = served.index_of(schema::CLUSTER)?;
        let mut columns = stored.columns().to_vec();
        columns.insert(
            at,
            Arc::new(StringArray::from(vec![
                self.info.cluster.as_str();
                stored.num_rows()
            ])),
        );
        Ok(RecordBatch::try_new(served, columns)?)
    }
}

/// A table whose rows are computed from the agent's state each time it is scanned.
pub trait ComputedTable: std::fmt::Debug + Send + Sync + 'static {
    /// The table's schema.
    fn schema(&self) -> SchemaRef;
    /// The table's rows now.
    fn batch(&self) -> Result<RecordBatch>;
}

impl ComputedTable for AgentStatsTable {
    fn schema(&self) -> SchemaRef {
        schema::agent_stats()
    }

    fn batch(&self) -> Result<RecordBatch> {
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
            Arc::new(StringArray::from(vec![self.info.cluster.as_str(); n])),
            Arc::new(StringArray::from(vec![self.info.version.as_str(); n])),
            repeat(self.info.started.elapsed().as_nanos() as u64),
            // Both ring buffers: TCP lifecycle events and socket data events.
            repeat(
                c.events_received.load(Ordering::Relaxed)
                    + c.data_events_received.load(Ordering::Relaxed),
            ),
            repeat(dropped_kernel + dropped_user),
            repeat(dropped_kernel),
            repeat(dropped_user),
            repeat(c.kernel_ringbuf_full.load(Ordering::Relaxed)),
            repeat(c.kernel_data_ringbuf_full.load(Ordering::Relaxed)),
            repeat(c.kernel_read_failed.load(Ordering::Relaxed)),
            repeat(c.kernel_program_misses.load(Ordering::Relaxed)),
            repeat(c.kernel_tls_untracked.load(Ordering::Relaxed)),
            repeat(c.tls_libraries[0].load(Ordering::Relaxed)),
            repeat(c.tls_libraries[1].load(Ordering::Relaxed)),
            repeat(c.tls_libraries[2].load(Ordering::Relaxed)),
            repeat(c.tls_libraries[3].load(Ordering::Relaxed)),
            repeat(c.tls_libraries[4].load(Ordering::Relaxed)),
            repeat(c.tls_libraries[5].load(Ordering::Relaxed)),
            repeat(self.store.config().budget_bytes),
            Arc::new(StringArray::from_iter_values(stats.keys())),
            per_table(&|s| s.rows_held),
            per_table(&|s| s.bytes_held),
            per_table(&|s| s.chunks_held),
            per_table(&|s| s.rows_evicted),
            per_table(&|s| s.bytes_evicted),
            per_table(&|s| s.chunks_compressed),
        ];
        let k8s = self.info.kubernetes.as_ref().map(|k| k.stats());
        let status = k8s.as_ref().map_or("off", |k| k.status.as_str());
        let mut columns = columns;
        columns.extend([
            Arc::new(StringArray::from(vec![status; n])) as ArrayRef,
            repeat(k8s.as_ref().map_or(0, |k| k.counts.objects)),
            repeat(k8s.as_ref().map_or(0, |k| k.counts.pods)),
            repeat(k8s.as_ref().map_or(0, |k| k.counts.dropped)),
            repeat(k8s.as_ref().map_or(0, |k| k.updates)),
            repeat(
                k8s.as_ref()
                    .map_or(0, |_| c.kubernetes_payload_excluded.load(Ordering::Relaxed)),
            ),
        ]);
        let history = self.info.history.as_deref();
        let history_error = history.map(HistoryHealth::last_error).unwrap_or_default();
        columns.extend([
            repeat(history.map_or(0, |h| h.budget_bytes)),
            per_table(&|s| s.history_rows),
            per_table(&|s| s.history_bytes),
            per_table(&|s| s.history_files),
            Arc::new(
                TimestampNanosecondArray::from_iter(stats.values().map(|s| s.history_oldest))
                    .with_timezone("UTC"),
            ),
            per_table(&|s| s.history_rows_evicted),
            per_table(&|s| s.history_bytes_evicted),
            per_table(&|s| s.history_rows_lost),
            repeat(history.map_or(0, |h| h.write_errors.load(Ordering::Relaxed))),
            repeat(history.map_or(0, |h| h.files_skipped.load(Ordering::Relaxed))),
            Arc::new(StringArray::from(vec![history_error.as_str(); n])),
        ]);
        Ok(RecordBatch::try_new(schema::agent_stats(), columns)?)
    }
}

impl ComputedTable for ProtocolStatsTable {
    fn schema(&self) -> SchemaRef {
        schema::protocol_stats()
    }

    fn batch(&self) -> Result<RecordBatch> {
        let c = &self.info.counters;
        let per = c
            .protocols
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let protocols = session_protocols();
        let n = protocols.len();
        let counts = |f: &dyn Fn(&ProtocolCounters) -> u64| -> ArrayRef {
            Arc::new(UInt64Array::from_iter_values(
                protocols.iter().map(|p| f(per.counters(*p))),
            ))
        };
        let repeat = |v: u64| -> ArrayRef { Arc::new(UInt64Array::from(vec![v; n])) };
        let now = Clock::now().wall_now();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampNanosecondArray::from(vec![now; n]).with_timezone("UTC")),
            Arc::new(StringArray::from(vec![self.info.node.as_str(); n])),
            Arc::new(StringArray::from(vec![self.info.cluster.as_str(); n])),
            Arc::new(StringArray::from_iter_values(
                protocols.iter().map(|p| p.as_str()),
            )),
            counts(&|p| p.calls),
            counts(&|p| p.unparsed),
            counts(&|p| p.truncated),
            counts(&|p| p.unknown_headers),
            counts(&|p| p.unmatched),
            counts(&|p| p.resynced),
            repeat(c.sessions_undetected.load(Ordering::Relaxed)),
            repeat(c.sessions_full.load(Ordering::Relaxed)),
        ];
        Ok(RecordBatch::try_new(schema::protocol_stats(), columns)?)
    }
}

/// Serves a [`ComputedTable`] to DataFusion: one batch, computed at scan time.
#[derive(Debug)]
pub struct Computed<T>(pub T);

#[async_trait]
impl<T: ComputedTable> TableProvider for Computed<T> {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
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
        let table = MemTable::try_new(self.0.schema(), vec![vec![self.0.batch()?]])?;
        table.scan(state, projection, filters, limit).await
    }
}
