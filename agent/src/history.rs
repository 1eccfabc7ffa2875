//! `--history-dir DIR`: days of rows on the node's disk, under `--history-budget`, queried with
//! the same SQL as memory.
//!
//! Every sealed chunk of the [`Store`] is written to one Parquet file,
//! `DIR/<table>/<chunk id>.parquet`: rows sorted by the table's time column, zstd, row groups of
//! [`ROW_GROUP_ROWS`] rows with statistics, so that a time filter skips whole files (by the
//! store's index of each file's time range) and row groups (by the statistics, in DataFusion's
//! Parquet reader). The chunk's id, table, time range and largest `conn_id` are in the file's
//! key-value metadata: at start the index is rebuilt from the footers alone, and a file without
//! them (or with another schema) is skipped and counted, never loaded.
//!
//! Crash safety: open chunks are sealed at least every `--history-flush` (the store's chunk
//! duration), and the writer (the `store-compress` thread) writes sealed chunks a few times a
//! second, so a SIGKILL loses at most that much. A file is written to a hidden `.partial` name,
//! fsynced, renamed, and the directory fsynced; a start deletes leftover `.partial` files. A
//! clean stop seals and writes everything. Rows are never loaded back into memory: a start
//! only indexes the files, so nothing is ever counted twice.
//!
//! When a write fails (disk full, read-only, permissions) capture goes on in memory; the error
//! is counted and kept for `agent_stats.history_error`, logged at most once a minute, and the
//! writer tries again after [`RETRY_AFTER`]. Chunks evicted from memory meanwhile wait in the
//! store within a bound, then are counted lost.
//!
//! Directories are mode 0700 and files 0600: they hold what the agent captured.

use std::{
    collections::BTreeMap,
    fs::File,
    io::Write as _,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use datafusion::arrow::{
    array::AsArray,
    compute::{concat_batches, sort_to_indices, take_record_batch},
    datatypes::{SchemaRef, UInt64Type},
    record_batch::RecordBatch,
};
use kindling_wire::schema;
use parquet::{
    arrow::{ArrowWriter, parquet_to_arrow_schema},
    basic::{Compression, ZstdLevel},
    file::{
        metadata::{KeyValue, ParquetMetaDataReader},
        properties::WriterProperties,
    },
};

use crate::store::{Bounds, DiskFile, Pending, Store, TimeBounds};

/// Rows per Parquet row group: the unit a time filter skips inside a file.
pub const ROW_GROUP_ROWS: usize = 8192;

/// How long the writer waits after a failed write before it tries again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// How often at most a failing writer logs.
const LOG_EVERY: Duration = Duration::from_secs(60);

const KEY_TABLE: &str = "kindling.table";
const KEY_CHUNK: &str = "kindling.chunk";
const KEY_BOUNDS: &str = "kindling.bounds";
const KEY_MAX_CONN_ID: &str = "kindling.max_conn_id";

/// The history's health, for `agent_stats`.
#[derive(Debug, Default)]
pub struct HistoryHealth {
    /// `--history-budget`.
    pub budget_bytes: u64,
    /// Failed writes since start.
    pub write_errors: AtomicU64,
    /// Files found at start that were not usable (torn, foreign, another schema).
    pub files_skipped: AtomicU64,
    /// The last write error, empty once a write succeeds again.
    last_error: Mutex<String>,
}

impl HistoryHealth {
    /// Health of a history of `budget_bytes`.
    pub fn new(budget_bytes: u64) -> Self {
        Self {
            budget_bytes,
            ..Self::default()
        }
    }

    /// The last write error ("" when the last write succeeded).
    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_error(&self, error: &str) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error.to_owned();
    }
}

/// Whether `dir` is laid out as a history directory (a subdirectory per table) rather than a
/// `kindling dump` (a file per table).
pub fn is_history_dir(dir: &Path) -> bool {
    schema::STORED_TABLES.iter().any(|t| dir.join(t).is_dir())
}

