//! The in-memory Arrow store: every table is a sequence of time-partitioned chunks, and the
//! store as a whole stays under a memory budget by evicting whole chunks, oldest first.
//!
//! Rows arrive as small [`RecordBatch`]es (the pipeline flushes its builders every few hundred
//! milliseconds) and land in the table's *open* chunk, where scans see them at once. The open
//! chunk is sealed when it reaches `chunk_rows` rows or has been open for `chunk_duration`.
//! After every append the store evicts sealed chunks, the oldest across all tables first, until
//! it holds at most `budget_bytes`; if only open chunks are left and the budget is still
//! exceeded, the largest open chunk is sealed and evicted too. So the store never holds more
//! than the budget plus the batch being appended.
//!
//! Sealed chunks are then compacted and compressed, outside the store's lock, by whoever calls
//! [`Store::compress_sealed`] (the agent's `store-compress` thread, so that neither runs on the
//! capture thread): each chunk's batches are concatenated into one, which becomes one Arrow IPC
//! stream with LZ4 or zstd buffers, several times smaller than the plain arrays, and the budget
//! counts the compressed bytes, so it holds that much more history. A scan decodes only the
//! columns it needs, chunk by chunk ([`Chunk::batches`]).
//!
//! With a history directory (`--history-dir`, [`crate::history`]) a table also has a disk half:
//! every sealed chunk is written to one Parquet file ([`DiskFile`]) by the history writer, and a
//! chunk the budget evicts from memory only leaves the store once its file exists. A chunk
//! evicted before the writer reached it waits in the table's `unwritten` queue (at most
//! [`unwritten_cap`] bytes over all tables; beyond that the oldest is lost, counted in
//! `history_rows_lost`). Each row is in one place for a scan: a [`Snapshot`] holds the memory
//! chunks and only the files whose chunk has left memory. The files are bounded by
//! `history_budget`: beyond it the oldest files whose chunk is no longer in memory are expired
//! ([`DiskFile`] deletes its file when the last scan holding it ends).
//!
//! This module knows Arrow, not DataFusion or Parquet: the query layer reads [`Snapshot`]s, the
//! history module does the file I/O.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use datafusion::arrow::{
    array::{Array, TimestampNanosecondArray},
    compute::{concat_batches, max, min},
    datatypes::{DataType, SchemaRef},
    error::ArrowError,
    ipc::{
        CompressionType,
        reader::StreamReader,
        writer::{IpcWriteOptions, StreamWriter},
    },
    record_batch::RecordBatch,
};

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The table was never created.
    #[error("no table named {0}")]
    UnknownTable(String),
    /// A batch whose schema differs from its table's.
    #[error("batch schema does not match table {table}: {detail}")]
    SchemaMismatch {
        /// The table.
        table: String,
        /// What differs.
        detail: String,
    },
    /// Concatenating a chunk's batches failed.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How sealed chunks are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Plain Arrow arrays (each sealed chunk compacted into one batch): nothing to decode
    /// in a scan, the most bytes.
    None,
    /// Arrow IPC with LZ4-frame buffers: fast to decode.
    #[default]
    Lz4,
    /// Arrow IPC with zstd buffers: smaller, slower to write and to decode.
    Zstd,
}

impl Compression {
    fn ipc(self) -> Option<CompressionType> {
        match self {
            Self::None => None,
            Self::Lz4 => Some(CompressionType::LZ4_FRAME),
            Self::Zstd => Some(CompressionType::ZSTD),
        }
    }
}

/// How chunks are cut and how much the store may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Upper bound of the bytes held by all tables together.
    pub budget_bytes: u64,
    /// A chunk is sealed when it holds this many rows...
    pub chunk_rows: usize,
    /// ...or has been open this long.
    pub chunk_duration: Duration,
    /// How [`Store::compress_sealed`] packs sealed chunks.
    pub compression: Compression,
    /// With a history directory: the most bytes its files may hold (chunks evicted from memory
    /// then wait for their file instead of being dropped).
    pub history_budget: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            budget_bytes: 256 << 20,
            chunk_rows: 65_536,
            chunk_duration: Duration::from_secs(60),
            compression: Compression::default(),
            history_budget: None,
        }
    }
}

