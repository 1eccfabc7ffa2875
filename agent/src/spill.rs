//! `--spill-dir DIR`: history that survives a restart. On shutdown (SIGTERM, SIGINT) the agent
//! writes every table it holds to `DIR/<table>.parquet`, the layout of a `kindling dump`; on
//! start it loads them back ([`crate::replay::load`]) and goes on capturing, so a rolling
//! upgrade keeps what the agent saw before it.
//!
//! The directory is created mode 0700 and the files 0600: they hold what the agent captured.
//! Files are written next to their final name and renamed over it, so a crash while writing
//! leaves the previous spill whole. A crash (SIGKILL, a panic) writes nothing: the next start
//! loads the spill of the last clean shutdown, which holds no row twice because every start
//! begins from an empty store.

use std::{
    collections::BTreeMap,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::Path,
};

use datafusion::arrow::{array::AsArray, datatypes::UInt64Type, record_batch::RecordBatch};
use kindling_wire::schema;
use parquet::arrow::ArrowWriter;

use crate::store::Store;

/// Writes every stored table of `store` to `dir/<table>.parquet` (an empty table too, so that
/// rows evicted since the last load do not come back); returns the rows written per table.
pub fn write(store: &Store, dir: &Path) -> Result<BTreeMap<String, u64>, String> {
    // What the agent captured is readable by root only.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut written = BTreeMap::new();
    for table in schema::STORED_TABLES {
        let path = dir.join(format!("{table}.parquet"));
        let partial = dir.join(format!(".{table}.parquet.partial"));
        let err = |e: &dyn std::fmt::Display| format!("{}: {e}", partial.display());
        let snapshot = store.snapshot(table).map_err(|e| err(&e))?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| err(&e))?;
        let mut writer = ArrowWriter::try_new(file, snapshot.schema, None).map_err(|e| err(&e))?;
        let mut rows = 0;
        for chunk in &snapshot.chunks {
            for batch in chunk.batches(None).map_err(|e| err(&e))? {
                rows += batch.num_rows() as u64;
                writer.write(&batch).map_err(|e| err(&e))?;
            }
        }
        writer
            .into_inner()
            .and_then(|f| f.sync_all().map_err(Into::into))
            .map_err(|e| err(&e))?;
        std::fs::rename(&partial, &path).map_err(|e| {
            format!(
                "cannot rename {} to {}: {e}",
                partial.display(),
                path.display()
            )
        })?;
        written.insert(table.to_owned(), rows);
    }
    Ok(written)
}

/// Loads the spill in `dir`, if there is one; returns the rows read per table (none for a
/// directory without a spill: the first start).
pub fn load(store: &Store, dir: &Path) -> Result<BTreeMap<String, u64>, String> {
    let any = schema::STORED_TABLES
        .iter()
        .any(|t| dir.join(format!("{t}.parquet")).exists());
    if !any {
        return Ok(BTreeMap::new());
    }
    crate::replay::load(store, dir)
}

/// The largest `conn_id` in any table of `store` (0 when it holds none).
pub fn max_conn_id(store: &Store) -> Result<u64, String> {
    let mut max = 0;
    for table in schema::STORED_TABLES {
        let snapshot = store.snapshot(table).map_err(|e| e.to_string())?;
        let Ok(column) = snapshot.schema.index_of("conn_id") else {
            continue;
        };
        for chunk in &snapshot.chunks {
            for batch in chunk.batches(Some(&[column])).map_err(|e| e.to_string())? {
                max = max.max(column_max(&batch));
            }
        }
    }
    Ok(max)
}

fn column_max(batch: &RecordBatch) -> u64 {
    batch
        .column(0)
        .as_primitive_opt::<UInt64Type>()
        .and_then(datafusion::arrow::compute::max)
        .unwrap_or(0)
}
