//! Partial aggregation on agents gives exactly the answer of single-process DataFusion over
//! the union of the agents' rows. Three fixture agents each hold their own slice; the ground
//! truth is a plain DataFusion session over in-memory copies of every agent's rows.

use kindling_testkit as support;

use std::sync::Arc;

use datafusion::{datasource::MemTable, prelude::SessionContext};
use kindling_plugin_backend::{EngineLimits, QueryEngine, agents::AgentSet};
use kindling_wire::schema;
use support::{InProcessAgent, empty_store, load_fixture, serve};

async fn agents() -> Vec<InProcessAgent> {
    agents_with([("n1", 1..=7), ("n2", 8..=20), ("n3", 21..=40)]).await
}

async fn agents_with(slices: [(&str, std::ops::RangeInclusive<u64>); 3]) -> Vec<InProcessAgent> {
    let mut out = Vec::new();
    for (node, ids) in slices {
        let store = empty_store();
        load_fixture(&store, node, ids);
        out.push(serve(store, node).await);
    }
    out
}

fn engine(agents: &[InProcessAgent]) -> QueryEngine {
    let set = AgentSet::new(agents.iter().map(|a| a.addr.clone()).collect());
    QueryEngine::new(set, EngineLimits::default())
}

/// A plain DataFusion session over every agent's rows, copied with full scans.
async fn union_of(agents: &[InProcessAgent]) -> SessionContext {
    let ctx = SessionContext::new();
    let engine = engine(agents).with_partial_aggregation(false);
    for table in schema::STORED_TABLES {
        let out = engine
            .query(&format!("SELECT * FROM {table}"))
            .await
            .unwrap();
        let mem = MemTable::try_new(Arc::clone(&out.schema), vec![out.batches]).unwrap();
        ctx.register_table(table, Arc::new(mem)).unwrap();
    }
    ctx
}

