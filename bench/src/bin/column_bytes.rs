//! Where a table's bytes per row go: reads `<table>.parquet` of a `kindling dump`, concatenates
//! its rows the way the agent's store compacts a sealed chunk (one batch, plain Arrow arrays of
//! the table's schema), and prints each column's Arrow memory (`get_array_memory_size`, the
//! store's own measure) per row, largest first.
//!
//!   column_bytes DUMP_DIR TABLE
use std::{fs::File, process::ExitCode};

use kindling_wire::schema;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn run(dir: &str, table: &str) -> Result<(), String> {
    let schema = schema::stored(table).ok_or_else(|| format!("no stored table {table}"))?;
    let path = format!("{dir}/{table}.parquet");
    let file = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(65_536).build())
        .map_err(|e| format!("{path}: {e}"))?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    let batch = datafusion::arrow::compute::concat_batches(
        &batches.first().map_or(schema, |b| b.schema()),
        &batches,
    )
    .map_err(|e| e.to_string())?;
    let rows = batch.num_rows();
    if rows == 0 {
        return Err(format!("{path} has no rows"));
    }
    let mut columns: Vec<(String, usize)> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| (f.name().clone(), c.get_array_memory_size()))
        .collect();
    columns.sort_by_key(|c| std::cmp::Reverse(c.1));
    let total: usize = columns.iter().map(|c| c.1).sum();
    println!(
        "{table}: {rows} rows, {:.1} bytes per row",
        total as f64 / rows as f64
    );
    for (name, bytes) in columns {
        println!(
            "  {name:<22} {:>7.1} bytes/row  {:>5.1}%",
            bytes as f64 / rows as f64,
            100.0 * bytes as f64 / total as f64
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, table] = args.as_slice() else {
        eprintln!("usage: column_bytes DUMP_DIR TABLE");
        return ExitCode::from(2);
    };
    match run(dir, table) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("column_bytes: {e}");
            ExitCode::FAILURE
        }
    }
}
