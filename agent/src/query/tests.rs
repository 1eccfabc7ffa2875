use std::{
    net::Ipv4Addr,
    sync::{Arc, atomic::Ordering},
};

use datafusion::arrow::{
    array::AsArray, record_batch::RecordBatch, util::pretty::pretty_format_batches,
};
use futures::TryStreamExt;

use super::*;
use crate::{
    counters::PipelineCounters,
    history::{self, HistoryHealth},
    records::{Endpoints, FlowRecord, Owner, Role, builders::FlowsBuilder},
    store::{Compression, StoreConfig},
};

/// Three sealed chunks of flows, ending at seconds 10..20, 20..30 and 30..40 after the epoch.
fn queries() -> LocalQueries {
    local(flows_store(30, 10, Compression::None))
}

/// A store of `n` flows, the i-th ending at second 10 + i after the epoch, in chunks of
/// `chunk_rows`, sealed chunks compressed with `compression` when compressed.
fn flows_store(n: u16, chunk_rows: usize, compression: Compression) -> Arc<Store> {
    let store = empty_store(StoreConfig {
        budget_bytes: u64::MAX,
        chunk_rows,
        chunk_duration: Duration::from_secs(3600),
        compression,
        history_budget: None,
    });
    append_flows(&store, n);
    store
}

fn empty_store(config: StoreConfig) -> Arc<Store> {
    Arc::new(Store::new(
        config,
        schema::STORED_TABLES.map(|t| (t.to_owned(), schema::stored(t).unwrap())),
    ))
}

/// Appends `n` flows, the i-th ending at second 10 + i after the epoch, 10 per batch.
fn append_flows(store: &Store, n: u16) {
    append_flows_from(store, 0, n);
}

/// Appends flows `start..start + n` of [`append_flows`].
fn append_flows_from(store: &Store, start: u16, n: u16) {
    let mut b = FlowsBuilder::new("n1");
    for i in start..start + n {
        let end = 10_000_000_000 + i64::from(i) * 1_000_000_000;
        b.append(&FlowRecord {
            start_ts_ns: end - 500,
            end_ts_ns: end,
            conn_id: u64::from(i),
            owner: Owner {
                pid: 100 + u32::from(i % 3),
                tid: 1,
                comm: format!("p{}", i % 3).into(),
                cgroup_id: 0,
            },
            role: if i % 2 == 0 {
                Role::Client
            } else {
                Role::Server
            },
            endpoints: Endpoints {
                src_ip: Ipv4Addr::LOCALHOST.into(),
                src_port: 30_000 + i,
                dst_ip: Ipv4Addr::LOCALHOST.into(),
                dst_port: 8080,
            },
            bytes_sent: u64::from(i),
            bytes_received: 2 * u64::from(i),
            open: false,
            health: Default::default(),
            tls: Default::default(),
        });
        if b.len() == 10 {
            store.append(schema::FLOWS, b.finish().unwrap()).unwrap();
        }
    }
}

fn local(store: Arc<Store>) -> LocalQueries {
    let info = Arc::new(AgentInfo::new("n1", Arc::new(PipelineCounters::default())));
    LocalQueries::new(store, info, QueryLimits::default())
}