/// Most bytes of chunks evicted from memory that wait for the history writer, over all tables:
/// a quarter of the memory budget, at least 4 MiB. Beyond it the oldest are dropped and counted
/// (`history_rows_lost`), so a disk slower than capture cannot grow the agent without bound.
pub fn unwritten_cap(budget_bytes: u64) -> u64 {
    (budget_bytes / 4).max(4 << 20)
}

/// Time bounds per timestamp column (by index into the table's schema; None if all null).
pub type Bounds = BTreeMap<usize, Option<TimeBounds>>;

/// Min and max of one timestamp column over a chunk, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBounds {
    /// Smallest value.
    pub min: i64,
    /// Largest value.
    pub max: i64,
}

impl TimeBounds {
    fn merge(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Self {
                min: a.min.min(b.min),
                max: a.max.max(b.max),
            }),
            (a, b) => a.or(b),
        }
    }
}

/// How a chunk holds its rows.
#[derive(Debug, Clone)]
enum Rows {
    /// Arrow arrays, in one or more batches; `settled` once compressing them did not pay (or
    /// was not asked for), so that it is not tried again.
    Plain {
        batches: Vec<RecordBatch>,
        settled: bool,
    },
    /// One Arrow IPC stream (schema message, one batch, end marker) with compressed buffers.
    Ipc(Box<[u8]>),
}

/// A run of rows of one table, with the time bounds of each timestamp column.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Unique in the store, growing in the order chunks are opened (and across restarts with a
    /// history directory): names the chunk's history file.
    pub id: u64,
    data: Rows,
    /// Bounds per column index, for the table's timestamp columns (None if all null/empty).
    pub bounds: Bounds,
    rows: usize,
    bytes: u64,
}

impl Chunk {
    fn new(id: u64, timestamp_columns: &[usize]) -> Self {
        Self {
            id,
            data: Rows::Plain {
                batches: Vec::new(),
                settled: false,
            },
            bounds: timestamp_columns.iter().map(|&c| (c, None)).collect(),
            rows: 0,
            bytes: 0,
        }
    }

    /// Rows in the chunk.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes the chunk holds (Arrow buffers, or the compressed stream).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the chunk holds its rows compressed.
    pub fn is_compressed(&self) -> bool {
        matches!(self.data, Rows::Ipc(_))
    }

    /// The chunk's rows, only the columns of `projection` (indices into the table's schema)
    /// when given; a compressed chunk decodes only those.
    pub fn batches(&self, projection: Option<&[usize]>) -> Result<Vec<RecordBatch>, ArrowError> {
        match &self.data {
            Rows::Plain { batches, .. } => match projection {
                None => Ok(batches.clone()),
                Some(p) => batches.iter().map(|b| b.project(p)).collect(),
            },
            Rows::Ipc(bytes) => {
                StreamReader::try_new(&bytes[..], projection.map(<[usize]>::to_vec))?.collect()
            }
        }
    }

