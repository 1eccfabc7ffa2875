//! `kindling-agent --replay DIR`: serve the tables of a `kindling dump` directory (one Parquet
//! file per table) instead of capturing. No eBPF, so no root: dumps attached to bug reports can
//! be queried with the same CLI, plugin and dashboards, and tests and benchmarks get agents
//! that each own a known slice of rows.

use std::{collections::BTreeMap, fs::File, path::Path, sync::Arc};

use datafusion::arrow::{
    array::{ArrayRef, StringArray, new_null_array},
    compute::cast,
    datatypes::SchemaRef,
    record_batch::RecordBatch,
};
use kindling_wire::schema;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::store::Store;

/// Loads every `<table>.parquet` of `dir` into `store`; returns the rows read per table.
///
/// Columns are matched by name: a column the dump lacks is NULL if it may be (a dump from an
/// older agent), "" if it is one of the identity columns (`cgroup`, `src_pod`, ...: an older
/// agent named no end), an extra column is ignored (a newer agent), a column of another type is cast
/// when Arrow can. Anything else is an error that names the file and column.
pub fn load(store: &Store, dir: &Path) -> Result<BTreeMap<String, u64>, String> {
    let mut loaded = BTreeMap::new();
    for table in schema::STORED_TABLES {
        let path = dir.join(format!("{table}.parquet"));
        if !path.exists() {
            continue;
        }
        let expected = schema::stored(table).expect("a stored table has a schema");
        let file = File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(8192).build())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut rows = 0;
        for batch in reader {
            let batch = batch.map_err(|e| format!("{}: {e}", path.display()))?;
            let batch =
                conform(&batch, &expected).map_err(|e| format!("{}: {e}", path.display()))?;
            rows += batch.num_rows() as u64;
            store
                .append(table, batch)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            // Sealed chunks are compressed as they come, so that the budget holds as much of
            // the dump as it would hold of captured rows.
            store
                .compress_sealed()
                .map_err(|e| format!("{}: compressing: {e}", path.display()))?;
        }
        loaded.insert(table.to_owned(), rows);
    }
    if loaded.is_empty() {
        return Err(format!(
            "{} holds none of {} (write one with `kindling dump --out DIR`)",
            dir.display(),
            schema::STORED_TABLES
                .map(|t| format!("{t}.parquet"))
                .join(", ")
        ));
    }
    Ok(loaded)
}

/// `batch` with exactly the columns of `expected`, in its order.
fn conform(batch: &RecordBatch, expected: &SchemaRef) -> Result<RecordBatch, String> {
    let columns = expected
        .fields()
        .iter()
        .map(|field| -> Result<ArrayRef, String> {
            match batch.column_by_name(field.name()) {
                Some(column) if column.data_type() == field.data_type() => Ok(Arc::clone(column)),
                Some(column) => cast(column, field.data_type()).map_err(|e| {
                    format!(
                        "column {} is {}, not {}: {e}",
                        field.name(),
                        column.data_type(),
                        field.data_type()
                    )
                }),
                None if field.is_nullable() => {
                    Ok(new_null_array(field.data_type(), batch.num_rows()))
                }
                // Rows of an agent without these columns: nobody named their ends.
                None if schema::is_identity_column(field.name()) => {
                    Ok(Arc::new(StringArray::from(vec![""; batch.num_rows()])))
                }
                None => Err(format!("no column {}", field.name())),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(expected), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use datafusion::arrow::array::AsArray;
    use parquet::arrow::ArrowWriter;

    use super::*;
    use crate::{
        records::{Endpoints, FlowHealth, FlowRecord, Owner, Role, builders::FlowsBuilder},
        store::StoreConfig,
    };

    #[test]
    fn rows_of_an_agent_without_the_identity_columns_load_with_them_empty() {
        let mut flows = FlowsBuilder::new("old-node");
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for conn_id in 1..=3 {
            flows.append(&FlowRecord {
                start_ts_ns: 1_000,
                end_ts_ns: 2_000,
                conn_id,
                owner: Owner::default(),
                role: Role::Client,
                endpoints: Endpoints {
                    src_ip: ip,
                    src_port: 40_000,
                    dst_ip: ip,
                    dst_port: 80,
                },
                bytes_sent: 1,
                bytes_received: 2,
                open: false,
                health: FlowHealth::default(),
                tls: Default::default(),
            });
        }
        let batch = flows.finish().unwrap();
        // What an agent before the identity columns wrote.
        let old: Vec<usize> = (0..batch.num_columns())
            .filter(|&i| !schema::is_identity_column(batch.schema().field(i).name()))
            .collect();
        assert_eq!(old.len(), batch.num_columns() - 11);
        let old = batch.project(&old).unwrap();
        let dir = std::env::temp_dir().join(format!("kindling-replay-old-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = File::create(dir.join("flows.parquet")).unwrap();
        let mut writer = ArrowWriter::try_new(file, old.schema(), None).unwrap();
        writer.write(&old).unwrap();
        writer.close().unwrap();

        let store = Store::new(
            StoreConfig::default(),
            schema::STORED_TABLES.map(|t| (t.to_owned(), schema::stored(t).unwrap())),
        );
        let loaded = load(&store, &dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(loaded, BTreeMap::from([("flows".to_owned(), 3)]));
        let snapshot = store.snapshot("flows").unwrap();
        let cgroup = snapshot.schema.index_of("cgroup").unwrap();
        let dst_pod = snapshot.schema.index_of("dst_pod").unwrap();
        let mut values = Vec::new();
        for chunk in &snapshot.chunks {
            for b in chunk.batches(Some(&[cgroup, dst_pod])).unwrap() {
                for c in 0..2 {
                    values.extend(
                        b.column(c)
                            .as_string::<i32>()
                            .iter()
                            .map(|v| v.unwrap().to_owned()),
                    );
                }
            }
        }
        assert_eq!(values, vec![""; 6]);
    }
}
