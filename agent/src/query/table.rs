//! [`StoreTable`]: a DataFusion table over one table of the [`Store`], scanning its memory
//! chunks ([`ChunkScanExec`]) and its history files (DataFusion's Parquet reader under a
//! [`HistoryScanExec`]) as one table, and skipping the chunks and files whose time bounds cannot
//! match the query's time filters. Inside a file, the filters prune row groups by their
//! statistics.
//!
//! Rows are stored without the `cluster` column (`kindling_wire::schema::stored`); the scan
//! adds it, the agent's `--cluster-name` on every row, as a projected literal, and a query whose
//! filters on `cluster` exclude that name scans nothing.

use std::{collections::VecDeque, fmt, sync::Arc};

use async_trait::async_trait;
use datafusion::{
    arrow::{
        array::{Array, ArrayRef, AsArray, StringArray},
        datatypes::{DataType, Field, Schema, SchemaRef},
        record_batch::RecordBatch,
    },
    catalog::{Session, TableProvider},
    common::{DFSchema, DataFusionError, Result, ScalarValue, tree_node::TreeNodeRecursion},
    datasource::{
        TableType,
        listing::PartitionedFile,
        physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource},
        source::DataSourceExec,
    },
    execution::object_store::ObjectStoreUrl,
    execution::{SendableRecordBatchStream, TaskContext, memory_pool::MemoryConsumer},
    logical_expr::utils::conjunction,
    logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown},
    physical_expr::{
        EquivalenceProperties, PhysicalExpr,
        expressions::{Column, Literal},
    },
    physical_plan::{
        DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
        empty::EmptyExec,
        execution_plan::{Boundedness, EmissionType},
        projection::ProjectionExec,
        stream::RecordBatchStreamAdapter,
        union::UnionExec,
    },
};
use futures::StreamExt as _;
use kindling_wire::schema;

use crate::store::{Bounds, Chunk, DiskFile, Store, TimeBounds};

/// A table of the store, as DataFusion sees it.
#[derive(Debug)]
pub struct StoreTable {
    store: Arc<Store>,
    name: String,
    /// As served: the stored columns, and `cluster` after `node`.
    schema: SchemaRef,
    /// As stored.
    stored: SchemaRef,
    /// The `cluster` column's value, and its index in `schema`.
    cluster: Arc<str>,
    cluster_index: usize,
}

impl StoreTable {
    /// The stored table `name` of `store`, served with `cluster` in its `cluster` column.
    pub fn new(store: Arc<Store>, name: &str, cluster: &str) -> Self {
        let schema = schema::by_name(name).expect("a stored table is served");
        let stored = schema::stored(name).expect("a stored table has a stored schema");
        let cluster_index = schema
            .index_of(schema::CLUSTER)
            .expect("every served table has the cluster");
        Self {
            store,
            name: name.to_owned(),
            schema,
            stored,
            cluster: Arc::from(cluster),
            cluster_index,
        }
    }

    /// Whether `filter`, which reads only `cluster`, holds for this agent's cluster.
    fn cluster_matches(&self, state: &dyn Session, filter: &Expr) -> bool {
        let one = Arc::new(Schema::new(vec![Field::new(
            schema::CLUSTER,
            DataType::Utf8,
            false,
        )]));
        let value: ArrayRef = Arc::new(StringArray::from(vec![self.cluster.as_ref()]));
        let holds = || -> Result<bool> {
            let df_schema = DFSchema::try_from(Arc::clone(&one))?;
            let expr = state.create_physical_expr(filter.clone(), &df_schema)?;
            let batch = RecordBatch::try_new(one, vec![value])?;
            let result = expr.evaluate(&batch)?.into_array(1)?;
            Ok(result
                .as_boolean_opt()
                .is_some_and(|b| b.len() == 1 && b.is_valid(0) && b.value(0)))
        };
        // A filter that cannot be evaluated here is left to the plan above the scan.
        holds().unwrap_or(true)
    }
}

/// Whether `expr` reads `column` and no other column.
fn reads_only(expr: &Expr, column: &str) -> bool {
    let columns = expr.column_refs();
    !columns.is_empty() && columns.iter().all(|c| c.name == column)
}