    /// This sealed chunk as it is kept: its batches concatenated into one, then compressed
    /// with `codec`, or settled plain when that is not smaller. Runs outside the store's lock
    /// and off the capture thread: concatenating a chunk writes all of it into fresh memory,
    /// and the kernel zeroing those pages was the capture thread's top symbol when sealing did
    /// it (BENCHMARKS.md).
    fn compressed(&self, schema: &SchemaRef, codec: Option<CompressionType>) -> Result<Self> {
        let Rows::Plain { batches, .. } = &self.data else {
            return Ok(self.clone());
        };
        let one = match batches.as_slice() {
            [one] => one.clone(),
            _ => concat_batches(schema, batches.iter())?,
        };
        let plain_bytes = one.get_array_memory_size() as u64;
        let packed = match codec {
            None => None,
            Some(codec) => {
                let options = IpcWriteOptions::default().try_with_compression(Some(codec))?;
                let mut writer = StreamWriter::try_new_with_options(Vec::new(), schema, options)?;
                writer.write(&one)?;
                writer.finish()?;
                Some(writer.into_inner()?.into_boxed_slice())
            }
        };
        let (data, bytes) = match packed {
            Some(ipc) if (ipc.len() as u64) < plain_bytes => {
                let n = ipc.len() as u64;
                (Rows::Ipc(ipc), n)
            }
            _ => (
                Rows::Plain {
                    batches: vec![one],
                    settled: true,
                },
                plain_bytes,
            ),
        };
        Ok(Self {
            id: self.id,
            data,
            bounds: self.bounds.clone(),
            rows: self.rows,
            bytes,
        })
    }

    fn push(&mut self, batch: RecordBatch) {
        for (&col, bounds) in self.bounds.iter_mut() {
            *bounds = TimeBounds::merge(*bounds, timestamp_bounds(batch.column(col).as_ref()));
        }
        self.rows += batch.num_rows();
        self.bytes += batch.get_array_memory_size() as u64;
        if let Rows::Plain { batches, .. } = &mut self.data {
            batches.push(batch);
        }
    }

    /// Whether [`Store::compress_sealed`] still has to look at this sealed chunk.
    fn pending(&self) -> bool {
        matches!(self.data, Rows::Plain { settled: false, .. })
    }
}

fn timestamp_bounds(array: &dyn Array) -> Option<TimeBounds> {
    let ts = array.as_any().downcast_ref::<TimestampNanosecondArray>()?;
    Some(TimeBounds {
        min: min(ts)?,
        max: max(ts)?,
    })
}

/// A sealed chunk written to a Parquet file by the history writer: the disk half of a table.
#[derive(Debug)]
pub struct DiskFile {
    /// The chunk it was written from ([`Chunk::id`]).
    pub id: u64,
    /// Where it is.
    pub path: PathBuf,
    /// Rows it holds.
    pub rows: u64,
    /// Its size.
    pub bytes: u64,
    /// Time bounds of its rows, as the chunk's.
    pub bounds: Bounds,
    /// Largest `conn_id` of its rows (0 for a table without one).
    pub max_conn_id: u64,
    /// Set when the budget expires the file: it is deleted when the last scan holding it ends.
    expired: AtomicBool,
}

impl DiskFile {
    /// A file as the writer wrote it or the start found it.
    pub fn new(
        id: u64,
        path: PathBuf,
        rows: u64,
        bytes: u64,
        bounds: Bounds,
        max_conn_id: u64,
    ) -> Self {
        Self {
            id,
            path,
            rows,
            bytes,
            bounds,
            max_conn_id,
            expired: AtomicBool::new(false),
        }
    }

    fn expire(&self) {
        self.expired.store(true, Ordering::Relaxed);
    }

    fn oldest(&self) -> Option<i64> {
        self.bounds.values().flatten().map(|b| b.min).min()
    }
}

impl Drop for DiskFile {
    fn drop(&mut self) {
        if !self.expired.load(Ordering::Relaxed) {
            return;
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "Cannot delete an expired history file")
            }
        }
    }
}

/// Counters of one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Rows currently held in memory.
    pub rows_held: u64,
    /// Bytes currently held in memory.
    pub bytes_held: u64,
    /// Chunks currently held in memory, the open one included.
    pub chunks_held: u64,
    /// Rows evicted from memory since start (to the history files, if any).
    pub rows_evicted: u64,
    /// Bytes evicted from memory since start.
    pub bytes_evicted: u64,
    /// Sealed chunks currently held compressed.
    pub chunks_compressed: u64,
    /// Rows in history files (some of them may still be in memory too).
    pub history_rows: u64,
    /// Bytes of history files.
    pub history_bytes: u64,
    /// History files.
    pub history_files: u64,
    /// Oldest timestamp in the history files.
    pub history_oldest: Option<i64>,
    /// Rows whose files the history budget expired since start.
    pub history_rows_evicted: u64,
    /// Bytes of those files.
    pub history_bytes_evicted: u64,
    /// Rows evicted from memory that never reached a file (the writer failed or fell behind
    /// by more than [`unwritten_cap`]).
    pub history_rows_lost: u64,
}

