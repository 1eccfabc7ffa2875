use std::{sync::Arc, thread};

use datafusion::arrow::{
    array::{Int64Array, TimestampNanosecondArray},
    datatypes::{DataType, Field, Schema, TimeUnit},
};

use super::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("v", DataType::Int64, false),
    ]))
}

/// `n` rows with ts = v = start..start+n.
fn batch(start: i64, n: i64) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(
                TimestampNanosecondArray::from_iter_values(start..start + n).with_timezone("UTC"),
            ),
            Arc::new(Int64Array::from_iter_values(start..start + n)),
        ],
    )
    .unwrap()
}

fn store(budget: u64, chunk_rows: usize) -> Store {
    Store::new(
        StoreConfig {
            budget_bytes: budget,
            chunk_rows,
            chunk_duration: Duration::from_secs(3600),
        },
        [("a".to_owned(), schema()), ("b".to_owned(), schema())],
    )
}

fn values(s: &Store, table: &str) -> Vec<i64> {
    s.snapshot(table)
        .unwrap()
        .chunks
        .iter()
        .flat_map(|c| c.batches.iter())
        .flat_map(|b| {
            b.column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect()
}

#[test]
fn chunks_seal_at_row_limit_and_keep_time_bounds() {
    let s = store(u64::MAX, 100);
    for i in 0..10 {
        s.append("a", batch(i * 25, 25)).unwrap();
    }
    let snap = s.snapshot("a").unwrap();
    let rows: Vec<usize> = snap.chunks.iter().map(|c| c.rows()).collect();
    assert_eq!(rows, [100, 100, 50]);
    // Sealed chunks are compacted into one batch.
    assert_eq!(snap.chunks[0].batches.len(), 1);
    assert_eq!(snap.chunks[2].batches.len(), 2);
    assert_eq!(
        snap.chunks[1].bounds[&0],
        Some(TimeBounds { min: 100, max: 199 })
    );
    assert_eq!(values(&s, "a"), (0..250).collect::<Vec<_>>());
    let st = s.stats()["a"];
    assert_eq!((st.rows_held, st.chunks_held, st.rows_evicted), (250, 3, 0));
}

#[test]
fn chunks_seal_when_their_time_is_up() {
    let s = Store::new(
        StoreConfig {
            budget_bytes: u64::MAX,
            chunk_rows: 1_000_000,
            chunk_duration: Duration::from_secs(10),
        },
        [("a".to_owned(), schema())],
    );
    let t0 = Instant::now();
    s.append_at("a", batch(0, 5), t0).unwrap();
    s.append_at("a", batch(5, 5), t0 + Duration::from_secs(9))
        .unwrap();
    s.append_at("a", batch(10, 5), t0 + Duration::from_secs(11))
        .unwrap();
    let rows: Vec<usize> = s
        .snapshot("a")
        .unwrap()
        .chunks
        .iter()
        .map(|c| c.rows())
        .collect();
    assert_eq!(rows, [10, 5]);
}

#[test]
fn eviction_keeps_the_store_under_budget_and_counts_every_row() {
    // Measure one sealed chunk of 100 rows to size the budget at ~5 chunks.
    let probe = store(u64::MAX, 100);
    probe.append("a", batch(0, 100)).unwrap();
    let chunk_bytes = probe.bytes_held();
    let budget = chunk_bytes * 5;
    let s = store(budget, 100);
    let mut appended = 0u64;
    for i in 0..200 {
        // Interleave two tables so eviction must pick the oldest across both.
        let table = if i % 2 == 0 { "a" } else { "b" };
        s.append(table, batch(i * 50, 50)).unwrap();
        appended += 50;
        let held = s.bytes_held();
        assert!(
            held <= budget + chunk_bytes,
            "held {held} > budget {budget} + chunk {chunk_bytes}"
        );
    }
    let stats = s.stats();
    let held: u64 = stats.values().map(|t| t.rows_held).sum();
    let evicted: u64 = stats.values().map(|t| t.rows_evicted).sum();
    assert_eq!(
        held + evicted,
        appended,
        "every row is held or counted as evicted"
    );
    assert!(evicted > 0);
    // Oldest first: what is left of each table is a suffix of what was appended.
    for table in ["a", "b"] {
        let v = values(&s, table);
        let last = if table == "a" { 198 * 50 } else { 199 * 50 };
        assert_eq!(*v.last().unwrap(), last + 49);
        assert!(v.windows(2).all(|w| w[0] < w[1]));
    }
    let oldest_a = values(&s, "a")[0];
    let oldest_b = values(&s, "b")[0];
    assert!(
        oldest_a.abs_diff(oldest_b) <= 200,
        "tables evicted evenly: {oldest_a} vs {oldest_b}"
    );
}

#[test]
fn budget_smaller_than_one_chunk_evicts_open_chunks() {
    let s = store(1, 1_000_000);
    s.append("a", batch(0, 10)).unwrap();
    assert_eq!(s.bytes_held(), 0);
    assert_eq!(s.stats()["a"].rows_evicted, 10);
}

#[test]
fn bad_appends_are_errors() {
    let s = store(u64::MAX, 10);
    assert!(matches!(
        s.append("nope", batch(0, 1)),
        Err(Error::UnknownTable(_))
    ));
    let other = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![1]))],
    )
    .unwrap();
    assert!(matches!(
        s.append("a", other),
        Err(Error::SchemaMismatch { .. })
    ));
    assert!(matches!(s.snapshot("nope"), Err(Error::UnknownTable(_))));
}

#[test]
fn concurrent_append_and_scan_see_consistent_prefixes() {
    let s = Arc::new(store(u64::MAX, 1000));
    let writer = {
        let s = Arc::clone(&s);
        thread::spawn(move || {
            for i in 0..2000 {
                s.append("a", batch(i * 10, 10)).unwrap();
            }
        })
    };
    let mut last = 0;
    while !writer.is_finished() {
        let v = values(&s, "a");
        // Every snapshot is a prefix 0..n of what the writer appends, n a multiple of 10.
        assert_eq!(v.len() % 10, 0);
        assert!(v.len() >= last, "rows never disappear without eviction");
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as i64));
        last = v.len();
    }
    writer.join().unwrap();
    assert_eq!(values(&s, "a").len(), 20_000);
}