async fn plan_of(engine: &QueryEngine, sql: &str) -> String {
    let out = engine.query(&format!("EXPLAIN {sql}")).await.unwrap();
    support::rows(&out.batches)
        .into_iter()
        .map(|r| r.join(": "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that `sql` gives the engine the same non-empty rows, column names and types as
/// `truth`; returns the engine's plan.
async fn assert_same_as_truth(engine: &QueryEngine, truth: &SessionContext, sql: &str) -> String {
    let got = engine
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let want = truth.sql(sql).await.unwrap().collect().await.unwrap();
    assert_eq!(support::rows(&got.batches), support::rows(&want), "{sql}");
    assert!(!support::rows(&want).is_empty(), "{sql}");
    let names = |s: &datafusion::arrow::datatypes::Schema| {
        s.fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&got.schema), names(&want[0].schema()), "{sql}");
    plan_of(engine, sql).await
}

/// Queries split into partial aggregates on agents.
const SPLIT: &[&str] = &[
    "SELECT resource, count(*) AS n, sum(response_bytes) AS bytes, min(waiting_ttfb_ns) AS lo, \
     max(waiting_ttfb_ns) AS hi, avg(request_bytes) AS mean FROM calls GROUP BY resource ORDER BY resource",
    "SELECT count(*), sum(bytes_sent), avg(bytes_received) FROM flows",
    "SELECT comm, dst_port, count(*) AS n FROM flows WHERE bytes_sent > 300 AND comm <> 'redis' \
     GROUP BY comm, dst_port ORDER BY comm, dst_port",
    "SELECT date_bin(INTERVAL '1 minute', ts) AS minute, count(*) AS n, max(response_bytes) AS hi \
     FROM calls GROUP BY 1 ORDER BY 1",
    "SELECT node, count(*) AS n FROM calls GROUP BY node HAVING count(*) > 7 ORDER BY node",
    "SELECT c.status, max(c.response_bytes) AS hi, min(c.conn_id) AS first FROM calls c \
     WHERE c.status <> '' GROUP BY c.status ORDER BY 1",
    "SELECT rcode, avg(latency_ns) AS mean, count(latency_ns) AS answered, count(*) AS n \
     FROM dns GROUP BY rcode ORDER BY rcode",
    "SELECT count(*), sum(bytes_sent), min(bytes_sent), avg(bytes_sent) FROM flows WHERE bytes_sent > 1000000",
    // Percentiles: one t-digest per group and column from each agent (fewer than 100 values
    // each here, so the merged digests are exact and equal DataFusion's own).
    "SELECT resource, approx_percentile_cont(waiting_ttfb_ns, 0.5) AS p50, \
     approx_percentile_cont(waiting_ttfb_ns, 0.99) AS p99, max(waiting_ttfb_ns) AS hi, \
     approx_percentile_cont(request_bytes, 0.9) AS b90 FROM calls GROUP BY resource ORDER BY resource",
    "SELECT approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ns) AS p95, \
     approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ns DESC) AS p05 FROM dns",
    "SELECT rcode, approx_percentile_cont(latency_ns, 0.5) AS p50 FROM dns WHERE rcode = 'TIMEOUT' GROUP BY rcode",
    // DataFusion turns a single DISTINCT into a GROUP BY, which agents run.
    "SELECT count(DISTINCT resource) FROM calls",
    "SELECT max(n) FROM (SELECT resource, count(*) AS n FROM calls GROUP BY resource)",
    "SELECT upper(comm) AS c, sum(retransmits) AS r, sum(srtt_us) AS s FROM flows GROUP BY upper(comm) ORDER BY c",
    "SELECT f.node, count(*) FROM flows f JOIN (SELECT node, max(bytes_sent) AS m FROM flows GROUP BY node) x \
     ON f.node = x.node AND f.bytes_sent = x.m GROUP BY f.node ORDER BY f.node",
];

/// Queries whose aggregates cannot be split: agents send rows, as before.
const NOT_SPLIT: &[&str] = &[
    "SELECT resource, approx_percentile_cont(waiting_ttfb_ns, 0.5, 50) AS p50 FROM calls GROUP BY resource ORDER BY resource",
    "SELECT count(*) FROM (SELECT * FROM flows LIMIT 5)",
    "SELECT comm, count(*) FILTER (WHERE bytes_sent > 500) AS big FROM flows GROUP BY comm ORDER BY comm",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_aggregates_equal_datafusion_over_the_union_of_the_agents_rows() {
    let agents = agents().await;
    let engine = engine(&agents);
    let truth = union_of(&agents).await;
    for (sql, split) in SPLIT
        .iter()
        .map(|s| (s, true))
        .chain(NOT_SPLIT.iter().map(|s| (s, false)))
    {
        let plan = assert_same_as_truth(&engine, &truth, sql).await;
        assert_eq!(plan.contains("(partial aggregate)"), split, "{sql}\n{plan}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_fragment_each_agent_runs() {
    let agents = agents().await;
    let plan = plan_of(
        &engine(&agents),
        "SELECT resource, count(*) AS n, avg(request_bytes) AS mean FROM calls \
         WHERE status = '200' GROUP BY resource",
    )
    .await;
    assert!(
        plan.contains(
            "AgentScanExec: table=calls (partial aggregate), agents=3, fragment=SELECT \"resource\" AS \"g0\", \
             count(1) AS \"p0\", sum(request_bytes) AS \"p1\", \
             count(request_bytes) AS \"p2\" FROM \"calls\" WHERE ((\"status\" = '200')) \
             GROUP BY \"resource\"\n"
        ),
        "{plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_send_groups_not_rows() {
    let agents = agents_with([("n1", 1..=1000), ("n2", 1001..=2000), ("n3", 2001..=3000)]).await;
    let sql = "SELECT resource, count(*), sum(response_bytes) FROM calls GROUP BY resource ORDER BY resource";
    let split = engine(&agents).query(sql).await.unwrap();
    let rows = engine(&agents)
        .with_partial_aggregation(false)
        .query(sql)
        .await
        .unwrap();
    assert_eq!(support::rows(&split.batches).len(), 3);
    assert_eq!(support::rows(&split.batches), support::rows(&rows.batches));
    // 3 groups from each of 3 agents against 3000 rows: the exact sizes depend on Arrow IPC
    // framing, so compare them rather than pin them.
    assert!(
        split.bytes_received * 10 < rows.bytes_received,
        "split {} bytes, rows {} bytes",
        split.bytes_received,
        rows.bytes_received
    );
}

/// ORDER BY ... LIMIT over one table: each agent sends its own top k.
const TOP_K: &[&str] = &[
    "SELECT conn_id, waiting_ttfb_ns FROM calls ORDER BY waiting_ttfb_ns DESC LIMIT 5",
    "SELECT conn_id, resource FROM calls WHERE status = '200' ORDER BY conn_id LIMIT 4 OFFSET 3",
    "SELECT c.conn_id, c.response_bytes FROM calls c ORDER BY c.response_bytes ASC, c.conn_id DESC LIMIT 3",
    "SELECT domain, latency_ns, ts FROM dns ORDER BY latency_ns DESC NULLS FIRST, ts LIMIT 6",
    "SELECT conn_id, bytes_sent + bytes_received AS total FROM flows ORDER BY total DESC LIMIT 2",
    // The plan types this Decimal128(20, 0), the batches Decimal128(38, 0): the result's schema
    // must be the batches'.
    "SELECT conn_id, bytes_sent * 2 AS twice FROM flows ORDER BY twice DESC LIMIT 2",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_k_runs_on_agents_and_equals_datafusion_over_the_union() {
    let agents = agents().await;
    let engine = engine(&agents);
    let truth = union_of(&agents).await;
    for sql in TOP_K {
        let plan = assert_same_as_truth(&engine, &truth, sql).await;
        assert!(plan.contains(" ORDER BY "), "{sql}\n{plan}");
    }
    let plan = plan_of(&engine, TOP_K[1]).await;
    assert!(
        plan.contains(
            "fragment=SELECT \"resource\", \"status\", \"conn_id\" FROM \"calls\" WHERE ((\"status\" = '200')) \
             ORDER BY conn_id ASC NULLS LAST LIMIT 7"
        ),
        "{plan}"
    );
    // A filter that cannot reach the agents keeps every row coming.
    let sql = "SELECT conn_id FROM calls WHERE conn_id IN (SELECT conn_id FROM flows WHERE bytes_sent > 500) \
               ORDER BY conn_id LIMIT 2";
    let got = engine.query(sql).await.unwrap();
    let want = truth.sql(sql).await.unwrap().collect().await.unwrap();
    assert_eq!(support::rows(&got.batches), support::rows(&want));
}

/// Scans whose projection and filters (timestamp literals among them) reach the agents, with
/// the fragment each agent runs.
const SCANS: &[(&str, &str)] = &[
    (
        "SELECT conn_id, comm, dst_port, bytes_sent FROM flows WHERE dst_port = 443 ORDER BY conn_id",
        "AgentScanExec: table=flows, agents=3, fragment=SELECT \"conn_id\", \"comm\", \"dst_port\", \
         \"bytes_sent\" FROM \"flows\" WHERE ((dst_port = 443))\n",
    ),
    (
        "SELECT conn_id, bytes_received FROM flows WHERE comm LIKE 'cu%' AND bytes_sent > 250 ORDER BY conn_id",
        "AgentScanExec: table=flows, agents=3, fragment=SELECT \"conn_id\", \"comm\", \"bytes_sent\", \
         \"bytes_received\" FROM \"flows\" WHERE ((bytes_sent > 250)) AND (comm LIKE 'cu%')\n",
    ),
    (
        "SELECT conn_id, start_ts FROM flows WHERE start_ts BETWEEN TIMESTAMP '2023-11-14T22:14:00Z' \
         AND TIMESTAMP '2023-11-14T22:14:20Z' ORDER BY conn_id",
        "AgentScanExec: table=flows, agents=3, fragment=SELECT \"start_ts\", \"conn_id\" FROM \"flows\" \
         WHERE ((start_ts >= CAST('2023-11-14T22:14:00+00:00' AS TIMESTAMP))) \
         AND ((start_ts <= CAST('2023-11-14T22:14:20+00:00' AS TIMESTAMP)))\n",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_projection_filters_and_limit_agents_run() {
    let agents = agents().await;
    let engine = engine(&agents);
    let truth = union_of(&agents).await;
    for (sql, fragment) in SCANS {
        let plan = assert_same_as_truth(&engine, &truth, sql).await;
        assert!(plan.contains(fragment), "{sql}\n{plan}");
    }
    // A bare LIMIT: each agent sends at most that many rows (which ones is up to the agents,
    // so only their number is compared).
    let sql = "SELECT conn_id FROM flows LIMIT 4";
    let got = engine.query(sql).await.unwrap();
    assert_eq!(support::rows(&got.batches).len(), 4);
    let plan = plan_of(&engine, sql).await;
    assert!(
        plan.contains(
            "AgentScanExec: table=flows, agents=3, fragment=SELECT \"conn_id\" FROM \"flows\" LIMIT 4\n"
        ),
        "{sql}\n{plan}"
    );
}
