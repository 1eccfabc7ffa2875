//! The `service_map` query type through Grafana host emulation: two in-process agents hold calls
//! whose ends the test places (seen on both ends across the two agents, on the client end only,
//! on the server end only), so every node and edge of the Node Graph is known exactly.

mod support;

use std::net::Ipv4Addr;

use datafusion::arrow::{
    array::{Array, AsArray, RecordBatch},
    compute::cast,
    datatypes::{DataType, Float64Type, UInt64Type},
};
use kindling_agent::records::{CallRecord, CallsBuilder, Endpoints, Owner, Role};
use kindling_wire::schema;
use serde_json::{Value, json};
use support::{InProcessAgent, empty_store, fixture_call, host::GrafanaHost, serve};

/// One call as seen by `node` in `role`, from `src` to `dst`.
struct Call {
    node: &'static str,
    role: Role,
    comm: &'static str,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    protocol: &'static str,
    duration_ms: u64,
    is_error: bool,
}

fn record(c: &Call, ts_ns: i64) -> CallRecord {
    let ip = |a: [u8; 4]| Ipv4Addr::from(a).into();
    CallRecord {
        ts_ns,
        protocol: c.protocol,
        role: c.role,
        status: if c.is_error { "500" } else { "200" }.to_owned(),
        is_error: c.is_error,
        // All of the duration is waiting, so duration_ns is exactly duration_ms.
        request_sent_ns: 0,
        waiting_ttfb_ns: c.duration_ms * 1_000_000,
        content_download_ns: 0,
        endpoints: Endpoints {
            src_ip: ip(c.src.0),
            src_port: c.src.1,
            dst_ip: ip(c.dst.0),
            dst_port: c.dst.1,
        },
        owner: Owner {
            pid: 7,
            tid: 7,
            comm: c.comm.to_owned(),
        },
        ..fixture_call(1)
    }
}

const FRONTEND: [u8; 4] = [10, 0, 0, 1];
const API: [u8; 4] = [10, 0, 0, 2];
const REDIS: [u8; 4] = [10, 0, 0, 3];
const EXTERNAL_SERVER: [u8; 4] = [10, 9, 9, 9];
const EXTERNAL_CLIENT: [u8; 4] = [10, 7, 7, 7];

/// The calls of both agents, each `(count, call)`.
fn scenario() -> Vec<(u64, Call)> {
    let http = |node, role, comm, src, dst, duration_ms, is_error| Call {
        node,
        role,
        comm,
        src,
        dst,
        protocol: "http",
        duration_ms,
        is_error,
    };
    vec![
        // frontend (n1) -> api (n2), seen on both ends: 3 good calls and 1 error on two
        // connections; the client measures 12 ms, the server 10 ms.
        (
            2,
            http(
                "n1",
                Role::Client,
                "frontend",
                (FRONTEND, 50_001),
                (API, 8080),
                12,
                false,
            ),
        ),
        (
            2,
            http(
                "n2",
                Role::Server,
                "api",
                (FRONTEND, 50_001),
                (API, 8080),
                10,
                false,
            ),
        ),
        (
            1,
            http(
                "n1",
                Role::Client,
                "frontend",
                (FRONTEND, 50_002),
                (API, 8080),
                12,
                false,
            ),
        ),
        (
            1,
            http(
                "n2",
                Role::Server,
                "api",
                (FRONTEND, 50_002),
                (API, 8080),
                10,
                false,
            ),
        ),
        (
            1,
            http(
                "n1",
                Role::Client,
                "frontend",
                (FRONTEND, 50_002),
                (API, 8080),
                12,
                true,
            ),
        ),
        (
            1,
            http(
                "n2",
                Role::Server,
                "api",
                (FRONTEND, 50_002),
                (API, 8080),
                10,
                true,
            ),
        ),
        // frontend -> a server no agent sees: 2 calls of 30 ms.
        (
            2,
            http(
                "n1",
                Role::Client,
                "frontend",
                (FRONTEND, 50_003),
                (EXTERNAL_SERVER, 443),
                30,
                false,
            ),
        ),
        // A client no agent sees -> api: 3 calls of 5 ms.
        (
            3,
            http(
                "n2",
                Role::Server,
                "api",
                (EXTERNAL_CLIENT, 60_000),
                (API, 8080),
                5,
                false,
            ),
        ),
        // api -> redis, which no agent sees: 5 commands of 1 ms.
        (
            5,
            Call {
                protocol: "redis",
                ..http(
                    "n2",
                    Role::Client,
                    "api",
                    (API, 50_100),
                    (REDIS, 6379),
                    1,
                    false,
                )
            },
        ),
    ]
}

/// Two agents, n1 and n2, holding their calls of the scenario, ten minutes ago.
async fn agents() -> (InProcessAgent, InProcessAgent) {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let mut ts = now - 600_000_000_000;
    let mut served = Vec::new();
    for node in ["n1", "n2"] {
        let store = empty_store();
        let mut calls = CallsBuilder::new(node);
        for (count, call) in scenario().iter().filter(|(_, c)| c.node == node) {
            for _ in 0..*count {
                ts += 1_000_000;
                calls.append(&record(call, ts));
            }
        }
        store
            .append(schema::CALLS, calls.finish().unwrap())
            .unwrap();
        served.push(serve(store, node).await);
    }
    let n2 = served.pop().unwrap();
    (served.pop().unwrap(), n2)
}

