//! The builder query types through Grafana host emulation, over in-process agents whose rows
//! the test places:
//! - `service_map`: calls seen on both ends across two agents, on the client end only, on the
//!   server end only, so every node and edge of the Node Graph is known exactly;
//! - `trace`: a server call with the DNS lookup and the outgoing call its thread made inside
//!   it (and others outside it or by another thread), a client's first and second call on a
//!   new connection.

use kindling_testkit as support;

use std::net::Ipv4Addr;

use datafusion::arrow::{
    array::{Array, AsArray, RecordBatch},
    compute::cast,
    datatypes::{DataType, Float64Type, UInt64Type},
};
use kindling_agent::records::{
    CallRecord, DnsRecord, EndMeta, Endpoints, Ends, FlowRecord, Owner, Role, TlsInfo,
    builders::{CallsBuilder, DnsBuilder, FlowsBuilder},
};
use kindling_wire::schema;
use serde_json::{Value, json};
use support::{
    InProcessAgent, ServeOptions, empty_store, fixture_call, fixture_dns, fixture_flow,
    host::{Datasource, GrafanaHost},
    serve, serve_with,
};

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
        status: if c.is_error { "500" } else { "200" }.into(),
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
            comm: c.comm.into(),
            cgroup_id: 0,
        },
        ..fixture_call(1)
    }
}

const FRONTEND: [u8; 4] = [10, 0, 0, 1];
const API: [u8; 4] = [10, 0, 0, 2];
const REDIS: [u8; 4] = [10, 0, 0, 3];
const DB: [u8; 4] = [10, 0, 0, 4];
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

/// The connections `node` saw: frontend -> api (on which calls were parsed: conn_id 1 on
/// both ends, as every scenario call), and frontend -> db at 10.0.0.4:5432, on which none
/// was: n1 saw its client end (conn_id 500), n2 its server end (600, lasting 40 ms).
fn scenario_flows(node: &str, end_ts: i64) -> RecordBatch {
    let ip = |a: [u8; 4]| Ipv4Addr::from(a).into();
    let flow = |conn_id: u64, role: Role, comm: &str, dst: ([u8; 4], u16), ms: i64| FlowRecord {
        start_ts_ns: end_ts - ms * 1_000_000,
        end_ts_ns: end_ts,
        conn_id,
        role,
        owner: Owner {
            pid: 9,
            tid: 9,
            comm: comm.into(),
            cgroup_id: 0,
        },
        endpoints: Endpoints {
            src_ip: ip(FRONTEND),
            src_port: 50_900 + dst.1 % 100,
            dst_ip: ip(dst.0),
            dst_port: dst.1,
        },
        ..fixture_flow(1)
    };
    let mut flows = FlowsBuilder::new(node);
    if node == "n1" {
        flows.append(&flow(1, Role::Client, "frontend", (API, 8080), 50));
        flows.append(&flow(500, Role::Client, "frontend", (DB, 5432), 45));
    } else {
        flows.append(&flow(1, Role::Server, "api", (API, 8080), 50));
        flows.append(&flow(600, Role::Server, "db", (DB, 5432), 40));
    }
    flows.finish().unwrap()
}

/// Two agents, n1 and n2, holding their calls of the scenario, ten minutes ago.
async fn agents() -> (InProcessAgent, InProcessAgent) {
    agents_in("").await
}