/// Inclusive nanosecond range a column is restricted to by the filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    lo: i64,
    hi: i64,
}

impl Range {
    const ALL: Self = Self {
        lo: i64::MIN,
        hi: i64::MAX,
    };

    fn overlaps(&self, b: &TimeBounds) -> bool {
        b.max >= self.lo && b.min <= self.hi
    }
}

fn timestamp_ns(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

/// Narrows `range` of `column` by one conjunct of the filters, if it is a comparison of the
/// column with a timestamp literal (or a BETWEEN of two).
fn narrow(range: &mut Range, column: &str, expr: &Expr) {
    let is_col = |e: &Expr| matches!(e, Expr::Column(c) if c.name == column);
    let lit = |e: &Expr| match e {
        Expr::Literal(v, _) => timestamp_ns(v),
        _ => None,
    };
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if *op == Operator::And {
                narrow(range, column, left);
                narrow(range, column, right);
                return;
            }
            let (op, v) = if is_col(left) {
                match lit(right) {
                    Some(v) => (*op, v),
                    None => return,
                }
            } else if is_col(right) {
                match (lit(left), op.swap()) {
                    (Some(v), Some(op)) => (op, v),
                    _ => return,
                }
            } else {
                return;
            };
            match op {
                Operator::Gt => range.lo = range.lo.max(v.saturating_add(1)),
                Operator::GtEq => range.lo = range.lo.max(v),
                Operator::Lt => range.hi = range.hi.min(v.saturating_sub(1)),
                Operator::LtEq => range.hi = range.hi.min(v),
                Operator::Eq => {
                    range.lo = range.lo.max(v);
                    range.hi = range.hi.min(v);
                }
                _ => {}
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_col(expr) => {
            if let (Some(lo), Some(hi)) = (lit(low), lit(high)) {
                range.lo = range.lo.max(lo);
                range.hi = range.hi.min(hi);
            }
        }
        _ => {}
    }
}

/// Whether a chunk or file of these `bounds` may hold rows matching `filters` (false only when
/// a time filter excludes it).
pub(crate) fn may_match(bounds: &Bounds, schema: &SchemaRef, filters: &[Expr]) -> bool {
    bounds.iter().all(|(&col, bounds)| {
        let name = schema.field(col).name();
        let mut range = Range::ALL;
        for f in filters {
            narrow(&mut range, name, f);
        }
        if range.lo > range.hi {
            return false;
        }
        match bounds {
            Some(b) => range.overlaps(b),
            // No non-null value: only a filter-free scan needs it.
            None => range == Range::ALL,
        }
    })
}

#[async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Pruning is per chunk, so every filter is still applied above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (on_cluster, filters): (Vec<Expr>, Vec<Expr>) = filters
            .iter()
            .cloned()
            .partition(|f| reads_only(f, schema::CLUSTER));
        let projection: Vec<usize> =
            projection.map_or_else(|| (0..self.schema.fields().len()).collect(), Clone::clone);
        if !on_cluster.iter().all(|f| self.cluster_matches(state, f)) {
            return Ok(Arc::new(EmptyExec::new(Arc::new(
                self.schema.project(&projection)?,
            ))));
        }
        // The served columns asked for, as stored columns (the cluster has none).
        let ci = self.cluster_index;
        let mut stored: Vec<usize> = projection
            .iter()
            .filter(|&&i| i != ci)
            .map(|&i| if i > ci { i - 1 } else { i })
            .collect();
        if !projection.contains(&ci) {
            return self.scan_stored(state, &stored, &filters, limit);
        }
        // Only the cluster asked for: scan the first stored column for the row count.
        if stored.is_empty() {
            stored.push(0);
        }
        let input = self.scan_stored(state, &stored, &filters, limit)?;
        let input_schema = input.schema();
        let mut at = 0;
        let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = projection
            .iter()
            .map(|&i| {
                if i == ci {
                    let value = ScalarValue::Utf8(Some(self.cluster.to_string()));
                    (
                        Arc::new(Literal::new(value)) as Arc<dyn PhysicalExpr>,
                        schema::CLUSTER.to_owned(),
                    )
                } else {
                    let name = input_schema.field(at).name().clone();
                    at += 1;
                    (Arc::new(Column::new(&name, at - 1)) as _, name)
                }
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(exprs, input)?))
    }
}