fn text(batch: &RecordBatch, name: &str) -> Vec<String> {
    let a = cast(batch.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
    a.as_string::<i32>()
        .iter()
        .map(|v| v.unwrap().to_owned())
        .collect()
}

fn floats(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    let a = cast(batch.column_by_name(name).unwrap(), &DataType::Float64).unwrap();
    let a = a.as_primitive::<Float64Type>();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i)))
        .collect()
}

fn counts(batch: &RecordBatch, name: &str) -> Vec<u64> {
    let a = cast(batch.column_by_name(name).unwrap(), &DataType::UInt64).unwrap();
    a.as_primitive::<UInt64Type>()
        .iter()
        .map(|v| v.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_map_counts_each_call_once_and_names_both_ends() {
    let (n1, n2) = agents().await;
    let host = GrafanaHost::start();
    let responses = host
        .query_data(
            &[&n1.addr, &n2.addr],
            &[("M", json!({"refId": "M", "queryType": "service_map"}))],
        )
        .await;
    assert_eq!(responses["M"].error, "");
    let frames = support::host::decode_frames(&responses["M"]);
    assert_eq!(frames.len(), 2);
    for f in &frames {
        let meta: Value = serde_json::from_str(&f.metadata["meta"]).unwrap();
        assert_eq!(meta["preferredVisualisationType"], "nodeGraph");
        assert!(
            meta["executedQueryString"]
                .as_str()
                .unwrap()
                .contains("FROM calls")
        );
    }
    assert_eq!(frames[0].metadata["name"], "nodes");
    assert_eq!(frames[1].metadata["name"], "edges");
    // The host emulation asks for the last hour.
    let per_s = |calls: f64| calls / 3600.0;

    let edges = &frames[1].batch;
    assert_eq!(
        text(edges, "source"),
        ["10.7.7.7", "n1/frontend", "n1/frontend", "n2/api"]
    );
    assert_eq!(
        text(edges, "target"),
        ["n2/api", "10.9.9.9:443", "n2/api", "10.0.0.3:6379"]
    );
    assert_eq!(
        text(edges, "detail__protocol"),
        ["http", "http", "http", "redis"]
    );
    // frontend -> api: 4 calls, not 8, with the server's 10 ms; one error in four.
    assert_eq!(counts(edges, "detail__calls"), [3, 2, 4, 5]);
    assert_eq!(
        floats(edges, "mainstat"),
        [3.0, 2.0, 4.0, 5.0].map(|c| Some(per_s(c)))
    );
    assert_eq!(
        floats(edges, "secondarystat"),
        [5.0, 30.0, 10.0, 1.0].map(Some)
    );
    assert_eq!(
        floats(edges, "detail__error_rate"),
        [0.0, 0.0, 0.25, 0.0].map(Some)
    );
    assert_eq!(text(edges, "id")[2], "n1/frontend -> n2/api (http)");

    let nodes = &frames[0].batch;
    assert_eq!(
        text(nodes, "id"),
        [
            "10.0.0.3:6379",
            "10.7.7.7",
            "10.9.9.9:443",
            "n1/frontend",
            "n2/api"
        ]
    );
    assert_eq!(
        text(nodes, "title"),
        [
            "10.0.0.3:6379",
            "10.7.7.7",
            "10.9.9.9:443",
            "frontend",
            "api"
        ]
    );
    assert_eq!(
        text(nodes, "subtitle"),
        ["not observed", "not observed", "not observed", "n1", "n2"]
    );
    // api served 4 calls from frontend and 3 from the unseen client; pure clients serve none.
    assert_eq!(counts(nodes, "detail__calls"), [5, 0, 2, 0, 7]);
    assert_eq!(
        floats(nodes, "mainstat"),
        [5.0, 0.0, 2.0, 0.0, 7.0].map(|c| Some(per_s(c)))
    );
    assert_eq!(
        floats(nodes, "secondarystat"),
        [Some(1.0), None, Some(30.0), None, Some(10.0)]
    );
    assert_eq!(
        floats(nodes, "arc__errors"),
        [0.0, 0.0, 0.0, 0.0, 1.0 / 7.0].map(Some)
    );
    assert_eq!(
        floats(nodes, "arc__success"),
        [1.0, 0.0, 1.0, 0.0, 6.0 / 7.0].map(Some)
    );

    // Filters: only redis; only what n1 recorded (its frontend's client rows, unmatched now).
    let responses = host
        .query_data(
            &[&n1.addr, &n2.addr],
            &[
                (
                    "R",
                    json!({"queryType": "service_map", "protocol": "redis"}),
                ),
                ("N", json!({"queryType": "service_map", "node": "n1"})),
                ("B", json!({"queryType": "service_map", "node": 5})),
                ("U", json!({"queryType": "graph"})),
            ],
        )
        .await;
    let edges = &support::host::decode_frames(&responses["R"])[1].batch;
    assert_eq!(text(edges, "target"), ["10.0.0.3:6379"]);
    let edges = &support::host::decode_frames(&responses["N"])[1].batch;
    assert_eq!(text(edges, "target"), ["10.0.0.2:8080", "10.9.9.9:443"]);
    assert_eq!(counts(edges, "detail__calls"), [4, 2]);
    assert_eq!(floats(edges, "secondarystat"), [Some(12.0), Some(30.0)]);
    assert_eq!(
        responses["B"].error,
        "malformed query JSON: invalid type: integer `5`, expected a string"
    );
    assert_eq!(
        responses["U"].error,
        "unknown queryType `graph` (supported: sql, service_map)"
    );
}