fn create_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Indexes the history files of `dir` into `store` (creating the directories unless
/// `read_only`, and deleting leftover `.partial` files); files that are not usable are logged,
/// counted in `health` and left alone. Returns the files indexed.
pub fn open(
    store: &Store,
    dir: &Path,
    read_only: bool,
    health: &HistoryHealth,
) -> Result<usize, String> {
    if !read_only {
        create_dir(dir)?;
    }
    let mut found = Vec::new();
    for table in schema::STORED_TABLES {
        let table_dir = dir.join(table);
        if !read_only {
            create_dir(&table_dir)?;
        }
        let entries = match std::fs::read_dir(&table_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && read_only => continue,
            Err(e) => return Err(format!("cannot read {}: {e}", table_dir.display())),
        };
        let expected = schema::stored(table).expect("a stored table has a schema");
        for entry in entries {
            let path = entry
                .map_err(|e| format!("cannot read {}: {e}", table_dir.display()))?
                .path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".partial") {
                if !read_only {
                    // A write the last run did not finish: its chunk was never indexed.
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            if !name.ends_with(".parquet") {
                continue;
            }
            match read_index(&path, table, &expected) {
                Ok(file) => found.push((table.to_owned(), file)),
                Err(e) => {
                    health.files_skipped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(path = %path.display(), error = %e, "Skipping a history file");
                }
            }
        }
    }
    let n = found.len();
    // Files beyond a budget that shrank since the last run are deleted as they drop here (a
    // replay's store has no budget: it never deletes).
    drop(store.load_files(found).map_err(|e| e.to_string())?);
    Ok(n)
}

/// A file's index entry, from its footer alone.
fn read_index(path: &Path, table: &str, expected: &SchemaRef) -> Result<DiskFile, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let bytes = file.metadata().map_err(|e| e.to_string())?.len();
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| format!("not a whole Parquet file: {e}"))?;
    let kv = meta.file_metadata().key_value_metadata();
    let get = |key: &str| {
        kv.and_then(|kv| kv.iter().find(|e| e.key == key))
            .and_then(|e| e.value.clone())
            .ok_or_else(|| format!("no {key} in its metadata: not written by a Kindling agent"))
    };
    if get(KEY_TABLE)? != table {
        return Err(format!("holds table {}, not {table}", get(KEY_TABLE)?));
    }
    let id: u64 = get(KEY_CHUNK)?
        .parse()
        .map_err(|e| format!("{KEY_CHUNK}: {e}"))?;
    let max_conn_id: u64 = get(KEY_MAX_CONN_ID)?
        .parse()
        .map_err(|e| format!("{KEY_MAX_CONN_ID}: {e}"))?;
    let bounds = parse_bounds(&get(KEY_BOUNDS)?, expected)?;
    let found = parquet_to_arrow_schema(meta.file_metadata().schema_descr(), kv)
        .map_err(|e| e.to_string())?;
    let same = found.fields().len() == expected.fields().len()
        && found.fields().iter().zip(expected.fields()).all(|(a, b)| {
            a.name() == b.name()
                && a.data_type() == b.data_type()
                && a.is_nullable() == b.is_nullable()
        });
    if !same {
        return Err("its columns are not this agent's (another version?)".to_owned());
    }
    let rows = u64::try_from(meta.file_metadata().num_rows()).unwrap_or(0);
    Ok(DiskFile::new(
        id,
        path.to_owned(),
        rows,
        bytes,
        bounds,
        max_conn_id,
    ))
}