impl StoreTable {
    /// The stored columns `projection` (indices of [`Self::stored`]) of the chunks and files
    /// that may hold rows matching `filters`.
    fn scan_stored(
        &self,
        state: &dyn Session,
        projection: &[usize],
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection = Some(projection.to_vec());
        let projection = projection.as_ref();
        let snapshot = self
            .store
            .snapshot(&self.name)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        // Newest first, memory then files, so that a bare LIMIT is satisfied by the newest
        // chunks alone.
        let bare_limit = limit.filter(|_| filters.is_empty());
        let mut rows = 0;
        let mut enough = |n: usize| {
            rows += n;
            bare_limit.is_some_and(|l| rows >= l)
        };
        let mut kept: Vec<&Arc<Chunk>> = Vec::new();
        let mut done = false;
        for chunk in snapshot.chunks.iter().rev() {
            if !may_match(&chunk.bounds, &snapshot.schema, filters) {
                continue;
            }
            kept.push(chunk);
            if enough(chunk.rows()) {
                done = true;
                break;
            }
        }
        let mut files: Vec<Arc<DiskFile>> = Vec::new();
        if !done {
            for file in snapshot.files.iter().rev() {
                if !may_match(&file.bounds, &snapshot.schema, filters) {
                    continue;
                }
                files.push(Arc::clone(file));
                if enough(file.rows as usize) {
                    break;
                }
            }
        }
        let scanned = kept.len();
        let chunks: Vec<Arc<Chunk>> = kept.into_iter().rev().cloned().collect();
        let projected = match projection {
            Some(p) => Arc::new(self.stored.project(p)?),
            None => Arc::clone(&self.stored),
        };
        let memory: Arc<dyn ExecutionPlan> = Arc::new(ChunkScanExec::new(
            &self.name,
            chunks,
            projected,
            projection.cloned(),
            limit,
            scanned,
            snapshot.chunks.len() - scanned,
        ));
        if snapshot.files.is_empty() {
            return Ok(memory);
        }
        let pruned = snapshot.files.len() - files.len();
        let disk = self.history_scan(state, files, pruned, projection, filters, bare_limit)?;
        UnionExec::try_new(vec![memory, disk])
    }

    /// DataFusion's Parquet reader over `files` (newest first), with the filters as its
    /// predicate: row groups whose statistics exclude them are skipped.
    fn history_scan(
        &self,
        state: &dyn Session,
        files: Vec<Arc<DiskFile>>,
        pruned: usize,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut source = ParquetSource::new(Arc::clone(&self.stored));
        // The cluster is no column of the files.
        let on_files = filters
            .iter()
            .filter(|f| !f.column_refs().iter().any(|c| c.name == schema::CLUSTER));
        if let Some(filter) = conjunction(on_files.cloned()) {
            let df_schema = DFSchema::try_from(Arc::clone(&self.stored))?;
            // A filter the physical planner cannot take only costs pruning: it is applied
            // above the scan anyway.
            if let Ok(predicate) = state.create_physical_expr(filter, &df_schema) {
                source = source.with_predicate(predicate);
            }
        }
        let group: Vec<PartitionedFile> = files
            .iter()
            .map(|f| PartitionedFile::new(f.path.to_string_lossy(), f.bytes))
            .collect();
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
                .with_file_group(FileGroup::new(group))
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
        Ok(Arc::new(HistoryScanExec::new(
            &self.name,
            files,
            pruned,
            DataSourceExec::from_data_source(config),
        )))
    }
}

/// The history files of one table scan: DataFusion's Parquet reader under it, and the files it
/// reads held open for the scan's lifetime (a file the history budget expires meanwhile is
/// deleted when the scan ends, not under it). Shows in EXPLAIN how many files time filters
/// pruned.
#[derive(Debug)]
pub struct HistoryScanExec {
    table: String,
    files: Arc<Vec<Arc<DiskFile>>>,
    files_pruned: usize,
    input: Arc<dyn ExecutionPlan>,
}