/// [`agents`] of the cluster `cluster`.
async fn agents_in(cluster: &str) -> (InProcessAgent, InProcessAgent) {
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
        store
            .append(schema::FLOWS, scenario_flows(node, ts))
            .unwrap();
        let options = ServeOptions {
            cluster,
            ..ServeOptions::default()
        };
        served.push(serve_with(store, node, options).await);
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

/// The same scenario recorded in two clusters (the same node names and addresses in each):
/// every end an agent saw or named is its cluster's, the calls of one cluster are never
/// matched with the other's, and only the ends no agent saw are shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_map_of_two_clusters_keeps_them_apart() {
    let (e1, e2) = agents_in("east").await;
    let (w1, w2) = agents_in("west").await;
    let host = GrafanaHost::start();
    let ds = Datasource {
        json_data: json!({"clusters": [
            {"name": "east", "agents": [e1.addr, e2.addr]},
            {"name": "west", "agents": [w1.addr, w2.addr]},
        ]}),
        secure_json_data: Default::default(),
    };
    let responses = host
        .query_datasource(
            &ds,
            &[
                ("M", json!({"queryType": "service_map"})),
                ("W", json!({"queryType": "service_map", "cluster": "west"})),
            ],
        )
        .await;
    assert_eq!(responses["M"].error, "");
    let frames = support::host::decode_frames(&responses["M"]);
    let edges = &frames[1].batch;
    // The one-cluster map's edges (service_map_counts_each_call_once_and_names_both_ends),
    // once per cluster.
    let one = [
        ("10.7.7.7", "n2/api", "http", 3),
        ("n1/frontend", "10.9.9.9:443", "http", 2),
        ("n1/frontend", "n2/api", "http", 4),
        ("n1/frontend", "n2/db", "tcp", 1),
        ("n2/api", "10.0.0.3:6379", "redis", 5),
    ];
    let named = |cluster: &str, end: &str| {
        if end.contains('/') {
            format!("{cluster}/{end}")
        } else {
            end.to_owned()
        }
    };
    let mut want: Vec<(String, String, String, u64)> = ["east", "west"]
        .iter()
        .flat_map(|c| {
            one.iter()
                .map(|(s, t, p, n)| (named(c, s), named(c, t), (*p).to_owned(), *n))
        })
        .collect();
    want.sort();
    let got: Vec<(String, String, String, u64)> = (0..edges.num_rows())
        .map(|i| {
            (
                text(edges, "source")[i].clone(),
                text(edges, "target")[i].clone(),
                text(edges, "detail__protocol")[i].clone(),
                counts(edges, "detail__calls")[i],
            )
        })
        .collect();
    assert_eq!(got, want);
    let nodes = &frames[0].batch;
    assert_eq!(
        text(nodes, "id"),
        [
            "10.0.0.3:6379",
            "10.7.7.7",
            "10.9.9.9:443",
            "east/n1/frontend",
            "east/n2/api",
            "east/n2/db",
            "west/n1/frontend",
            "west/n2/api",
            "west/n2/db",
        ]
    );
    assert_eq!(
        text(nodes, "title"),
        [
            "10.0.0.3:6379",
            "10.7.7.7",
            "10.9.9.9:443",
            "frontend",
            "api",
            "db",
            "frontend",
            "api",
            "db"
        ]
    );
    let unseen = "not observed";
    assert_eq!(
        text(nodes, "subtitle"),
        [
            unseen,
            unseen,
            unseen,
            "east · n1",
            "east · n2",
            "east · n2",
            "west · n1",
            "west · n2",
            "west · n2"
        ]
    );
    // Both clusters' api served 7 calls each; the shared unseen redis 5 from each.
    assert_eq!(counts(nodes, "detail__calls"), [10, 0, 4, 0, 7, 1, 0, 7, 1]);
    // One cluster: only its half.
    let edges = &support::host::decode_frames(&responses["W"])[1].batch;
    assert_eq!(
        text(edges, "source"),
        [
            "10.7.7.7",
            "west/n1/frontend",
            "west/n1/frontend",
            "west/n1/frontend",
            "west/n2/api"
        ]
    );
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
        [
            "10.7.7.7",
            "n1/frontend",
            "n1/frontend",
            "n1/frontend",
            "n2/api"
        ]
    );
    assert_eq!(
        text(edges, "target"),
        ["n2/api", "10.9.9.9:443", "n2/api", "n2/db", "10.0.0.3:6379"]
    );
    assert_eq!(
        text(edges, "detail__protocol"),
        ["http", "http", "http", "tcp", "redis"]
    );
    // frontend -> api: 4 calls, not 8, with the server's 10 ms; one error in four. The
    // connection it was parsed on is no L4 edge; the one to db, seen on both ends, is one
    // connection with the server end's 40 ms.
    assert_eq!(counts(edges, "detail__calls"), [3, 2, 4, 1, 5]);
    assert_eq!(
        floats(edges, "mainstat"),
        [3.0, 2.0, 4.0, 1.0, 5.0].map(|c| Some(per_s(c)))
    );
    assert_eq!(
        floats(edges, "secondarystat"),
        [5.0, 30.0, 10.0, 40.0, 1.0].map(Some)
    );
    assert_eq!(
        floats(edges, "detail__error_rate"),
        [0.0, 0.0, 0.25, 0.0, 0.0].map(Some)
    );
    assert_eq!(text(edges, "id")[2], "n1/frontend -> n2/api (http)");

    let nodes = &frames[0].batch;
    let ids = [
        "10.0.0.3:6379",
        "10.7.7.7",
        "10.9.9.9:443",
        "n1/frontend",
        "n2/api",
        "n2/db",
    ];
    assert_eq!(text(nodes, "id"), ids);
    let titles = [
        "10.0.0.3:6379",
        "10.7.7.7",
        "10.9.9.9:443",
        "frontend",
        "api",
        "db",
    ];
    assert_eq!(text(nodes, "title"), titles);
    let unseen = "not observed";
    assert_eq!(
        text(nodes, "subtitle"),
        [unseen, unseen, unseen, "n1", "n2", "n2"]
    );
    // api served 4 calls from frontend and 3 from the unseen client, db one connection; pure
    // clients serve none.
    assert_eq!(counts(nodes, "detail__calls"), [5, 0, 2, 0, 7, 1]);
    assert_eq!(
        floats(nodes, "mainstat"),
        [5.0, 0.0, 2.0, 0.0, 7.0, 1.0].map(|c| Some(per_s(c)))
    );
    assert_eq!(
        floats(nodes, "secondarystat"),
        [Some(1.0), None, Some(30.0), None, Some(10.0), Some(40.0)]
    );
    assert_eq!(
        floats(nodes, "arc__errors"),
        [0.0, 0.0, 0.0, 0.0, 1.0 / 7.0, 0.0].map(Some)
    );
    assert_eq!(
        floats(nodes, "arc__success"),
        [1.0, 0.0, 1.0, 0.0, 6.0 / 7.0, 1.0].map(Some)
    );

    // Filters: only redis; only what n1 recorded (its frontend's client ends, unmatched now);
    // only the L4 edges.
    let responses = host
        .query_data(
            &[&n1.addr, &n2.addr],
            &[
                (
                    "R",
                    json!({"queryType": "service_map", "protocol": "redis"}),
                ),
                ("N", json!({"queryType": "service_map", "node": "n1"})),
                ("T", json!({"queryType": "service_map", "protocol": "tcp"})),
                ("B", json!({"queryType": "service_map", "node": 5})),
                ("U", json!({"queryType": "graph"})),
            ],
        )
        .await;
    let edges = &support::host::decode_frames(&responses["R"])[1].batch;
    assert_eq!(text(edges, "target"), ["10.0.0.3:6379"]);
    let edges = &support::host::decode_frames(&responses["N"])[1].batch;
    assert_eq!(
        text(edges, "target"),
        ["10.0.0.2:8080", "10.0.0.4:5432", "10.9.9.9:443"]
    );
    assert_eq!(counts(edges, "detail__calls"), [4, 1, 2]);
    assert_eq!(
        floats(edges, "secondarystat"),
        [Some(12.0), Some(45.0), Some(30.0)]
    );
    let edges = &support::host::decode_frames(&responses["T"])[1].batch;
    assert_eq!(text(edges, "id"), ["n1/frontend -> n2/db (tcp)"]);
    assert_eq!(
        responses["B"].error,
        "malformed query JSON: invalid type: integer `5`, expected a string"
    );
    assert_eq!(
        responses["U"].error,
        "unknown queryType `graph` (supported: sql, calls, dns, tcp, service_map, trace)"
    );
}