/// `ts=MIN..MAX;end_ts=` (no value: all null), by column name.
fn format_bounds(bounds: &Bounds, schema: &SchemaRef) -> String {
    bounds
        .iter()
        .map(|(&col, b)| {
            let name = schema.field(col).name();
            match b {
                Some(b) => format!("{name}={}..{}", b.min, b.max),
                None => format!("{name}="),
            }
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn parse_bounds(text: &str, schema: &SchemaRef) -> Result<Bounds, String> {
    let bad = || format!("{KEY_BOUNDS} is not column=min..max: {text:?}");
    let mut bounds = BTreeMap::new();
    for part in text.split(';').filter(|p| !p.is_empty()) {
        let (name, range) = part.split_once('=').ok_or_else(bad)?;
        let col = schema
            .index_of(name)
            .map_err(|_| format!("{KEY_BOUNDS} names no column {name}"))?;
        let b = if range.is_empty() {
            None
        } else {
            let (min, max) = range.split_once("..").ok_or_else(bad)?;
            Some(TimeBounds {
                min: min.parse().map_err(|_| bad())?,
                max: max.parse().map_err(|_| bad())?,
            })
        };
        bounds.insert(col, b);
    }
    Ok(bounds)
}

/// The rows of `chunk` as one batch sorted by the table's time column.
fn sorted_rows(
    table: &str,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<RecordBatch, String> {
    let one = concat_batches(schema, batches).map_err(|e| e.to_string())?;
    let Some(col) = schema::time_column(table).and_then(|c| schema.index_of(c).ok()) else {
        return Ok(one);
    };
    let order = sort_to_indices(one.column(col), None, None).map_err(|e| e.to_string())?;
    take_record_batch(&one, &order).map_err(|e| e.to_string())
}

fn max_conn_id(batch: &RecordBatch) -> u64 {
    batch
        .column_by_name("conn_id")
        .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        .and_then(datafusion::arrow::compute::max)
        .unwrap_or(0)
}

/// Writes `pending`'s chunk to its file under `dir` (hidden name, fsync, rename, fsync of the
/// directory) and returns its index entry.
pub fn write_chunk(dir: &Path, pending: &Pending) -> Result<DiskFile, String> {
    let Pending {
        table,
        schema,
        chunk,
    } = pending;
    let table_dir = dir.join(table);
    let path = table_dir.join(format!("{:020}.parquet", chunk.id));
    let partial = table_dir.join(format!(".{:020}.parquet.partial", chunk.id));
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", partial.display());
    let batches = chunk.batches(None).map_err(|e| at(&e))?;
    let rows = sorted_rows(table, schema, &batches).map_err(|e| at(&e))?;
    let metadata = [
        (KEY_TABLE, table.clone()),
        (KEY_CHUNK, chunk.id.to_string()),
        (KEY_BOUNDS, format_bounds(&chunk.bounds, schema)),
        (KEY_MAX_CONN_ID, max_conn_id(&rows).to_string()),
    ];
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(|e| at(&e))?,
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(
            metadata
                .iter()
                .map(|(k, v)| KeyValue::new((*k).to_owned(), v.clone()))
                .collect(),
        ))
        .build();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| at(&e))?;
    let written = (|| -> Result<File, String> {
        let mut writer =
            ArrowWriter::try_new(file, Arc::clone(schema), Some(properties)).map_err(|e| at(&e))?;
        writer.write(&rows).map_err(|e| at(&e))?;
        let mut file = writer.into_inner().map_err(|e| at(&e))?;
        file.flush().map_err(|e| at(&e))?;
        file.sync_all().map_err(|e| at(&e))?;
        Ok(file)
    })();
    let file = match written {
        Ok(file) => file,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let bytes = file.metadata().map_err(|e| at(&e))?.len();
    std::fs::rename(&partial, &path).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        format!(
            "cannot rename {} to {}: {e}",
            partial.display(),
            path.display()
        )
    })?;
    File::open(&table_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: {e}", table_dir.display()))?;
    Ok(DiskFile::new(
        chunk.id,
        path,
        rows.num_rows() as u64,
        bytes,
        chunk.bounds.clone(),
        max_conn_id(&rows),
    ))
}

/// Writes the store's sealed chunks to the history directory.
#[derive(Debug)]
pub struct Writer {
    store: Arc<Store>,
    dir: PathBuf,
    health: Arc<HistoryHealth>,
    /// After a failure: no write before this.
    retry_at: Option<Instant>,
    logged_at: Option<Instant>,
}

impl Writer {
    /// A writer of `store`'s chunks into `dir` (already [`open`]ed).
    pub fn new(store: Arc<Store>, dir: PathBuf, health: Arc<HistoryHealth>) -> Self {
        Self {
            store,
            dir,
            health,
            retry_at: None,
            logged_at: None,
        }
    }

    /// Writes every chunk waiting for its file, oldest first, and returns how many it wrote.
    /// After a failure it stops, and waits [`RETRY_AFTER`] before trying again unless `now_or_never`
    /// (the last pass of a clean stop).
    pub fn write_pending(&mut self, now_or_never: bool) -> usize {
        if !now_or_never && self.retry_at.is_some_and(|t| Instant::now() < t) {
            return 0;
        }
        let mut written = 0;
        for pending in self.store.unwritten() {
            let result = write_chunk(&self.dir, &pending).and_then(|file| {
                self.store
                    .add_file(&pending.table, file)
                    .map_err(|e| e.to_string())
            });
            match result {
                // Expired files are deleted as they drop here, outside the store's lock.
                Ok(_expired) => {
                    written += 1;
                    if self.retry_at.take().is_some() {
                        self.health.set_error("");
                        tracing::info!(dir = %self.dir.display(), "Writing history again");
                    }
                }
                Err(e) => {
                    self.health.write_errors.fetch_add(1, Ordering::Relaxed);
                    self.health.set_error(&e);
                    self.retry_at = Some(Instant::now() + RETRY_AFTER);
                    if self.logged_at.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                        self.logged_at = Some(Instant::now());
                        tracing::error!(error = %e, "Cannot write history; capture goes on in memory");
                    }
                    break;
                }
            }
        }
        written
    }
}
