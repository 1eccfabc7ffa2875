//! Every query of every provisioned dashboard (provisioning/dashboards/*.json) runs through
//! Grafana host emulation against two fixture agents, with the dashboard's variables set the way
//! Grafana would set them: empty (all) and to one node. No dashboard ships a broken query, and
//! each panel answers the frames its visualisation needs.

use kindling_testkit as support;

use std::path::Path;

use kindling_agent::records::{CallRecord, builders::CallsBuilder};
use kindling_wire::schema;
use serde_json::Value;
use support::{
    EPOCH_S, fixture_call,
    host::{Datasource, GrafanaHost, decode_frames},
    two_fixture_agents, two_fixture_agents_in,
};

/// Grafana's template interpolation of the dashboards' variables, each with its values: `$name`
/// as the values comma-separated (a textbox's one value; the frontend sends a multi-value
/// variable in a builder field as `csv`), `${name:sqlstring}` as a list of SQL strings.
fn interpolate(value: &Value, vars: &[(&str, &[&str])]) -> Value {
    match value {
        Value::String(s) => {
            let mut s = s.clone();
            for (name, values) in vars {
                let quoted: Vec<String> = values
                    .iter()
                    .map(|v| format!("'{}'", v.replace('\'', "''")))
                    .collect();
                s = s.replace(&format!("${{{name}:sqlstring}}"), &quoted.join(","));
                s = s.replace(&format!("${name}"), &values.join(","));
            }
            Value::String(s)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), interpolate(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../provisioning/dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let dashboard = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, dashboard)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provisioned_dashboard_query_answers() {
    let boards = dashboards();
    let names: Vec<&str> = boards.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "agents.json",
            "calls.json",
            "dns.json",
            "service-map.json",
            "tcp.json"
        ]
    );
    // n1 in cluster east, n2 in west.
    let (n1, n2) = two_fixture_agents_in("east", "west").await;
    // The fixture has no gRPC calls: three on n1 for the gRPC panel, two answered OK and one
    // NOT_FOUND, each with fixture call 1's sizes and timing.
    let mut grpc = CallsBuilder::new("n1");
    for (i, status) in ["OK", "NOT_FOUND", "OK"].into_iter().enumerate() {
        grpc.append(&CallRecord {
            ts_ns: (EPOCH_S + 50 + i as i64) * 1_000_000_000,
            protocol: "grpc",
            method: "POST".into(),
            resource: "/kindling.test.Echo/Say".into(),
            status: status.into(),
            is_error: status != "OK",
            ..fixture_call(1)
        });
    }
    n1.store
        .append(schema::CALLS, grpc.finish().unwrap())
        .unwrap();
    let ds = Datasource::agents(&[&n1.addr, &n2.addr]);
    let host = GrafanaHost::start();
    // The fixture's rows lie in the 200 s after EPOCH_S.
    let (from_ms, to_ms) = (EPOCH_S * 1000, (EPOCH_S + 200) * 1000);
    let mut checked = 0;
    for (name, board) in &boards {
        assert_eq!(board["templating"]["list"][0]["name"], "node", "{name}");
        // `$cluster`: every cluster the agents report, several at once, all by default.
        let cluster = &board["templating"]["list"][1];
        assert_eq!(
            (&cluster["name"], &cluster["multi"], &cluster["includeAll"]),
            (
                &Value::from("cluster"),
                &Value::from(true),
                &Value::from(true)
            ),
            "{name}"
        );
        let responses = host
            .query_range(&ds, &[("V", cluster["query"].clone())], from_ms, to_ms)
            .await;
        let values = support::rows(&[decode_frames(&responses["V"])[0].batch.clone()]);
        assert_eq!(values, [["east"], ["west"]], "{name}");
        for panel in board["panels"].as_array().unwrap() {
            let kind = panel["type"].as_str().unwrap();
            assert_eq!(panel["datasource"]["uid"], "kindling", "{name}");
            for target in panel["targets"].as_array().unwrap() {
                // All (every node, both clusters), and n1 with its cluster.
                let every: &[&str] = &["east", "west"];
                for (node, clusters) in [("", every), ("n1", &["east"])] {
                    let vars = [
                        ("node", &[node][..]),
                        ("protocol", &[""]),
                        ("cluster", clusters),
                    ];
                    let query = interpolate(target, &vars);
                    let what = format!("{name} / {} (node {node:?})", panel["title"]);
                    let text = query.to_string();
                    for var in ["$node", "$cluster", "${cluster"] {
                        assert!(!text.contains(var), "{what}: {var}");
                    }
                    let responses = host.query_range(&ds, &[("A", query)], from_ms, to_ms).await;
                    let response = &responses["A"];
                    assert_eq!(response.error, "", "{what}");
                    let frames = decode_frames(response);
                    let rows: usize = frames.iter().map(|f| f.batch.num_rows()).sum();
                    match kind {
                        "nodeGraph" => {
                            let names: Vec<_> =
                                frames.iter().map(|f| f.metadata["name"].clone()).collect();
                            assert_eq!(names, ["nodes", "edges"], "{what}");
                        }
                        "timeseries" => {
                            for f in &frames {
                                let time = f.batch.schema().fields().iter().any(|field| {
                                    matches!(
                                        field.data_type(),
                                        datafusion::arrow::datatypes::DataType::Timestamp(..)
                                    )
                                });
                                assert!(time, "{what}: a frame without a time field");
                            }
                        }
                        _ => assert_eq!(kind, "table", "{what}"),
                    }
                    if panel["title"] == "gRPC methods" {
                        // method, status, calls; p50 = p95 = p99 = 1.011 ms (1 µs + 1 ms +
                        // 10 µs); request and response bytes: 101 and 1000 per call.
                        let got = support::rows(&[frames[0].batch.clone()]);
                        let say = "/kindling.test.Echo/Say";
                        assert_eq!(
                            got,
                            [
                                [say, "OK", "2", "1.011", "1.011", "1.011", "202", "2000"],
                                [
                                    say,
                                    "NOT_FOUND",
                                    "1",
                                    "1.011",
                                    "1.011",
                                    "1.011",
                                    "101",
                                    "1000"
                                ],
                            ],
                            "{what}"
                        );
                    }
                    // The fixture has calls, DNS lookups, flows (some with retransmits) and
                    // agents on both nodes, but no tcp_events other than state changes.
                    let empty_in_fixture = ["Problems per interval", "Drops by reason"];
                    if !empty_in_fixture.contains(&panel["title"].as_str().unwrap()) {
                        assert!(rows > 0, "{what}: no rows");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 2 * 19);

    // One cluster: only its agents' rows.
    let agents = &boards[0].1["panels"][0];
    assert_eq!(agents["title"], "Agents");
    let query = interpolate(
        &agents["targets"][0],
        &[("node", &[""]), ("cluster", &["west"])],
    );
    let responses = host.query_range(&ds, &[("A", query)], from_ms, to_ms).await;
    let rows = support::rows(&[decode_frames(&responses["A"])[0].batch.clone()]);
    let ends: Vec<&[String]> = rows.iter().map(|r| &r[..2]).collect();
    assert_eq!(ends, [["n2".to_owned(), "west".to_owned()]]);
}

/// Every view of the query editor's builders (`calls`, `dns`, `tcp`), as the editor saves them
/// (tests/fixtures/builder_queries.json, which the frontend's Jest test keeps identical to what
/// the builders generate), for every node and with a `$node` variable set to one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_builder_view_answers() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/builder_queries.json");
    let queries: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(queries.len(), 26);
    let (n1, n2) = two_fixture_agents_in("east", "west").await;
    let ds = Datasource::agents(&[&n1.addr, &n2.addr]);
    let host = GrafanaHost::start();
    let (from_ms, to_ms) = (EPOCH_S * 1000, (EPOCH_S + 200) * 1000);
    for query in &queries {
        let query = interpolate(query, &[("node", &["n2"]), ("cluster", &["west"])]);
        let what = format!(
            "{} / {}: {}",
            query["queryType"], query["view"], query["rawSql"]
        );
        let responses = host
            .query_range(&ds, &[("A", query.clone())], from_ms, to_ms)
            .await;
        assert_eq!(responses["A"].error, "", "{what}");
        let frames = decode_frames(&responses["A"]);
        let rows: usize = frames.iter().map(|f| f.batch.num_rows()).sum();
        // As for the dashboards: the fixture has no tcp_events but state changes.
        let empty_in_fixture = ["problems", "drops"].contains(&query["view"].as_str().unwrap());
        assert_eq!(rows == 0, empty_in_fixture, "{what}: {rows} rows");
    }
}

/// The Explore drilldown links' queries (tests/fixtures/drilldown_queries.json, kept identical to
/// the frontend's links by its Jest test), filled in with the values of fixture connection 2 as
/// Grafana fills in a clicked row: each answers, with rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_drilldown_link_answers() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/drilldown_queries.json");
    let queries: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let titles: Vec<&str> = queries
        .iter()
        .map(|q| q["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Trace of this call",
            "Lookups of this domain",
            "TCP events of this connection",
            "Calls of this node",
            "Calls on this edge"
        ]
    );
    let (n1, n2) = two_fixture_agents().await;
    let ds = Datasource::agents(&[&n1.addr, &n2.addr]);
    let host = GrafanaHost::start();
    let (from_ms, to_ms) = (EPOCH_S * 1000, (EPOCH_S + 200) * 1000);
    for query in &queries {
        let what = format!("{}: {query}", query["title"]);
        let responses = host
            .query_range(&ds, &[("A", query.clone())], from_ms, to_ms)
            .await;
        assert_eq!(responses["A"].error, "", "{what}");
        let rows: usize = decode_frames(&responses["A"])
            .iter()
            .map(|f| f.batch.num_rows())
            .sum();
        assert!(rows > 0, "{what}: no rows");
    }
}
