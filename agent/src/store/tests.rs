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
            ..StoreConfig::default()
        },
        [("a".to_owned(), schema()), ("b".to_owned(), schema())],
    )
}

fn values(s: &Store, table: &str) -> Vec<i64> {
    s.snapshot(table)
        .unwrap()
        .chunks
        .iter()
        .flat_map(|c| c.batches(None).unwrap())
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
    // Sealing moves the open chunk's batches as they are (no work on the appending thread);
    // compress_sealed then compacts each sealed chunk into one batch. The open chunk stays.
    assert_eq!(snap.chunks[0].batches(None).unwrap().len(), 4);
    assert_eq!(s.compress_sealed().unwrap(), 2);
    let snap = s.snapshot("a").unwrap();
    assert_eq!(snap.chunks[0].batches(None).unwrap().len(), 1);
    assert_eq!(snap.chunks[1].batches(None).unwrap().len(), 1);
    assert_eq!(snap.chunks[2].batches(None).unwrap().len(), 2);
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
            ..StoreConfig::default()
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

fn compressing_store(compression: Compression, chunk_rows: usize) -> Store {
    Store::new(
        StoreConfig {
            budget_bytes: u64::MAX,
            chunk_rows,
            chunk_duration: Duration::from_secs(3600),
            compression,
            history_budget: None,
        },
        [("a".to_owned(), schema())],
    )
}

#[test]
fn sealed_chunks_compress_and_decode_to_the_same_rows() {
    for compression in [Compression::Lz4, Compression::Zstd] {
        let s = compressing_store(compression, 10_000);
        for i in 0..25 {
            s.append("a", batch(i * 1_000, 1_000)).unwrap();
        }
        let plain = s.stats()["a"].bytes_held;
        // Two sealed chunks; the open one (5,000 rows) stays plain.
        assert_eq!(s.compress_sealed().unwrap(), 2, "{compression:?}");
        assert_eq!(s.compress_sealed().unwrap(), 0, "nothing left to compress");
        let snap = s.snapshot("a").unwrap();
        let compressed: Vec<bool> = snap.chunks.iter().map(|c| c.is_compressed()).collect();
        assert_eq!(compressed, [true, true, false]);
        let stats = s.stats()["a"];
        assert_eq!(stats.rows_held, 25_000);
        assert_eq!(
            stats.bytes_held,
            snap.chunks.iter().map(|c| c.bytes()).sum::<u64>()
        );
        let sealed_plain = plain - snap.chunks[2].bytes();
        let sealed_now = snap.chunks[0].bytes() + snap.chunks[1].bytes();
        assert!(
            sealed_now < sealed_plain,
            "{compression:?}: {sealed_now} bytes compressed, {sealed_plain} plain"
        );
        assert_eq!(values(&s, "a"), (0..25_000).collect::<Vec<_>>());
        // Bounds survive, and a projection decodes only its column.
        assert_eq!(
            snap.chunks[1].bounds[&0],
            Some(TimeBounds {
                min: 10_000,
                max: 19_999
            })
        );
        let projected = snap.chunks[1].batches(Some(&[1])).unwrap();
        assert_eq!(projected[0].num_columns(), 1);
        assert_eq!(projected[0].schema().field(0).name(), "v");
        let v = projected[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(v.values().to_vec(), (10_000..20_000).collect::<Vec<_>>());
    }
}

#[test]
fn chunks_that_do_not_shrink_stay_plain_and_are_not_tried_again() {
    // Ten rows: the IPC stream's schema message alone is larger than the arrays.
    let s = compressing_store(Compression::Lz4, 10);
    s.append("a", batch(0, 10)).unwrap();
    let before = s.bytes_held();
    assert_eq!(s.compress_sealed().unwrap(), 1);
    assert_eq!(s.compress_sealed().unwrap(), 0);
    let snap = s.snapshot("a").unwrap();
    assert!(!snap.chunks[0].is_compressed());
    assert_eq!(s.bytes_held(), before);
    assert_eq!(values(&s, "a"), (0..10).collect::<Vec<_>>());
    // Compression off: sealed chunks are settled as they are.
    let s = compressing_store(Compression::None, 10_000);
    s.append("a", batch(0, 10_000)).unwrap();
    assert_eq!(s.compress_sealed().unwrap(), 1);
    assert!(!s.snapshot("a").unwrap().chunks[0].is_compressed());
}

#[test]
fn the_budget_counts_compressed_bytes_and_eviction_counts_their_rows() {
    // Measure a chunk plain and compressed. The budget holds ten compressed chunks plus the
    // newest one, which is plain until it is compressed.
    let probe = compressing_store(Compression::Zstd, 10_000);
    probe.append("a", batch(0, 10_000)).unwrap();
    let plain = probe.bytes_held();
    probe.compress_sealed().unwrap();
    let packed = probe.bytes_held();
    let budget = plain + packed * 10;
    let s = Store::new(
        StoreConfig {
            budget_bytes: budget,
            chunk_rows: 10_000,
            chunk_duration: Duration::from_secs(3600),
            compression: Compression::Zstd,
            history_budget: None,
        },
        [("a".to_owned(), schema())],
    );
    for i in 0..30 {
        s.append("a", batch(i * 10_000, 10_000)).unwrap();
        s.compress_sealed().unwrap();
    }
    let st = s.stats()["a"];
    assert_eq!(st.rows_held + st.rows_evicted, 300_000);
    assert!(st.bytes_held <= budget);
    let plain_chunks = budget / plain;
    assert!(
        st.rows_held >= 100_000 && st.rows_held > plain_chunks * 10_000,
        "{} rows held; plain, the budget holds {plain_chunks} chunks ({packed} bytes \
         compressed, {plain} plain)",
        st.rows_held
    );
    let v = values(&s, "a");
    assert_eq!(*v.last().unwrap(), 299_999);
    assert!(
        v.windows(2).all(|w| w[1] == w[0] + 1),
        "a contiguous suffix"
    );
}

fn history_store(budget: u64, history_budget: u64) -> Store {
    Store::new(
        StoreConfig {
            budget_bytes: budget,
            chunk_rows: 100,
            chunk_duration: Duration::from_secs(3600),
            compression: Compression::None,
            history_budget: Some(history_budget),
        },
        [("a".to_owned(), schema()), ("b".to_owned(), schema())],
    )
}

/// What the history writer would record for `p` (no file is written: the store only indexes).
fn file_of(p: &Pending, bytes: u64) -> DiskFile {
    let path = PathBuf::from(format!("/nonexistent/kindling-test/{}", p.chunk.id));
    DiskFile::new(
        p.chunk.id,
        path,
        p.chunk.rows() as u64,
        bytes,
        p.chunk.bounds.clone(),
        0,
    )
}

/// Chunk ids of the memory chunks, and of the files, of a snapshot of `table`.
fn parts(s: &Store, table: &str) -> (Vec<u64>, Vec<u64>) {
    let snap = s.snapshot(table).unwrap();
    (
        snap.chunks.iter().map(|c| c.id).collect(),
        snap.files.iter().map(|f| f.id).collect(),
    )
}

#[test]
fn evicted_chunks_wait_for_their_file_and_every_row_is_in_one_place() {
    // Room for one chunk of 100 rows in memory.
    let probe = store(u64::MAX, 100);
    probe.append("a", batch(0, 100)).unwrap();
    let s = history_store(probe.bytes_held(), u64::MAX);
    for i in 0..3 {
        s.append("a", batch(i * 100, 100)).unwrap();
    }
    // Chunks 1 and 2 (table a's first ids: a=1, b=2, then 3, 4, 5 as a's chunks seal) were
    // evicted before any file existed: they wait, unwritten, still scanned.
    let pending = s.unwritten();
    let ids: Vec<u64> = pending.iter().map(|p| p.chunk.id).collect();
    assert_eq!(ids, [1, 3, 4]);
    assert_eq!(parts(&s, "a"), (vec![1, 3, 4], vec![]));
    assert_eq!(values(&s, "a"), (0..300).collect::<Vec<_>>());
    // Written: the evicted ones are read from their files, the one in memory from memory.
    for p in &pending {
        assert!(s.add_file("a", file_of(p, 10)).unwrap().is_empty());
    }
    assert_eq!(parts(&s, "a"), (vec![4], vec![1, 3]));
    assert!(s.unwritten().is_empty());
    // When chunk 4 leaves memory, its file stands for it: nothing waits.
    s.append("a", batch(300, 100)).unwrap();
    assert_eq!(parts(&s, "a"), (vec![5], vec![1, 3, 4]));
    let st = s.stats()["a"];
    assert_eq!(
        (
            st.rows_held,
            st.rows_evicted,
            st.history_rows,
            st.history_files
        ),
        (100, 300, 300, 3)
    );
    assert_eq!((st.history_rows_lost, st.history_oldest), (0, Some(0)));
}

#[test]
fn unwritten_chunks_beyond_their_cap_are_lost_and_counted() {
    // A 1 MiB budget caps the unwritten chunks at 4 MiB (the least). 4,000 chunks of 100
    // rows of 2 x i64 (about 6.5 MiB) are evicted with no writer: the cap keeps the newest.
    let s = history_store(1 << 20, u64::MAX);
    for i in 0..4_000 {
        s.append("a", batch(i * 100, 100)).unwrap();
    }
    let st = s.stats()["a"];
    let waiting: u64 = s.unwritten().iter().map(|p| p.chunk.bytes()).sum();
    assert!(st.history_rows_lost > 0, "{st:?}");
    // Every row is held, waiting (the unwritten ones not evicted, and sealed ones held), or lost.
    let waiting_rows: u64 = s
        .snapshot("a")
        .unwrap()
        .chunks
        .iter()
        .map(|c| c.rows() as u64)
        .sum();
    assert_eq!(waiting_rows + st.history_rows_lost, 400_000);
    assert!(
        waiting - s.bytes_held() <= unwritten_cap(1 << 20),
        "{waiting}"
    );
}

#[test]
fn the_history_budget_expires_the_oldest_files_not_in_memory() {
    let s = history_store(u64::MAX, 25);
    for i in 0..5 {
        s.append("a", batch(i * 100, 100)).unwrap();
    }
    // Five sealed chunks in memory, each written as a file of 10 bytes: over the budget of
    // 25, but files whose chunk is in memory are not expired.
    for p in s.unwritten() {
        assert!(s.add_file("a", file_of(&p, 10)).unwrap().is_empty());
    }
    assert_eq!(s.stats()["a"].history_files, 5);
    // A file found at start for table b (older, not in memory) goes first.
    let old = DiskFile::new(
        0,
        PathBuf::from("/nonexistent/old"),
        7,
        10,
        Bounds::new(),
        0,
    );
    let expired = s.load_files(vec![("b".to_owned(), old)]).unwrap();
    assert_eq!(expired.iter().map(|f| f.id).collect::<Vec<_>>(), [0]);
    let b = s.stats()["b"];
    assert_eq!(
        (
            b.history_files,
            b.history_rows_evicted,
            b.history_bytes_evicted
        ),
        (0, 7, 10)
    );
}