#[derive(Debug)]
struct Table {
    schema: SchemaRef,
    timestamp_columns: Vec<usize>,
    sealed: VecDeque<Arc<Chunk>>,
    open: Chunk,
    opened_at: Instant,
    rows_evicted: u64,
    bytes_evicted: u64,
    /// Chunks evicted from memory before the history writer wrote them, oldest first.
    unwritten: VecDeque<Arc<Chunk>>,
    /// Ids of the `sealed` chunks already written.
    written: BTreeSet<u64>,
    /// History files, oldest first.
    files: VecDeque<Arc<DiskFile>>,
    history_rows_evicted: u64,
    history_bytes_evicted: u64,
    history_rows_lost: u64,
}

impl Table {
    fn bytes(&self) -> u64 {
        self.sealed.iter().map(|c| c.bytes).sum::<u64>() + self.open.bytes
    }

    fn seal(&mut self, now: Instant, ids: &AtomicU64) -> Result<()> {
        if self.open.rows == 0 {
            self.opened_at = now;
            return Ok(());
        }
        let next = Chunk::new(ids.fetch_add(1, Ordering::Relaxed), &self.timestamp_columns);
        let chunk = std::mem::replace(&mut self.open, next);
        self.sealed.push_back(Arc::new(chunk));
        self.opened_at = now;
        Ok(())
    }

    /// Oldest data in the table's oldest sealed chunk, for choosing what to evict.
    fn oldest_sealed_key(&self) -> Option<i64> {
        let c = self.sealed.front()?;
        Some(
            c.bounds
                .values()
                .flatten()
                .map(|b| b.min)
                .min()
                .unwrap_or(i64::MIN),
        )
    }

    /// Whether the file of chunk `id` is shadowed by the chunk itself, still in memory.
    fn in_memory(&self, id: u64) -> bool {
        self.written.contains(&id)
    }

    fn unwritten_bytes(&self) -> u64 {
        self.unwritten.iter().map(|c| c.bytes).sum()
    }
}

/// A consistent view of one table's rows at one moment, for a scan: each row is in exactly one
/// of its chunks or files.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The table's schema.
    pub schema: SchemaRef,
    /// Memory chunks, oldest first: those waiting for the history writer, the sealed ones, then
    /// the open one.
    pub chunks: Vec<Arc<Chunk>>,
    /// History files whose chunk has left memory, oldest first.
    pub files: Vec<Arc<DiskFile>>,
}

/// A chunk the history writer has to write.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Its table.
    pub table: String,
    /// The table's schema.
    pub schema: SchemaRef,
    /// The chunk.
    pub chunk: Arc<Chunk>,
}

/// The store: named tables sharing one memory budget. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    tables: Mutex<BTreeMap<String, Table>>,
    /// The next [`Chunk::id`].
    ids: AtomicU64,
}