/// Connections on which no call was parsed, as L4 edges: two TLS connections to one server
/// (their handshakes seen, their bytes not decrypted) are a `tls` edge named by the server name
/// their clients asked for, with the version and the p95 handshake time; a connection without
/// a handshake stays `tcp`, with no TLS details.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_map_names_and_times_tls_edges_without_calls() {
    const PAY: [u8; 4] = [10, 0, 0, 5];
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let end_ts = now - 600_000_000_000;
    let flow = |conn_id: u64, dst: ([u8; 4], u16), ms: i64, tls: TlsInfo| FlowRecord {
        start_ts_ns: end_ts - ms * 1_000_000,
        end_ts_ns: end_ts,
        conn_id,
        role: Role::Client,
        owner: Owner {
            pid: 9,
            tid: 9,
            comm: "frontend".into(),
            cgroup_id: 0,
        },
        endpoints: Endpoints {
            src_ip: Ipv4Addr::from(FRONTEND).into(),
            src_port: 40_000 + conn_id as u16,
            dst_ip: Ipv4Addr::from(dst.0).into(),
            dst_port: dst.1,
        },
        tls,
        ..fixture_flow(1)
    };
    let pay = TlsInfo {
        sni: Some("pay.example".into()),
        version: Some("TLS 1.3"),
        handshake_ns: Some(4_000_000),
        library: None,
    };
    let mut flows = FlowsBuilder::new("n1");
    flows.append(&flow(1, (PAY, 443), 70, pay.clone()));
    flows.append(&flow(2, (PAY, 443), 70, pay));
    flows.append(&flow(3, (DB, 5432), 45, TlsInfo::default()));
    let store = empty_store();
    store
        .append(schema::FLOWS, flows.finish().unwrap())
        .unwrap();
    let agent = serve(store, "n1").await;
    let host = GrafanaHost::start();
    let responses = host
        .query_data(
            &[&agent.addr],
            &[
                ("M", json!({"queryType": "service_map"})),
                ("S", json!({"queryType": "service_map", "protocol": "tls"})),
            ],
        )
        .await;
    assert_eq!(responses["M"].error, "");
    let edges = &support::host::decode_frames(&responses["M"])[1].batch;
    assert_eq!(
        text(edges, "id"),
        [
            "n1/frontend -> 10.0.0.4:5432 (tcp)",
            "n1/frontend -> 10.0.0.5:443 (tls)"
        ]
    );
    assert_eq!(counts(edges, "detail__calls"), [1, 2]);
    assert_eq!(floats(edges, "secondarystat"), [Some(45.0), Some(70.0)]);
    assert_eq!(text(edges, "detail__tls_sni"), ["", "pay.example"]);
    assert_eq!(text(edges, "detail__tls_version"), ["", "TLS 1.3"]);
    assert_eq!(
        floats(edges, "detail__tls_handshake_p95"),
        [None, Some(4.0)]
    );
    let edges = &support::host::decode_frames(&responses["S"])[1].batch;
    assert_eq!(text(edges, "target"), ["10.0.0.5:443"]);
}

