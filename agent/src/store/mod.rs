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
//! This module knows Arrow, not DataFusion: the query layer reads [`Snapshot`]s.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
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
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            budget_bytes: 256 << 20,
            chunk_rows: 65_536,
            chunk_duration: Duration::from_secs(60),
            compression: Compression::default(),
        }
    }
}

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
    data: Rows,
    /// Bounds per column index, for the table's timestamp columns (None if all null/empty).
    pub bounds: BTreeMap<usize, Option<TimeBounds>>,
    rows: usize,
    bytes: u64,
}

impl Chunk {
    fn new(timestamp_columns: &[usize]) -> Self {
        Self {
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

/// Counters of one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Rows currently held.
    pub rows_held: u64,
    /// Bytes currently held.
    pub bytes_held: u64,
    /// Chunks currently held, the open one included.
    pub chunks_held: u64,
    /// Rows evicted since start.
    pub rows_evicted: u64,
    /// Bytes evicted since start.
    pub bytes_evicted: u64,
    /// Sealed chunks currently held compressed.
    pub chunks_compressed: u64,
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
}

impl Table {
    fn bytes(&self) -> u64 {
        self.sealed.iter().map(|c| c.bytes).sum::<u64>() + self.open.bytes
    }

    fn seal(&mut self, now: Instant) -> Result<()> {
        if self.open.rows == 0 {
            self.opened_at = now;
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.open, Chunk::new(&self.timestamp_columns));
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
}

/// A consistent view of one table's chunks at one moment, for a scan.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The table's schema.
    pub schema: SchemaRef,
    /// Sealed chunks, oldest first, then the open chunk.
    pub chunks: Vec<Arc<Chunk>>,
}

/// The store: named tables sharing one memory budget. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    tables: Mutex<BTreeMap<String, Table>>,
}

impl Store {
    /// An empty store with `tables` (name and schema).
    pub fn new(config: StoreConfig, tables: impl IntoIterator<Item = (String, SchemaRef)>) -> Self {
        let now = Instant::now();
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
                    open: Chunk::new(&timestamp_columns),
                    schema,
                    timestamp_columns,
                    sealed: VecDeque::new(),
                    opened_at: now,
                    rows_evicted: 0,
                    bytes_evicted: 0,
                };
                (name, table)
            })
            .collect();
        Self {
            config,
            tables: Mutex::new(tables),
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
            t.seal(now)?;
        }
        t.open.push(batch);
        if t.open.rows >= self.config.chunk_rows {
            t.seal(now)?;
        }
        Self::evict(&mut tables, self.config.budget_bytes, now)
    }

    /// Seals open chunks that have been open longer than `chunk_duration`; call periodically so
    /// quiet tables still roll over.
    pub fn roll(&self) -> Result<()> {
        let now = Instant::now();
        let mut tables = self.lock();
        for t in tables.values_mut() {
            if now.duration_since(t.opened_at) >= self.config.chunk_duration {
                t.seal(now)?;
            }
        }
        Ok(())
    }

    fn evict(tables: &mut BTreeMap<String, Table>, budget: u64, now: Instant) -> Result<()> {
        let mut held: u64 = tables.values().map(Table::bytes).sum();
        while held > budget {
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
                    t.seal(now)?;
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
        }
        Ok(())
    }

    /// The chunks of `table` as they are now.
    pub fn snapshot(&self, table: &str) -> Result<Snapshot> {
        let tables = self.lock();
        let t = tables
            .get(table)
            .ok_or_else(|| Error::UnknownTable(table.to_owned()))?;
        let mut chunks: Vec<Arc<Chunk>> = t.sealed.iter().cloned().collect();
        if t.open.rows > 0 {
            chunks.push(Arc::new(t.open.clone()));
        }
        Ok(Snapshot {
            schema: Arc::clone(&t.schema),
            chunks,
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
                };
                (name.clone(), stats)
            })
            .collect()
    }

    /// Bytes held by all tables.
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
}

#[cfg(test)]
mod tests;
