//! The provisioned alert rules (provisioning/alerting/kindling.json).
//!
//! No Grafana server can run here, so the file is checked against what Grafana's alerting file
//! provisioning requires (pkg/services/provisioning/alerting: a group's name, folder and an
//! interval that is a positive multiple of the scheduler's 10 s; a rule's uid, title, data and
//! a condition among its refIds; durations, no-data and error states Grafana knows; datasource
//! uids that exist), and each rule's query is sent through the plugin protocol the way the
//! alert engine sends it (its `FromAlert` header, the rule's relative time range). The answer
//! must be what Grafana's server-side expressions read as one number per label set: no time
//! field, one numeric field, text fields as labels. The rule's threshold (condition C) is then
//! applied to those numbers, as Grafana's `threshold` expression does, against fixture agents
//! whose rows hold one fault per rule beside clean traffic: the exact label sets that fire.

use kindling_testkit as support;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
    path::Path,
    sync::{Arc, atomic::Ordering},
};

use datafusion::arrow::{
    array::{Array, AsArray},
    compute::cast,
    datatypes::{DataType, Float64Type},
};
use kindling_agent::{
    counters::PipelineCounters,
    records::{
        CallRecord, DnsRecord, Endpoints, FlowHealth, FlowRecord, Owner, Role, TcpEventRecord,
        TcpEventType,
        builders::{CallsBuilder, DnsBuilder, FlowsBuilder, TcpEventsBuilder},
    },
    store::{Store, StoreConfig},
};
use kindling_wire::schema;
use serde_json::{Value, json};
use support::{
    ServeOptions, fixture_call, fixture_flow,
    host::{Datasource, GrafanaHost, decode_frames},
    serve_with,
};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn rules_file() -> Value {
    let path = repo().join("provisioning/alerting/kindling.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The uids of the provisioned datasources (`uid:` lines of provisioning/datasources/*.yaml).
fn datasource_uids() -> Vec<String> {
    let text =
        std::fs::read_to_string(repo().join("provisioning/datasources/kindling.yaml")).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("uid:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .collect()
}

/// The titles of the provisioned dashboards.
fn dashboard_titles() -> Vec<String> {
    std::fs::read_dir(repo().join("provisioning/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let board: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            board["title"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// A Prometheus-style duration (`1m`, `1h30m`, `90s`) in milliseconds, as Grafana parses a
/// group's interval and a rule's `for`.
fn duration_ms(text: &str) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    let mut total = 0u64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms = match &rest[..unit] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        total += n * ms;
        rest = &rest[unit..];
    }
    Some(total)
}

/// What Grafana would refuse in an alert provisioning file, and what Kindling's rules promise
/// (a summary, a description naming a dashboard), one message each; empty when nothing.
fn problems(file: &Value, datasources: &[String], dashboards: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    if file["apiVersion"] != 1 {
        out.push(format!("apiVersion {} is not 1", file["apiVersion"]));
    }
    let mut uids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for group in file["groups"].as_array().into_iter().flatten() {
        let name = text(&group["name"]);
        if name.trim().is_empty() {
            out.push("a rule group has no name".into());
        }
        let folder = text(&group["folder"]);
        if folder.trim().is_empty() {
            out.push(format!("group {name}: no folder"));
        }
        match duration_ms(&text(&group["interval"])) {
            None => out.push(format!(
                "group {name}: interval {} is no duration",
                group["interval"]
            )),
            Some(ms) if ms == 0 || ms % 10_000 != 0 => out.push(format!(
                "group {name}: interval {} is not a positive multiple of 10s",
                group["interval"]
            )),
            Some(_) => {}
        }
        for rule in group["rules"].as_array().into_iter().flatten() {
            let uid = text(&rule["uid"]);
            let title = text(&rule["title"]);
            let what = format!("rule {uid:?}");
            let uid_ok = !uid.is_empty()
                && uid.len() <= 40
                && uid
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !uid_ok {
                out.push(format!("{what}: not a valid uid"));
            }
            if !uids.insert(uid.clone()) {
                out.push(format!("{what}: uid used twice"));
            }
            if title.is_empty() || title.len() > 190 || !titles.insert((folder.clone(), title)) {
                out.push(format!("{what}: no title, or one used twice in its folder"));
            }
            let data = rule["data"].as_array().cloned().unwrap_or_default();
            if data.is_empty() {
                out.push(format!("{what}: no data"));
            }
            let ref_ids: Vec<String> = data.iter().map(|d| text(&d["refId"])).collect();
            if ref_ids.iter().collect::<BTreeSet<_>>().len() != ref_ids.len() {
                out.push(format!("{what}: refIds used twice"));
            }
            if !ref_ids.contains(&text(&rule["condition"])) {
                out.push(format!(
                    "{what}: condition {} is none of its refIds",
                    rule["condition"]
                ));
            }
            for d in &data {
                let ds = text(&d["datasourceUid"]);
                let expression = ds == "__expr__" || ds == "-100";
                if !expression && !datasources.contains(&ds) {
                    out.push(format!("{what}: unknown datasource uid {ds:?}"));
                }
                if d["model"]["refId"] != d["refId"] {
                    out.push(format!("{what}: model refId is not {}", d["refId"]));
                }
                let range = &d["relativeTimeRange"];
                if !expression && range["from"].as_u64() <= range["to"].as_u64() {
                    out.push(format!("{what}: relativeTimeRange {range} is empty"));
                }
                if expression {
                    if !ref_ids.contains(&text(&d["model"]["expression"])) {
                        out.push(format!("{what}: its expression reads no refId of the rule"));
                    }
                    let evaluator = &d["model"]["conditions"][0]["evaluator"];
                    let known = ["gt", "lt", "within_range", "outside_range"];
                    if d["model"]["type"] != "threshold"
                        || !known.contains(&evaluator["type"].as_str().unwrap_or(""))
                        || !evaluator["params"][0].is_number()
                    {
                        out.push(format!("{what}: not a threshold Grafana evaluates"));
                    }
                }
            }
            if duration_ms(&text(&rule["for"])).is_none() {
                out.push(format!("{what}: for {} is no duration", rule["for"]));
            }
            if !["Alerting", "NoData", "OK", "KeepLast"]
                .contains(&text(&rule["noDataState"]).as_str())
            {
                out.push(format!("{what}: noDataState {}", rule["noDataState"]));
            }
            if !["Alerting", "Error", "OK", "KeepLast"]
                .contains(&text(&rule["execErrState"]).as_str())
            {
                out.push(format!("{what}: execErrState {}", rule["execErrState"]));
            }
            let description = text(&rule["annotations"]["description"]);
            if text(&rule["annotations"]["summary"]).is_empty()
                || !dashboards.iter().any(|d| description.contains(d.as_str()))
            {
                out.push(format!(
                    "{what}: no summary, or a description naming no dashboard"
                ));
            }
        }
    }
    out
}

#[test]
fn the_alert_rules_are_a_file_grafana_provisions() {
    let file = rules_file();
    let (datasources, dashboards) = (datasource_uids(), dashboard_titles());
    assert_eq!(datasources, ["kindling"]);
    assert_eq!(
        problems(&file, &datasources, &dashboards),
        Vec::<String>::new()
    );
    let groups: Vec<(&str, usize)> = file["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap(),
                g["rules"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("kindling-calls", 2),
            ("kindling-dns", 1),
            ("kindling-tcp", 3),
            ("kindling-agents", 3)
        ]
    );

    // What Grafana would refuse is found, one message each.
    let broken = |change: &dyn Fn(&mut Value)| {
        let mut f = rules_file();
        change(&mut f);
        problems(&f, &datasources, &dashboards)
    };
    let rule = "rule \"kindling-call-error-ratio\"";
    assert_eq!(
        broken(&|f| f["groups"][0]["rules"][0]["data"][0]["datasourceUid"] = json!("prometheus")),
        [format!("{rule}: unknown datasource uid \"prometheus\"")]
    );
    assert_eq!(
        broken(&|f| f["groups"][0]["interval"] = json!("90x")),
        ["group kindling-calls: interval \"90x\" is no duration"]
    );
    assert_eq!(
        broken(&|f| f["groups"][0]["interval"] = json!("15s")),
        ["group kindling-calls: interval \"15s\" is not a positive multiple of 10s"]
    );
    assert_eq!(
        broken(&|f| f["groups"][0]["rules"][0]["condition"] = json!("B")),
        [format!("{rule}: condition \"B\" is none of its refIds")]
    );
    assert_eq!(
        broken(&|f| f["groups"][0]["rules"][1]["uid"] = json!("kindling-call-error-ratio")),
        [format!("{rule}: uid used twice")]
    );
    assert_eq!(
        broken(&|f| f["groups"][0]["rules"][0]["noDataState"] = json!("Ok")),
        [format!("{rule}: noDataState \"Ok\"")]
    );
}

const NOW_MINUS_MIN: i64 = 60_000_000_000;

/// A row's process: `comm` as pid 7.
fn owner(comm: &str) -> Owner {
    Owner {
        pid: 7,
        tid: 7,
        comm: comm.into(),
        cgroup_id: 0,
    }
}

fn ends(dst: [u8; 4], dst_port: u16) -> Endpoints {
    Endpoints {
        src_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        src_port: 40_000,
        dst_ip: IpAddr::V4(Ipv4Addr::from(dst)),
        dst_port,
    }
}

/// Node n1's rows, a minute ago: for each rule one fault and, beside it, clean traffic that
/// must not fire.
fn faulty_store(ts: i64) -> Arc<Store> {
    let store = support::empty_store();
    let mut calls = CallsBuilder::new("n1");
    // checkout: 20 calls of 800 ms, 4 of them 500s (error ratio 0.2, p99 800 ms); cart: 20
    // calls of 10 ms, none failed.
    for (comm, resource, ms, errors) in [("checkout", "/pay", 800, 4), ("cart", "/cart", 10, 0)] {
        for i in 0..20u64 {
            let status = if i < errors { "500" } else { "200" };
            calls.append(&CallRecord {
                ts_ns: ts + i as i64,
                protocol: "http",
                role: Role::Server,
                method: "GET".into(),
                resource: resource.to_owned(),
                status: status.into(),
                is_error: status == "500",
                request_sent_ns: 0,
                waiting_ttfb_ns: ms * 1_000_000,
                content_download_ns: 0,
                owner: owner(comm),
                endpoints: ends([10, 0, 0, 2], 8080),
                conn_id: i,
                ..fixture_call(1)
            });
        }
    }
    store
        .append(schema::CALLS, calls.finish().unwrap())
        .unwrap();

    // resolver-bad: 5 NXDOMAIN and 5 answers (0.5 failed), beside 10 search-list NXDOMAINs
    // that do not count; resolver-ok: 10 answers.
    let mut dns = DnsBuilder::new("n1");
    let lookup = |comm: &str, rcode: &str, search_expansion: bool| DnsRecord {
        ts_ns: ts,
        domain: "api.example.com".into(),
        qtype: "A".into(),
        rcode: rcode.into(),
        latency_ns: Some(1_000_000),
        answers: String::new(),
        server_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 2, 53)),
        transport: "udp",
        owner: owner(comm),
        client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        search_expansion,
        search_misses: 0,
    };
    for i in 0..10 {
        let rcode = if i < 5 { "NXDOMAIN" } else { "NOERROR" };
        dns.append(&lookup("resolver-bad", rcode, false));
        dns.append(&lookup("resolver-ok", "NXDOMAIN", true));
        dns.append(&lookup("resolver-ok", "NOERROR", false));
    }
    store.append(schema::DNS, dns.finish().unwrap()).unwrap();

    // lossy -> 10.0.9.9:443: 10 connections, 3 retransmitted; steady -> 10.0.9.8:443: 10, none.
    let mut flows = FlowsBuilder::new("n1");
    for (comm, dst, retransmitting) in [("lossy", [10, 0, 9, 9], 3), ("steady", [10, 0, 9, 8], 0)] {
        for i in 0..10u64 {
            flows.append(&FlowRecord {
                start_ts_ns: ts - 1_000_000,
                end_ts_ns: ts,
                conn_id: 100 + i,
                owner: owner(comm),
                role: Role::Client,
                endpoints: ends(dst, 443),
                health: FlowHealth {
                    retransmits: u32::from(i < retransmitting),
                    ..FlowHealth::default()
                },
                ..fixture_flow(1)
            });
        }
    }
    store
        .append(schema::FLOWS, flows.finish().unwrap())
        .unwrap();

    // 6 refused connects to 10.0.9.7:5432 and 2 to 10.0.9.6:5432; 11 NETFILTER_DROP and 3
    // NO_SOCKET drops.
    let mut events = TcpEventsBuilder::new("n1");
    let event = |kind, dst, reason: &str| TcpEventRecord {
        reason: Some(reason.to_owned()),
        ..TcpEventRecord::new(ts, kind, 0, Role::Client, owner("dialer"), ends(dst, 5432))
    };
    for (dst, n) in [([10, 0, 9, 7], 6), ([10, 0, 9, 6], 2)] {
        for _ in 0..n {
            events.append(&event(TcpEventType::ConnectFailed, dst, "refused"));
        }
    }
    for (reason, n) in [("NETFILTER_DROP", 11), ("NO_SOCKET", 3)] {
        for _ in 0..n {
            events.append(&event(TcpEventType::Drop, [10, 0, 9, 5], reason));
        }
    }
    store
        .append(schema::TCP_EVENTS, events.finish().unwrap())
        .unwrap();
    store
}

/// A store holding node n2's rows, whose budget is exactly what they take: `budget_used` 1.
fn full_store(ts: i64) -> Arc<Store> {
    let load = |budget_bytes| {
        let store = Arc::new(Store::new(
            StoreConfig {
                budget_bytes,
                chunk_rows: 1024,
                ..StoreConfig::default()
            },
            schema::STORED_TABLES.map(|t| (t.to_owned(), schema::stored(t).unwrap())),
        ));
        let mut flows = FlowsBuilder::new("n2");
        for i in 0..100 {
            flows.append(&FlowRecord {
                start_ts_ns: ts - 1_000_000,
                end_ts_ns: ts,
                conn_id: i,
                owner: owner("steady"),
                role: Role::Client,
                endpoints: ends([10, 0, 9, 4], 443),
                health: FlowHealth::default(),
                ..fixture_flow(1)
            });
        }
        store
            .append(schema::FLOWS, flows.finish().unwrap())
            .unwrap();
        store
    };
    let held: u64 = load(u64::MAX).stats().values().map(|s| s.bytes_held).sum();
    let store = load(held);
    let stats = store.stats();
    assert_eq!(stats.values().map(|s| s.bytes_held).sum::<u64>(), held);
    assert_eq!(stats.values().map(|s| s.rows_evicted).sum::<u64>(), 0);
    store
}

/// The frame `query` (a rule's data query) answers, sent as the alert engine sends it: over
/// the rule's relative time range, up to now.
async fn rule_answer(
    host: &GrafanaHost,
    ds: &Datasource,
    query: &Value,
) -> datafusion::arrow::record_batch::RecordBatch {
    let from_s = query["relativeTimeRange"]["from"].as_i64().unwrap();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let responses = host
        .query_alert(
            ds,
            &[("A", query["model"].clone())],
            now_ms - from_s * 1000,
            now_ms,
        )
        .await;
    assert_eq!(responses["A"].error, "", "{query}");
    let frames = decode_frames(&responses["A"]);
    assert_eq!(frames.len(), 1, "{query}");
    frames[0].batch.clone()
}

/// The label sets (text fields, `name=value` joined by `,`) whose number the rule's threshold
/// holds for; the frame must be one number per label set.
fn firing(frame: &datafusion::arrow::record_batch::RecordBatch, threshold: &Value) -> Vec<String> {
    let schema = frame.schema();
    let numbers: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| schema.field(i).data_type().is_numeric())
        .collect();
    let texts: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| schema.field(i).data_type() == &DataType::Utf8)
        .collect();
    assert_eq!(numbers.len(), 1, "{schema:?}");
    assert_eq!(
        numbers.len() + texts.len(),
        schema.fields().len(),
        "{schema:?}"
    );
    let values = cast(frame.column(numbers[0]), &DataType::Float64).unwrap();
    let values = values.as_primitive::<Float64Type>();
    let evaluator = &threshold["conditions"][0]["evaluator"];
    let limit = evaluator["params"][0].as_f64().unwrap();
    let mut out = Vec::new();
    for row in 0..frame.num_rows() {
        assert!(values.is_valid(row), "a null number in {frame:?}");
        let v = values.value(row);
        let fires = match evaluator["type"].as_str().unwrap() {
            "gt" => v > limit,
            "lt" => v < limit,
            other => panic!("evaluator {other}"),
        };
        if fires {
            let labels: Vec<String> = texts
                .iter()
                .map(|&i| {
                    let value = frame.column(i).as_string::<i32>().value(row);
                    format!("{}={value}", schema.field(i).name())
                })
                .collect();
            out.push(labels.join(","));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_answers_numbers_and_fires_on_its_fault_only() {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let ts = now - NOW_MINUS_MIN;
    // n1 (cluster east) holds the faults; n2 (east) is clean but for a full budget and dropped
    // events; a third configured agent is down.
    let dropping = Arc::new(PipelineCounters::default());
    dropping.events_received.store(1_000, Ordering::Relaxed);
    dropping
        .kernel_data_ringbuf_full
        .store(5, Ordering::Relaxed);
    let in_east = |counters| ServeOptions {
        cluster: "east",
        counters,
        ..ServeOptions::default()
    };
    let n1 = serve_with(faulty_store(ts), "n1", in_east(Arc::default())).await;
    let n2 = serve_with(full_store(ts), "n2", in_east(dropping)).await;
    let down = format!("127.0.0.1:{}", support::host::free_port());
    let ds = Datasource {
        json_data: json!({"clusters": [{"name": "east", "agents": [n1.addr, n2.addr, down]}]}),
        secure_json_data: Default::default(),
    };
    let host = GrafanaHost::start();

    let want: BTreeMap<&str, Vec<String>> = BTreeMap::from([
        (
            "kindling-call-error-ratio",
            vec!["cluster=east,service=n1/checkout,protocol=http".to_owned()],
        ),
        (
            "kindling-endpoint-p99",
            vec!["cluster=east,service=n1/checkout,protocol=http,endpoint=GET /pay".to_owned()],
        ),
        (
            "kindling-dns-failure-ratio",
            vec!["cluster=east,workload=n1/resolver-bad".to_owned()],
        ),
        (
            "kindling-tcp-retransmitting-share",
            vec!["cluster=east,source=n1/lossy,target=10.0.9.9:443".to_owned()],
        ),
        (
            "kindling-tcp-connect-failures",
            vec!["cluster=east,source=n1/dialer,target=10.0.9.7:5432".to_owned()],
        ),
        (
            "kindling-kernel-drops",
            vec!["cluster=east,node=n1,reason=NETFILTER_DROP".to_owned()],
        ),
        (
            "kindling-agent-not-answering",
            vec![format!("cluster=east,agent=east/{down}")],
        ),
        (
            "kindling-agent-events-dropped",
            vec!["cluster=east,node=n2".to_owned()],
        ),
        (
            "kindling-agent-memory-budget",
            vec!["cluster=east,node=n2".to_owned()],
        ),
    ]);
    let (clean, _) = support::two_fixture_agents_in("east", "east").await;
    let clean_ds = Datasource::agents(&[&clean.addr]);
    let file = rules_file();
    let mut checked = 0;
    for rule in file["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
    {
        let uid = rule["uid"].as_str().unwrap();
        let (query, threshold) = (&rule["data"][0], &rule["data"][1]["model"]);
        let answer = rule_answer(&host, &ds, query).await;
        assert_eq!(firing(&answer, threshold), want[uid], "{uid}");
        // Clean traffic only (fixture rows of 2023, none in the rule's range, and healthy
        // agents): nothing fires, and an empty answer is no error.
        let answer = rule_answer(&host, &clean_ds, query).await;
        assert_eq!(firing(&answer, threshold), Vec::<String>::new(), "{uid}");
        checked += 1;
    }
    assert_eq!(checked, want.len());
    drop((n1, n2, clean));
}