/// A call of `comm` (pid 7) on thread `tid`, connection `conn_id`, starting `at_ms` after `t0`,
/// with its three timing parts in µs.
/// One end's Kubernetes names.
fn end_meta(namespace: &str, workload: &str, kind: &str, service: &str) -> EndMeta {
    EndMeta {
        pod: format!("{workload}-0").into(),
        namespace: namespace.into(),
        workload: workload.into(),
        workload_kind: kind.into(),
        service: service.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_map_names_kubernetes_workloads_and_services() {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap() - 600_000_000_000;
    let web = end_meta("shop", "web", "Deployment", "web");
    let db = end_meta("shop", "db", "StatefulSet", "db");
    let cache = EndMeta {
        namespace: "shop".into(),
        service: "cache".into(),
        ..EndMeta::default()
    };
    let node = EndMeta {
        workload: "node-a".into(),
        workload_kind: "Node".into(),
        ..EndMeta::default()
    };
    let call = |role, src: ([u8; 4], u16), dst: ([u8; 4], u16), ms| Call {
        node: "n1",
        role,
        comm: "proc",
        src,
        dst,
        protocol: "http",
        duration_ms: ms,
        is_error: false,
    };
    // web -> db seen on both ends (2 calls); web -> cache's ClusterIP, client end only (3);
    // the node -> db, server end only (1).
    let rows = [
        (
            2,
            call(Role::Client, (FRONTEND, 50_001), (DB, 5432), 12),
            &web,
            &db,
        ),
        (
            2,
            call(Role::Server, (FRONTEND, 50_001), (DB, 5432), 10),
            &web,
            &db,
        ),
        (
            3,
            call(Role::Client, (FRONTEND, 50_002), (REDIS, 80), 3),
            &web,
            &cache,
        ),
        (
            1,
            call(Role::Server, (EXTERNAL_CLIENT, 40_000), (DB, 5432), 7),
            &node,
            &db,
        ),
    ];
    let store = empty_store();
    let mut calls = CallsBuilder::new("n1");
    let mut ts = now;
    for (count, c, src, dst) in &rows {
        for _ in 0..*count {
            ts += 1_000_000;
            let ends = Ends {
                src: (*src).clone(),
                dst: (*dst).clone(),
                ..Ends::default()
            };
            calls.append_with(&record(c, ts), &ends);
        }
    }
    store
        .append(schema::CALLS, calls.finish().unwrap())
        .unwrap();
    let agent = serve(store, "n1").await;
    let host = GrafanaHost::start();
    let responses = host
        .query_data(
            &[&agent.addr],
            &[("M", json!({"refId": "M", "queryType": "service_map"}))],
        )
        .await;
    assert_eq!(responses["M"].error, "");
    let frames = support::host::decode_frames(&responses["M"]);
    let edges = &frames[1].batch;
    assert_eq!(
        text(edges, "source"),
        ["node/node-a", "shop/web", "shop/web"]
    );
    assert_eq!(text(edges, "target"), ["shop/db", "shop/cache", "shop/db"]);
    assert_eq!(counts(edges, "detail__calls"), [1, 3, 2]);
    // Seen on both ends: the server's 10 ms.
    assert_eq!(
        floats(edges, "secondarystat"),
        [Some(7.0), Some(3.0), Some(10.0)]
    );
    let nodes = &frames[0].batch;
    assert_eq!(
        text(nodes, "id"),
        ["node/node-a", "shop/cache", "shop/db", "shop/web"]
    );
    assert_eq!(text(nodes, "title"), ["node-a", "cache", "db", "web"]);
    assert_eq!(text(nodes, "subtitle"), ["node", "shop", "shop", "shop"]);
    assert_eq!(counts(nodes, "detail__calls"), [0, 3, 3, 0]);
}

fn timed(
    t0: i64,
    at_us: i64,
    role: Role,
    tid: u32,
    conn_id: u64,
    parts_us: [u64; 3],
    dst: ([u8; 4], u16),
) -> CallRecord {
    let ip = |a: [u8; 4]| Ipv4Addr::from(a).into();
    CallRecord {
        ts_ns: t0 + at_us * 1_000,
        role,
        method: "GET".into(),
        resource: format!("/r{conn_id}"),
        status: "200".into(),
        is_error: false,
        request_sent_ns: parts_us[0] * 1_000,
        waiting_ttfb_ns: parts_us[1] * 1_000,
        content_download_ns: parts_us[2] * 1_000,
        endpoints: Endpoints {
            src_ip: ip(FRONTEND),
            src_port: 50_000 + conn_id as u16,
            dst_ip: ip(dst.0),
            dst_port: dst.1,
        },
        owner: Owner {
            pid: 7,
            tid,
            comm: "api".into(),
            cgroup_id: 0,
        },
        conn_id,
        ..fixture_call(1)
    }
}

/// Two clusters whose agents share a node name, each holding a call of the same connection
/// number at the same time but timed differently: each cluster's trace is its own call's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_of_a_call_is_that_of_its_cluster() {
    let t0 = chrono::Utc::now().timestamp_nanos_opt().unwrap() - 600_000_000_000;
    let mut agents = Vec::new();
    for (cluster, waiting_us) in [("east", 8_000), ("west", 3_000)] {
        let store = empty_store();
        let mut calls = CallsBuilder::new("n2");
        calls.append(&timed(
            t0,
            0,
            Role::Server,
            77,
            21,
            [1_000, waiting_us, 1_000],
            (API, 8080),
        ));
        store
            .append(schema::CALLS, calls.finish().unwrap())
            .unwrap();
        let options = ServeOptions {
            cluster,
            ..ServeOptions::default()
        };
        agents.push(serve_with(store, "n2", options).await);
    }
    let ds = Datasource {
        json_data: json!({"clusters": [
            {"name": "east", "agents": [agents[0].addr]},
            {"name": "west", "agents": [agents[1].addr]},
        ]}),
        secure_json_data: Default::default(),
    };
    let trace = |cluster: &str| {
        json!({"queryType": "trace", "node": "n2", "connId": 21, "ts": t0.to_string(),
               "cluster": cluster})
    };
    let host = GrafanaHost::start();
    let responses = host
        .query_datasource(&ds, &[("E", trace("east")), ("W", trace("west"))])
        .await;
    for (ref_id, waiting_ms) in [("E", 8.0), ("W", 3.0)] {
        assert_eq!(responses[ref_id].error, "", "{ref_id}");
        let b = &support::host::decode_frames(&responses[ref_id])[0].batch;
        let waiting = text(b, "operationName")
            .iter()
            .position(|op| op == "waiting (TTFB)")
            .unwrap();
        assert_eq!(floats(b, "duration")[waiting], Some(waiting_ms), "{ref_id}");
        assert_eq!(floats(b, "duration")[0], Some(waiting_ms + 2.0), "{ref_id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_shows_the_timing_parts_and_what_the_thread_did_inside_the_call() {
    let t0 = chrono::Utc::now().timestamp_nanos_opt().unwrap() - 600_000_000_000;
    let store = empty_store();
    let mut calls = CallsBuilder::new("n2");
    // The traced server call: 1 ms sending, 8 ms waiting, 1 ms downloading, thread 77.
    calls.append(&timed(
        t0,
        0,
        Role::Server,
        77,
        21,
        [1_000, 8_000, 1_000],
        (API, 8080),
    ));
    // Inside it, by thread 77: a call to redis at +2 ms for 1.5 ms.
    calls.append(&timed(
        t0,
        2_000,
        Role::Client,
        77,
        22,
        [100, 1_300, 100],
        (REDIS, 6379),
    ));
    // Not its children: another thread inside the window, the same thread after it.
    calls.append(&timed(
        t0,
        3_000,
        Role::Client,
        78,
        23,
        [10, 10, 10],
        (REDIS, 6379),
    ));
    calls.append(&timed(
        t0,
        20_000,
        Role::Client,
        77,
        24,
        [10, 10, 10],
        (REDIS, 6379),
    ));
    // A client's first and second calls on connection 31, which took 300 µs to connect.
    calls.append(&timed(
        t0,
        50_000,
        Role::Client,
        90,
        31,
        [20, 200, 30],
        (EXTERNAL_SERVER, 443),
    ));
    calls.append(&timed(
        t0,
        60_000,
        Role::Client,
        90,
        31,
        [20, 100, 30],
        (EXTERNAL_SERVER, 443),
    ));
    store
        .append(schema::CALLS, calls.finish().unwrap())
        .unwrap();
    // The process's DNS lookups: one inside the server call (+1 ms, 0.5 ms), one after it.
    let mut dns = DnsBuilder::new("n2");
    let lookup = |at_us: i64, domain: &str| DnsRecord {
        ts_ns: t0 + at_us * 1_000,
        domain: domain.to_owned(),
        latency_ns: Some(500_000),
        rcode: "NOERROR".into(),
        owner: Owner {
            pid: 7,
            tid: 7,
            comm: "api".into(),
            cgroup_id: 0,
        },
        ..fixture_dns(1).remove(1)
    };
    dns.append(&lookup(1_000, "redis.local"));
    dns.append(&lookup(30_000, "later.local"));
    store.append(schema::DNS, dns.finish().unwrap()).unwrap();
    let mut flows = FlowsBuilder::new("n2");
    let mut flow = |conn_id: u64, connect_us: Option<u64>| {
        let mut f: FlowRecord = fixture_flow(2);
        f.conn_id = conn_id;
        f.health.connect_latency_ns = connect_us.map(|us| us * 1_000);
        flows.append(&f);
    };
    flow(31, Some(300));
    flow(21, None);
    store
        .append(schema::FLOWS, flows.finish().unwrap())
        .unwrap();
    let agent = serve(store, "n2").await;

    let host = GrafanaHost::start();
    let trace = |conn_id: u64, at_us: i64| {
        json!({"queryType": "trace", "node": "n2", "connId": conn_id,
               "ts": (t0 + at_us * 1_000).to_string()})
    };
    let responses = host
        .query_data(
            &[&agent.addr],
            &[
                ("S", trace(21, 0)),
                ("C1", trace(31, 50_000)),
                // As the query editor stores it: connId a string.
                (
                    "C2",
                    json!({"queryType": "trace", "node": "n2", "connId": "31",
                           "ts": (t0 + 60_000_000).to_string()}),
                ),
                (
                    "BC",
                    json!({"queryType": "trace", "node": "n2", "connId": "x1", "ts": "1"}),
                ),
                ("X", trace(21, 1)),
                (
                    "B",
                    json!({"queryType": "trace", "node": "n2", "connId": 21, "ts": "soon"}),
                ),
            ],
        )
        .await;
    let ms = |us: i64| (t0 + us * 1_000) as f64 / 1e6;
    let spans = |ref_id: &str| {
        assert_eq!(responses[ref_id].error, "", "{ref_id}");
        let frames = support::host::decode_frames(&responses[ref_id]);
        assert_eq!(frames.len(), 1);
        let meta: Value = serde_json::from_str(&frames[0].metadata["meta"]).unwrap();
        assert_eq!(meta["preferredVisualisationType"], "trace");
        let b = &frames[0].batch;
        let parents: Vec<String> = {
            let a = cast(b.column_by_name("parentSpanID").unwrap(), &DataType::Utf8).unwrap();
            a.as_string::<i32>()
                .iter()
                .map(|v| v.unwrap_or("-").to_owned())
                .collect()
        };
        let trace_ids = text(b, "traceID");
        assert!(trace_ids.iter().all(|t| *t == trace_ids[0]));
        (0..b.num_rows())
            .map(|i| {
                (
                    text(b, "spanID")[i].clone(),
                    parents[i].clone(),
                    text(b, "operationName")[i].clone(),
                    text(b, "serviceName")[i].clone(),
                    floats(b, "startTime")[i].unwrap(),
                    floats(b, "duration")[i].unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let span = |id: &str, parent: &str, op: &str, start_us: i64, duration_us: f64| {
        (
            id.to_owned(),
            parent.to_owned(),
            op.to_owned(),
            "n2/api".to_owned(),
            ms(start_us),
            duration_us / 1e3,
        )
    };
    // The server call: its three parts back to back, then what thread 77 and process 7 did
    // inside its 10 ms, in time order.
    assert_eq!(
        spans("S"),
        [
            span("call", "-", "http GET /r21", 0, 10_000.0),
            span("sent", "call", "request sent", 0, 1_000.0),
            span("waiting", "call", "waiting (TTFB)", 1_000, 8_000.0),
            span("download", "call", "content download", 9_000, 1_000.0),
            span("child-0", "call", "dns A redis.local", 1_000, 500.0),
            span("child-1", "call", "http GET /r22", 2_000, 1_500.0),
        ]
    );
    // The first call on a new connection: the handshake just before it.
    assert_eq!(
        spans("C1"),
        [
            span("call", "-", "http GET /r31", 50_000, 250.0),
            span("connect", "call", "connect", 49_700, 300.0),
            span("sent", "call", "request sent", 50_000, 20.0),
            span("waiting", "call", "waiting (TTFB)", 50_020, 200.0),
            span("download", "call", "content download", 50_220, 30.0),
        ]
    );
    // The second: no handshake.
    assert_eq!(spans("C2").len(), 4);
    assert_eq!(
        responses["BC"].error,
        "malformed query JSON: connId must be a connection number, got \"x1\""
    );
    assert_eq!(
        responses["X"].error,
        format!(
            "trace: no call of connection 21 at ts {} on node \"n2\" (its agent may be down, or the call evicted)",
            t0 + 1_000
        )
    );
    assert_eq!(
        responses["B"].error,
        "trace: ts must be the call's start in nanoseconds since the epoch, as a string of \
         digits; got \"soon\""
    );
}

/// The `schema` resource the query editor's completion reads: every table with its time column
/// and columns, as the agents serve them; an unknown resource is a 404 naming what exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_resource_lists_every_table_and_column() {
    let host = GrafanaHost::start();
    let (code, body) = host.call_resource(&["127.0.0.1:1"], "schema").await;
    assert_eq!(code, 200);
    let tables: Vec<&str> = body["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tables,
        [
            "agent_stats",
            "calls",
            "dns",
            "flows",
            "open_calls",
            "protocol_stats",
            "tcp_events"
        ]
    );
    for table in body["tables"].as_array().unwrap() {
        let name = table["name"].as_str().unwrap();
        let want = schema::by_name(name).unwrap();
        let columns: Vec<(String, String, bool)> = table["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_owned(),
                    c["type"].as_str().unwrap().to_owned(),
                    c["nullable"].as_bool().unwrap(),
                )
            })
            .collect();
        let expected: Vec<(String, String, bool)> = want
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().to_string(), f.is_nullable()))
            .collect();
        assert_eq!(columns, expected, "{name}");
        assert_eq!(
            table["timeColumn"].as_str(),
            schema::time_column(name),
            "{name}"
        );
    }
    // A few columns, spelled out: the ground truth is the agents' schema, not this test.
    let calls = &body["tables"][1]["columns"];
    assert_eq!(
        calls[0],
        json!({"name": "ts", "type": "Timestamp(ns, \"UTC\")", "nullable": false})
    );
    assert_eq!(body["tables"][3]["timeColumn"], "end_ts");
    assert_eq!(body["functions"][0]["name"], "dns_domains");
    assert_eq!(body["macros"][0], "$__timeFilter(col)");

    let (code, body) = host.call_resource(&["127.0.0.1:1"], "tables").await;
    assert_eq!(code, 404);
    assert_eq!(
        body,
        json!({"error": "no resource \"tables\" (this datasource serves: schema)"})
    );
}