async fn run(q: &LocalQueries, sql: &str) -> String {
    let batches: Vec<_> = q.execute(sql).await.unwrap().try_collect().await.unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

#[tokio::test]
async fn time_filter_prunes_chunks() {
    let q = queries();
    let sql = "SELECT count(*) AS n, sum(bytes_sent) AS s FROM flows \
               WHERE end_ts >= to_timestamp_seconds(25) AND end_ts < to_timestamp_seconds(32)";
    assert_eq!(
        run(&q, sql).await,
        "+---+-----+\n| n | s   |\n+---+-----+\n| 7 | 126 |\n+---+-----+"
    );
    let plan = run(&q, &format!("EXPLAIN {sql}")).await;
    assert!(
        plan.contains("ChunkScanExec: table=flows, chunks_scanned=2, chunks_pruned=1"),
        "{plan}"
    );
}

#[tokio::test]
async fn compressed_chunks_answer_like_plain_ones() {
    // 18,000 flows in chunks of 4,000: four sealed and the open one, plain or compressed.
    let plain = local(flows_store(18_000, 4_000, Compression::None));
    let queries = [
        "SELECT count(*), sum(bytes_sent), sum(bytes_received), min(end_ts), max(end_ts) FROM flows",
        // Pruned by time: two chunks scanned, three pruned.
        "SELECT count(*), sum(bytes_sent) FROM flows \
         WHERE end_ts >= to_timestamp_seconds(5000) AND end_ts < to_timestamp_seconds(9000)",
        "EXPLAIN SELECT count(*) FROM flows \
         WHERE end_ts >= to_timestamp_seconds(5000) AND end_ts < to_timestamp_seconds(9000)",
        "SELECT comm, role, count(*), max(src_port) FROM flows GROUP BY comm, role ORDER BY comm, role",
        // A projection, and a LIMIT that the newest chunks satisfy.
        "SELECT conn_id, comm FROM flows LIMIT 7",
        "SELECT * FROM flows ORDER BY conn_id DESC LIMIT 3",
        "SELECT * FROM flows WHERE conn_id IN (0, 3999, 4000, 12345, 17999) ORDER BY conn_id",
    ];
    for compression in [Compression::Lz4, Compression::Zstd] {
        let store = flows_store(18_000, 4_000, compression);
        assert_eq!(store.compress_sealed().unwrap(), 4);
        let compressed: Vec<bool> = store
            .snapshot(schema::FLOWS)
            .unwrap()
            .chunks
            .iter()
            .map(|c| c.is_compressed())
            .collect();
        assert_eq!(compressed, [true, true, true, true, false]);
        let q = local(store);
        for sql in queries {
            assert_eq!(
                run(&q, sql).await,
                run(&plain, sql).await,
                "{compression:?}: {sql}"
            );
        }
    }
    let plan = run(&plain, queries[2]).await;
    assert!(plan.contains("chunks_scanned=2, chunks_pruned=3"), "{plan}");
}

#[tokio::test]
async fn agent_stats_reports_store_and_counters() {
    let q = queries();
    q.info()
        .counters
        .events_received
        .store(77, std::sync::atomic::Ordering::Relaxed);
    let out = run(
        &q,
        "SELECT node, table_name, rows_held, chunks_held, events_received, events_dropped \
         FROM agent_stats ORDER BY table_name",
    )
    .await;
    assert_eq!(
        out,
        "+------+------------+-----------+-------------+-----------------+----------------+\n\
         | node | table_name | rows_held | chunks_held | events_received | events_dropped |\n\
         +------+------------+-----------+-------------+-----------------+----------------+\n\
         | n1   | calls      | 0         | 0           | 77              | 0              |\n\
         | n1   | dns        | 0         | 0           | 77              | 0              |\n\
         | n1   | flows      | 30        | 3           | 77              | 0              |\n\
         | n1   | tcp_events | 0         | 0           | 77              | 0              |\n\
         +------+------------+-----------+-------------+-----------------+----------------+"
    );
}

#[tokio::test]
async fn agent_stats_splits_kernel_drops_by_cause() {
    use std::sync::atomic::Ordering::Relaxed;
    let q = queries();
    let c = &q.info().counters;
    c.kernel_ringbuf_full.store(1, Relaxed);
    c.kernel_data_ringbuf_full.store(20, Relaxed);
    c.kernel_read_failed.store(300, Relaxed);
    c.kernel_program_misses.store(4000, Relaxed);
    c.kernel_tls_untracked.store(50000, Relaxed);
    let out = run(
        &q,
        "SELECT events_dropped_kernel, kernel_events_ring_full, kernel_data_ring_full, \
                kernel_read_failed, kernel_program_misses, kernel_tls_untracked \
         FROM agent_stats WHERE table_name = 'calls'",
    )
    .await;
    assert_eq!(
        out,
        "+-----------------------+-------------------------+-----------------------+--------------------+-----------------------+----------------------+\n\
         | events_dropped_kernel | kernel_events_ring_full | kernel_data_ring_full | kernel_read_failed | kernel_program_misses | kernel_tls_untracked |\n\
         +-----------------------+-------------------------+-----------------------+--------------------+-----------------------+----------------------+\n\
         | 54321                 | 1                       | 20                    | 300                | 4000                  | 50000                |\n\
         +-----------------------+-------------------------+-----------------------+--------------------+-----------------------+----------------------+"
    );
}

#[tokio::test]
async fn protocol_stats_lists_every_protocol() {
    let q = queries();
    let c = &q.info().counters;
    *c.protocols
        .lock()
        .unwrap()
        .of(kindling_protocols::Protocol::Redis) = crate::sessions::ProtocolCounters {
        calls: 5,
        unparsed: 1,
        truncated: 2,
        unknown_headers: 0,
        unmatched: 3,
        resynced: 6,
    };
    c.protocols
        .lock()
        .unwrap()
        .of(kindling_protocols::Protocol::Http2)
        .unknown_headers = 7;
    c.sessions_undetected
        .store(4, std::sync::atomic::Ordering::Relaxed);
    let out = run(
        &q,
        "SELECT node, protocol, calls, unparsed, truncated, unknown_headers, unmatched, resynced, \
         sessions_undetected FROM protocol_stats ORDER BY protocol",
    )
    .await;
    assert_eq!(
        out,
        "+------+------------+-------+----------+-----------+-----------------+-----------+----------+---------------------+\n\
         | node | protocol   | calls | unparsed | truncated | unknown_headers | unmatched | resynced | sessions_undetected |\n\
         +------+------------+-------+----------+-----------+-----------------+-----------+----------+---------------------+\n\
         | n1   | dns        | 0     | 0        | 0         | 0               | 0         | 0        | 4                   |\n\
         | n1   | http       | 0     | 0        | 0         | 0               | 0         | 0        | 4                   |\n\
         | n1   | http2      | 0     | 0        | 0         | 7               | 0         | 0        | 4                   |\n\
         | n1   | mysql      | 0     | 0        | 0         | 0               | 0         | 0        | 4                   |\n\
         | n1   | postgresql | 0     | 0        | 0         | 0               | 0         | 0        | 4                   |\n\
         | n1   | redis      | 5     | 1        | 2         | 0               | 3         | 6        | 4                   |\n\
         +------+------------+-------+----------+-----------+-----------------+-----------+----------+---------------------+"
    );
}

#[tokio::test]
async fn fragments_are_read_only() {
    let q = queries();
    for sql in [
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO flows SELECT * FROM flows",
        "DROP TABLE flows",
        "SET datafusion.execution.batch_size = 1",
        "COPY flows TO '/tmp/x.csv'",
    ] {
        let err = q
            .execute(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} was allowed"));
        assert!(
            err.to_string().contains("not supported") || err.to_string().contains("Unsupported"),
            "{sql}: {err}"
        );
    }
}

#[tokio::test]
async fn memory_limit_stops_a_query() {
    let mut q = queries();
    q.limits.memory_bytes = 1024;
    let result = q
        .execute("SELECT a.conn_id FROM flows a, flows b, flows c ORDER BY 1")
        .await;
    let err = match result {
        Err(e) => e,
        Ok(stream) => stream.try_collect::<Vec<_>>().await.unwrap_err(),
    };
    assert!(err.to_string().contains("Resources exhausted"), "{err}");
}

#[tokio::test]
async fn decoded_chunks_are_charged_to_the_query_memory_limit() {
    // Chunks of 4,000 flows; a query may hold 64 KiB.
    let limited = |compression| {
        let store = flows_store(18_000, 4_000, compression);
        store.compress_sealed().unwrap();
        let info = Arc::new(AgentInfo::new("n1", Arc::new(PipelineCounters::default())));
        let limits = QueryLimits {
            memory_bytes: 64 << 10,
            ..QueryLimits::default()
        };
        LocalQueries::new(store, info, limits)
    };
    let count = |q: LocalQueries, sql: &'static str| async move {
        let batches: Vec<RecordBatch> = q.execute(sql).await?.try_collect().await?;
        Ok::<_, DataFusionError>(batches.iter().map(RecordBatch::num_rows).sum::<usize>())
    };
    // Every column of a decoded chunk (several hundred KiB) does not fit.
    let err = count(limited(Compression::Lz4), "SELECT * FROM flows")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("Resources exhausted: Failed to allocate additional")
            && err.contains("for ChunkScanExec[flows]"),
        "{err}"
    );
    // One u64 column of a chunk (32,000 bytes) does: only projected columns are decoded.
    let rows = count(limited(Compression::Lz4), "SELECT conn_id FROM flows").await;
    assert_eq!(rows.unwrap(), 18_000);
    // Plain chunks are the store's own memory, already in its budget: not charged again.
    let rows = count(limited(Compression::None), "SELECT * FROM flows").await;
    assert_eq!(rows.unwrap(), 18_000);
}