impl Store {
    /// An empty store with `tables` (name and schema).
    pub fn new(config: StoreConfig, tables: impl IntoIterator<Item = (String, SchemaRef)>) -> Self {
        let now = Instant::now();
        let ids = AtomicU64::new(1);
        let tables = tables
            .into_iter()
            .map(|(name, schema)| {
                let timestamp_columns: Vec<usize> = schema
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| matches!(f.data_type(), DataType::Timestamp(_, _)))
                    .map(|(i, _)| i)
                    .collect();
                let table = Table {
                    open: Chunk::new(ids.fetch_add(1, Ordering::Relaxed), &timestamp_columns),
                    schema,
                    timestamp_columns,
                    sealed: VecDeque::new(),
                    opened_at: now,
                    rows_evicted: 0,
                    bytes_evicted: 0,
                    unwritten: VecDeque::new(),
                    written: BTreeSet::new(),
                    files: VecDeque::new(),
                    history_rows_evicted: 0,
                    history_bytes_evicted: 0,
                    history_rows_lost: 0,
                };
                (name, table)
            })
            .collect();
        Self {
            config,
            tables: Mutex::new(tables),
            ids,
        }
    }

    /// The store's configuration.
    pub fn config(&self) -> StoreConfig {
        self.config
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Table>> {
        // A panic while holding the lock leaves consistent data (every mutation is a push or a
        // pop), so a poisoned lock is still usable.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends rows to `table`, sealing and evicting chunks as the configuration says.
    pub fn append(&self, table: &str, batch: RecordBatch) -> Result<()> {
        self.append_at(table, batch, Instant::now())
    }

    fn append_at(&self, table: &str, batch: RecordBatch, now: Instant) -> Result<()> {
        let mut tables = self.lock();
        let t = tables
            .get_mut(table)
            .ok_or_else(|| Error::UnknownTable(table.to_owned()))?;
        if batch.schema().fields() != t.schema.fields() {
            return Err(Error::SchemaMismatch {
                table: table.to_owned(),
                detail: format!("got {:?}", batch.schema().fields()),
            });
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if now.duration_since(t.opened_at) >= self.config.chunk_duration {
            t.seal(now, &self.ids)?;
        }
        t.open.push(batch);
        if t.open.rows >= self.config.chunk_rows {
            t.seal(now, &self.ids)?;
        }
        self.evict(&mut tables, now)
    }

    /// Seals open chunks that have been open longer than `chunk_duration`; call periodically so
    /// quiet tables still roll over.
    pub fn roll(&self) -> Result<()> {
        let now = Instant::now();
        let mut tables = self.lock();
        for t in tables.values_mut() {
            if now.duration_since(t.opened_at) >= self.config.chunk_duration {
                t.seal(now, &self.ids)?;
            }
        }
        Ok(())
    }

    /// Seals every open chunk that holds rows (before the last history write of a clean stop).
    pub fn seal_all(&self) -> Result<()> {
        let now = Instant::now();
        for t in self.lock().values_mut() {
            t.seal(now, &self.ids)?;
        }
        Ok(())
    }

    fn evict(&self, tables: &mut BTreeMap<String, Table>, now: Instant) -> Result<()> {
        let mut held: u64 = tables.values().map(Table::bytes).sum();
        while held > self.config.budget_bytes {
            let oldest = tables
                .values_mut()
                .filter_map(|t| Some((t.oldest_sealed_key()?, t)))
                .min_by_key(|(key, _)| *key)
                .map(|(_, t)| t);
            let victim = match oldest {
                Some(t) => t,
                None => {
                    // Only open chunks left: seal the largest so it can go.
                    let Some(t) = tables
                        .values_mut()
                        .filter(|t| t.open.rows > 0)
                        .max_by_key(|t| t.open.bytes)
                    else {
                        return Ok(());
                    };
                    t.seal(now, &self.ids)?;
                    t
                }
            };
            let chunk = victim
                .sealed
                .pop_front()
                .expect("victim was chosen for having a sealed chunk");
            victim.rows_evicted += chunk.rows as u64;
            victim.bytes_evicted += chunk.bytes;
            held -= chunk.bytes;
            // Written: its file now stands for it. Not yet: it waits for the writer.
            if !victim.written.remove(&chunk.id) && self.config.history_budget.is_some() {
                victim.unwritten.push_back(chunk);
            }
        }
        if self.config.history_budget.is_some() {
            Self::cap_unwritten(tables, unwritten_cap(self.config.budget_bytes));
        }
        Ok(())
    }

    /// Drops the oldest unwritten chunks until those left hold at most `cap` bytes.
    fn cap_unwritten(tables: &mut BTreeMap<String, Table>, cap: u64) {
        let mut waiting: u64 = tables.values().map(Table::unwritten_bytes).sum();
        while waiting > cap {
            let Some(t) = tables
                .values_mut()
                .filter(|t| !t.unwritten.is_empty())
                .min_by_key(|t| t.unwritten[0].id)
            else {
                return;
            };
            let chunk = t.unwritten.pop_front().expect("chosen for a waiting chunk");
            t.history_rows_lost += chunk.rows as u64;
            waiting -= chunk.bytes;
        }
    }

    /// The rows of `table` as they are now.
    pub fn snapshot(&self, table: &str) -> Result<Snapshot> {
        let tables = self.lock();
        let t = tables
            .get(table)
            .ok_or_else(|| Error::UnknownTable(table.to_owned()))?;
        let mut chunks: Vec<Arc<Chunk>> = t.unwritten.iter().cloned().collect();
        chunks.extend(t.sealed.iter().cloned());
        if t.open.rows > 0 {
            chunks.push(Arc::new(t.open.clone()));
        }
        let files = t
            .files
            .iter()
            .filter(|f| !t.in_memory(f.id))
            .cloned()
            .collect();
        Ok(Snapshot {
            schema: Arc::clone(&t.schema),
            chunks,
            files,
        })
    }

    /// Counters per table, by name.
    pub fn stats(&self) -> BTreeMap<String, TableStats> {
        self.lock()
            .iter()
            .map(|(name, t)| {
                let rows_held =
                    t.sealed.iter().map(|c| c.rows as u64).sum::<u64>() + t.open.rows as u64;
                let stats = TableStats {
                    rows_held,
                    bytes_held: t.bytes(),
                    chunks_held: t.sealed.len() as u64 + u64::from(t.open.rows > 0),
                    rows_evicted: t.rows_evicted,
                    bytes_evicted: t.bytes_evicted,
                    chunks_compressed: t.sealed.iter().filter(|c| c.is_compressed()).count() as u64,
                    history_rows: t.files.iter().map(|f| f.rows).sum(),
                    history_bytes: t.files.iter().map(|f| f.bytes).sum(),
                    history_files: t.files.len() as u64,
                    history_oldest: t.files.iter().filter_map(|f| f.oldest()).min(),
                    history_rows_evicted: t.history_rows_evicted,
                    history_bytes_evicted: t.history_bytes_evicted,
                    history_rows_lost: t.history_rows_lost,
                };
                (name.clone(), stats)
            })
            .collect()
    }

    /// Bytes held by all tables in memory.
    pub fn bytes_held(&self) -> u64 {
        self.lock().values().map(Table::bytes).sum()
    }

    /// Compresses the sealed chunks not yet compressed, as the configuration says, and returns
    /// how many it replaced. The work is done outside the lock: appends and scans go on
    /// meanwhile, and a chunk evicted in between is simply dropped.
    pub fn compress_sealed(&self) -> Result<usize> {
        let codec = self.config.compression.ipc();
        let pending: Vec<(String, SchemaRef, Arc<Chunk>)> = self
            .lock()
            .iter()
            .flat_map(|(name, t)| {
                t.sealed
                    .iter()
                    .filter(|c| c.pending())
                    .map(|c| (name.clone(), Arc::clone(&t.schema), Arc::clone(c)))
            })
            .collect();
        let mut replaced = 0;
        for (name, schema, chunk) in pending {
            let packed = Arc::new(chunk.compressed(&schema, codec)?);
            let mut tables = self.lock();
            if let Some(slot) = tables
                .get_mut(&name)
                .and_then(|t| t.sealed.iter_mut().find(|c| Arc::ptr_eq(c, &chunk)))
            {
                *slot = packed;
                replaced += 1;
            }
        }
        Ok(replaced)
    }

    /// The chunks the history writer has to write, oldest first: those evicted from memory
    /// before it reached them, then the sealed chunks not yet written.
    pub fn unwritten(&self) -> Vec<Pending> {
        let tables = self.lock();
        let mut pending: Vec<Pending> = tables
            .iter()
            .flat_map(|(name, t)| {
                let sealed = t.sealed.iter().filter(|c| !t.written.contains(&c.id));
                t.unwritten.iter().chain(sealed).map(|c| Pending {
                    table: name.clone(),
                    schema: Arc::clone(&t.schema),
                    chunk: Arc::clone(c),
                })
            })
            .collect();
        pending.sort_by_key(|p| p.chunk.id);
        pending
    }

    /// Records that the rows of chunk `file.id` of `table` are in `file` now, then expires the
    /// oldest files beyond the history budget. Returns the files to drop outside the lock (an
    /// expired file is deleted when its last holder drops it), among them `file` itself if
    /// its chunk was lost meanwhile: the rows were counted lost, they do not come back.
    pub fn add_file(&self, table: &str, file: DiskFile) -> Result<Vec<Arc<DiskFile>>> {
        let mut tables = self.lock();
        let t = tables
            .get_mut(table)
            .ok_or_else(|| Error::UnknownTable(table.to_owned()))?;
        let file = Arc::new(file);
        if let Some(i) = t.unwritten.iter().position(|c| c.id == file.id) {
            t.unwritten.remove(i);
        } else if t.sealed.iter().any(|c| c.id == file.id) {
            t.written.insert(file.id);
        } else {
            file.expire();
            return Ok(vec![file]);
        }
        let at = t.files.partition_point(|f| f.id < file.id);
        t.files.insert(at, file);
        Ok(self.expire_files(&mut tables))
    }

    /// Adds the history files found at start (their chunks are not in memory), numbers new
    /// chunks after them, and expires what is beyond the budget (it may have shrunk).
    pub fn load_files(&self, files: Vec<(String, DiskFile)>) -> Result<Vec<Arc<DiskFile>>> {
        let mut tables = self.lock();
        let next = files.iter().map(|(_, f)| f.id + 1).max().unwrap_or(1);
        self.ids.fetch_max(next, Ordering::Relaxed);
        for (table, file) in files {
            let t = tables
                .get_mut(&table)
                .ok_or_else(|| Error::UnknownTable(table.clone()))?;
            let at = t.files.partition_point(|f| f.id < file.id);
            t.files.insert(at, Arc::new(file));
        }
        // The open chunks were numbered before the files were known.
        for t in tables.values_mut() {
            t.open.id = self.ids.fetch_add(1, Ordering::Relaxed);
        }
        Ok(self.expire_files(&mut tables))
    }

    /// Expires the oldest files whose chunk has left memory while all files hold more than
    /// the history budget (a file whose chunk is still in memory goes after the chunk does).
    fn expire_files(&self, tables: &mut BTreeMap<String, Table>) -> Vec<Arc<DiskFile>> {
        let Some(budget) = self.config.history_budget else {
            return Vec::new();
        };
        let mut on_disk: u64 = tables
            .values()
            .flat_map(|t| t.files.iter().map(|f| f.bytes))
            .sum();
        let mut expired = Vec::new();
        while on_disk > budget {
            let oldest = tables
                .values_mut()
                .filter_map(|t| {
                    let i = t.files.iter().position(|f| !t.in_memory(f.id))?;
                    Some((t.files[i].id, i, t))
                })
                .min_by_key(|(id, _, _)| *id);
            let Some((_, i, t)) = oldest else { break };
            let file = t.files.remove(i).expect("found above");
            file.expire();
            t.history_rows_evicted += file.rows;
            t.history_bytes_evicted += file.bytes;
            on_disk -= file.bytes;
            expired.push(file);
        }
        expired
    }

    /// The largest `conn_id` in the history files of every table (0 without any): new
    /// connections are numbered after it.
    pub fn history_max_conn_id(&self) -> u64 {
        self.lock()
            .values()
            .flat_map(|t| t.files.iter().map(|f| f.max_conn_id))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