impl HistoryScanExec {
    fn new(
        table: &str,
        files: Vec<Arc<DiskFile>>,
        files_pruned: usize,
        input: Arc<dyn ExecutionPlan>,
    ) -> Self {
        Self {
            table: table.to_owned(),
            files: Arc::new(files),
            files_pruned,
            input,
        }
    }
}

impl DisplayAs for HistoryScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HistoryScanExec: table={}, files_scanned={}, files_pruned={}",
            self.table,
            self.files.len(),
            self.files_pruned
        )
    }
}

impl ExecutionPlan for HistoryScanExec {
    fn name(&self) -> &str {
        "HistoryScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        // No expression of its own: the predicate is the Parquet source's.
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children.pop().ok_or_else(|| {
            DataFusionError::Internal("HistoryScanExec needs its input".to_owned())
        })?;
        Ok(Arc::new(Self {
            table: self.table.clone(),
            files: Arc::clone(&self.files),
            files_pruned: self.files_pruned,
            input,
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let files = Arc::clone(&self.files);
        let stream = self.input.execute(partition, context)?;
        let schema = stream.schema();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.map(move |batch| {
                let _held = &files;
                batch
            }),
        )))
    }
}

/// Streams the chunks a [`StoreTable`] scan kept, decoding each (only the projected columns)
/// when the stream reaches it.
#[derive(Debug)]
pub struct ChunkScanExec {
    table: String,
    chunks: Vec<Arc<Chunk>>,
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    limit: Option<usize>,
    chunks_scanned: usize,
    chunks_pruned: usize,
    properties: Arc<PlanProperties>,
}

impl ChunkScanExec {
    fn new(
        table: &str,
        chunks: Vec<Arc<Chunk>>,
        schema: SchemaRef,
        projection: Option<Vec<usize>>,
        limit: Option<usize>,
        chunks_scanned: usize,
        chunks_pruned: usize,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            table: table.to_owned(),
            chunks,
            schema,
            projection,
            limit,
            chunks_scanned,
            chunks_pruned,
            properties,
        }
    }
}

impl DisplayAs for ChunkScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ChunkScanExec: table={}, chunks_scanned={}, chunks_pruned={}",
            self.table, self.chunks_scanned, self.chunks_pruned
        )
    }
}

impl ExecutionPlan for ChunkScanExec {
    fn name(&self) -> &str {
        "ChunkScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    kindling_sql::leaf_plan_methods!();

    fn execute(
        &self,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let projection = self.projection.clone();
        let mut chunks = self.chunks.clone().into_iter();
        // Decoded batches of a compressed chunk, each with the bytes charged for it.
        let mut decoded: VecDeque<(RecordBatch, usize)> = VecDeque::new();
        // A compressed chunk's decoded columns are new memory, charged to the query's pool
        // while the scan holds them (a plain chunk's batches are the store's own, already in
        // the budget): a query cannot decode more than its limit at once.
        let reservation = MemoryConsumer::new(format!("ChunkScanExec[{}]", self.table))
            .register(context.memory_pool());
        // The rows still wanted (the limit): no chunk past it is decoded.
        let mut wanted = self.limit.unwrap_or(usize::MAX);
        let batches = std::iter::from_fn(move || {
            loop {
                if wanted == 0 {
                    return None;
                }
                if let Some((b, charged)) = decoded.pop_front() {
                    reservation.shrink(charged);
                    let n = b.num_rows().min(wanted);
                    wanted -= n;
                    return Some(Ok(b.slice(0, n)));
                }
                let chunk = chunks.next()?;
                let charge = |b: &RecordBatch| {
                    if chunk.is_compressed() {
                        b.get_array_memory_size()
                    } else {
                        0
                    }
                };
                let result = chunk
                    .batches(projection.as_deref())
                    .map_err(DataFusionError::from)
                    .and_then(|batches| {
                        let charged: Vec<usize> = batches.iter().map(charge).collect();
                        reservation.try_grow(charged.iter().sum())?;
                        decoded.extend(batches.into_iter().zip(charged));
                        Ok(())
                    });
                if let Err(e) = result {
                    wanted = 0;
                    return Some(Err(e));
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::iter(batches),
        )))
    }
}