/// A fresh directory for one test's history files.
fn test_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kl-history-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A history directory holding the `n` flows of [`append_flows`], in chunks of `chunk_rows`,
/// every chunk written (the open one sealed first).
fn flows_history(name: &str, n: u16, chunk_rows: usize) -> std::path::PathBuf {
    let dir = test_dir(name);
    let store = empty_store(StoreConfig {
        budget_bytes: u64::MAX,
        chunk_rows,
        chunk_duration: Duration::from_secs(3600),
        compression: Compression::None,
        history_budget: Some(u64::MAX),
    });
    let health = Arc::new(HistoryHealth::default());
    assert_eq!(history::open(&store, &dir, false, &health).unwrap(), 0);
    append_flows(&store, n);
    store.seal_all().unwrap();
    let chunks = usize::from(n).div_ceil(chunk_rows);
    let mut writer = history::Writer::new(Arc::clone(&store), dir.clone(), health);
    assert_eq!(writer.write_pending(true), chunks);
    dir
}

/// Queries over the history files of `dir` alone (nothing in memory), as `--replay` serves them.
fn history_only(dir: &std::path::Path) -> LocalQueries {
    let store = empty_store(StoreConfig::default());
    let health = HistoryHealth::default();
    history::open(&store, dir, true, &health).unwrap();
    assert_eq!(health.files_skipped.load(Ordering::Relaxed), 0);
    local(store)
}

#[tokio::test]
async fn history_files_answer_like_memory() {
    // 18,000 flows in five files of up to 4,000 rows, against the same rows in memory.
    let dir = flows_history("answers", 18_000, 4_000);
    let disk = history_only(&dir);
    let memory = local(flows_store(18_000, 4_000, Compression::None));
    for sql in [
        "SELECT count(*), sum(bytes_sent), sum(bytes_received), min(end_ts), max(end_ts) FROM flows",
        "SELECT count(*), sum(bytes_sent) FROM flows \
         WHERE end_ts >= to_timestamp_seconds(5000) AND end_ts < to_timestamp_seconds(9000)",
        "SELECT comm, role, count(*), max(src_port) FROM flows GROUP BY comm, role ORDER BY comm, role",
        "SELECT * FROM flows ORDER BY conn_id DESC LIMIT 3",
        "SELECT * FROM flows WHERE conn_id IN (0, 3999, 4000, 12345, 17999) ORDER BY conn_id",
        "SELECT count(*) FROM (SELECT conn_id FROM flows LIMIT 7)",
    ] {
        assert_eq!(run(&disk, sql).await, run(&memory, sql).await, "{sql}");
    }
    // Files are pruned by their time range: seconds 5000..9000 are in the second and third.
    let plan = run(
        &disk,
        "EXPLAIN SELECT count(*) FROM flows \
         WHERE end_ts >= to_timestamp_seconds(5000) AND end_ts < to_timestamp_seconds(9000)",
    )
    .await;
    assert!(
        plan.contains("HistoryScanExec: table=flows, files_scanned=2, files_pruned=3"),
        "{plan}"
    );
    // A query of the last seconds opens no file at all.
    let plan = run(
        &disk,
        "EXPLAIN SELECT count(*) FROM flows WHERE end_ts >= to_timestamp_seconds(20000)",
    )
    .await;
    assert!(
        plan.contains("HistoryScanExec: table=flows, files_scanned=0, files_pruned=5"),
        "{plan}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn row_groups_of_a_history_file_are_pruned_by_statistics() {
    // One file of 18,000 rows: row groups of 8,192, 8,192 and 1,616 rows, sorted by end_ts.
    let dir = flows_history("row-groups", 18_000, 20_000);
    let disk = history_only(&dir);
    let sql = "SELECT count(*) AS n FROM flows WHERE end_ts >= to_timestamp_seconds(16500)";
    assert_eq!(
        run(&disk, sql).await,
        "+------+\n| n    |\n+------+\n| 1510 |\n+------+"
    );
    let plan = run(&disk, &format!("EXPLAIN ANALYZE {sql}")).await;
    assert!(plan.contains("files_scanned=1, files_pruned=0"), "{plan}");
    assert!(
        plan.contains("row_groups_pruned_statistics=3 total \u{2192} 1 matched"),
        "{plan}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn memory_and_history_hold_each_row_once() {
    // A memory budget of some 700 flows: the rest goes to the history files as the writer
    // reaches it; before and after, every row is counted once.
    let dir = test_dir("once");
    let store = empty_store(StoreConfig {
        budget_bytes: 600 << 10,
        chunk_rows: 2_000,
        chunk_duration: Duration::from_secs(3600),
        compression: Compression::None,
        history_budget: Some(u64::MAX),
    });
    let health = Arc::new(HistoryHealth::default());
    history::open(&store, &dir, false, &health).unwrap();
    let mut writer = history::Writer::new(Arc::clone(&store), dir.clone(), Arc::clone(&health));
    let q = local(Arc::clone(&store));
    let sql = "SELECT count(*) AS n, count(DISTINCT conn_id) AS d, sum(bytes_sent) AS s FROM flows";
    let want = "+------+------+----------+\n\
                | n    | d    | s        |\n\
                +------+------+----------+\n\
                | 6000 | 6000 | 17997000 |\n\
                +------+------+----------+";
    append_flows(&store, 3_000);
    let first = writer.write_pending(false);
    assert!(first > 0);
    // 3,000 more flows (about 2.5 MiB, within what may wait for the writer: 4 MiB).
    append_flows_from(&store, 3_000, 3_000);
    // Chunks evicted before the writer reached them wait in memory, still counted.
    let stats = &store.stats()[schema::FLOWS];
    assert!(
        stats.rows_evicted > 0 && stats.history_rows_lost == 0,
        "{stats:?}"
    );
    assert_eq!(run(&q, sql).await, want);
    // Everything written (the open chunk sealed first, as a clean stop does).
    store.seal_all().unwrap();
    let second = writer.write_pending(false);
    assert_eq!(run(&q, sql).await, want);
    let stats = &store.stats()[schema::FLOWS];
    assert_eq!(stats.history_files, (first + second) as u64, "{stats:?}");
    assert_eq!((stats.history_rows, stats.history_rows_lost), (6_000, 0));
    assert_eq!(store.history_max_conn_id(), 5_999);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn torn_and_foreign_history_files_are_skipped_and_counted() {
    // 100 flows in files of 40, 40 and 20 rows.
    let dir = flows_history("skipped", 100, 40);
    let flows = dir.join(schema::FLOWS);
    let mut files: Vec<_> = std::fs::read_dir(&flows)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3);
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(
        (mode(&dir), mode(&flows), mode(&files[0])),
        (0o700, 0o700, 0o600)
    );
    // The last file torn (its footer cut off), a file that is not Parquet, a Parquet file of
    // another program, and a write the last run did not finish.
    let len = std::fs::metadata(&files[2]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&files[2])
        .unwrap()
        .set_len(len - 20)
        .unwrap();
    std::fs::write(flows.join("junk.parquet"), b"PAR1 not really").unwrap();
    let foreign = std::fs::File::create(flows.join("foreign.parquet")).unwrap();
    let batch = run_batches(&history_only_unchecked(&dir), "SELECT * FROM flows LIMIT 5").await;
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(foreign, batch[0].schema(), None).unwrap();
    for b in &batch {
        writer.write(b).unwrap();
    }
    writer.close().unwrap();
    let partial = flows.join(".00000000000000000099.parquet.partial");
    std::fs::write(&partial, b"half").unwrap();

    let store = empty_store(StoreConfig {
        history_budget: Some(u64::MAX),
        ..StoreConfig::default()
    });
    let health = HistoryHealth::default();
    assert_eq!(history::open(&store, &dir, false, &health).unwrap(), 2);
    assert_eq!(health.files_skipped.load(Ordering::Relaxed), 3);
    assert!(!partial.exists());
    assert_eq!(store.history_max_conn_id(), 79);
    let q = local(store);
    assert_eq!(
        run(&q, "SELECT count(*) AS n, max(conn_id) AS m FROM flows").await,
        "+----+----+\n| n  | m  |\n+----+----+\n| 80 | 79 |\n+----+----+"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Queries over the history files of `dir`, whatever `open` skipped.
fn history_only_unchecked(dir: &std::path::Path) -> LocalQueries {
    let store = empty_store(StoreConfig::default());
    history::open(&store, dir, true, &HistoryHealth::default()).unwrap();
    local(store)
}

async fn run_batches(q: &LocalQueries, sql: &str) -> Vec<RecordBatch> {
    q.execute(sql).await.unwrap().try_collect().await.unwrap()
}

/// Queries of an agent started with `--cluster-name east` over `store`.
fn in_cluster(store: Arc<Store>) -> LocalQueries {
    let info = AgentInfo::new("n1", Arc::new(PipelineCounters::default())).with_cluster("east");
    LocalQueries::new(store, Arc::new(info), QueryLimits::default())
}

#[tokio::test]
async fn every_row_is_served_with_the_agents_cluster() {
    // 30 flows in memory, and 18,000 more in history files (stored without the cluster).
    let dir = flows_history("cluster", 18_000, 4_000);
    let store = empty_store(StoreConfig::default());
    history::open(&store, &dir, true, &HistoryHealth::default()).unwrap();
    append_flows_from(&store, 18_000, 30);
    let q = in_cluster(store);
    assert_eq!(
        // After a comma `cluster` needs no quotes (see kindling_sql::keyword_columns).
        run(
            &q,
            "SELECT node, cluster, count(*) AS n FROM flows GROUP BY node, cluster"
        )
        .await,
        "+------+---------+-------+\n\
         | node | cluster | n     |\n\
         +------+---------+-------+\n\
         | n1   | east    | 18030 |\n\
         +------+---------+-------+"
    );
    // The column alone, in the served order (right after `node`), and in every table.
    assert_eq!(
        run(
            &q,
            "SELECT count(*) AS n FROM (SELECT cluster FROM flows) WHERE cluster = 'east'"
        )
        .await,
        "+-------+\n| n     |\n+-------+\n| 18030 |\n+-------+"
    );
    let batches = run_batches(&q, "SELECT * FROM flows WHERE conn_id = 18005").await;
    let schema = batches[0].schema();
    let node = schema.index_of("node").unwrap();
    assert_eq!(schema.field(node + 1).name(), "cluster");
    assert_eq!(
        batches[0].column(node + 1).as_string::<i32>().value(0),
        "east"
    );
    for table in schema::TABLES {
        assert_eq!(
            run(
                &q,
                &format!("SELECT count(*) AS n FROM {table} WHERE cluster <> 'east'")
            )
            .await,
            "+---+\n| n |\n+---+\n| 0 |\n+---+",
            "{table}"
        );
    }
    assert_eq!(
        run(&q, "SELECT DISTINCT cluster FROM agent_stats").await,
        "+---------+\n| cluster |\n+---------+\n| east    |\n+---------+"
    );
    // Another cluster's filter scans nothing; a filter of the cluster with another column's
    // still prunes the files by time.
    let other = run(
        &q,
        "EXPLAIN SELECT count(*) FROM flows WHERE cluster IN ('west', 'north')",
    )
    .await;
    assert!(
        !other.contains("ChunkScanExec") && !other.contains("HistoryScanExec"),
        "{other}"
    );
    assert_eq!(
        run(
            &q,
            "SELECT count(*) AS n FROM flows WHERE (cluster = 'east' OR comm = 'p1') \
             AND end_ts >= to_timestamp_seconds(5000) AND end_ts < to_timestamp_seconds(9000)"
        )
        .await,
        "+------+\n| n    |\n+------+\n| 4000 |\n+------+"
    );
    let plan = run(
        &q,
        "EXPLAIN SELECT count(*) FROM flows WHERE (cluster = 'east' OR comm = 'p1') \
         AND end_ts >= to_timestamp_seconds(5000) AND end_ts < to_timestamp_seconds(9000)",
    )
    .await;
    assert!(plan.contains("files_scanned=2, files_pruned=3"), "{plan}");
    std::fs::remove_dir_all(dir).unwrap();
}
