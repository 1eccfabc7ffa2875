//! `kindling dump` writes every table of every agent to Parquet, and `kindling-agent --replay`
//! serves such a dump: the replayed agent answers exactly what the agents that were dumped did.

use kindling_testkit as support;

use kindling_plugin_backend::{EngineLimits, QueryEngine, agents::AgentSet};
use kindling_wire::schema;
use serde_json::Value;
use support::{
    fixture_dns,
    host::{AgentProcess, assert_exit, kindling, output, tempdir},
};

/// Every row of `table` on `agents`, as sorted display strings.
async fn all_rows(agents: &[&str], table: &str) -> Vec<Vec<String>> {
    let set = AgentSet::new(agents.iter().map(|a| (*a).to_owned()).collect());
    let out = QueryEngine::new(set, EngineLimits::default())
        .query(&format!("SELECT * FROM {table}"))
        .await
        .unwrap();
    assert!(out.missing.is_empty(), "{:?}", out.missing);
    let mut rows = support::rows(&out.batches);
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_replayed_answers_exactly_as_the_agents_did() {
    let (a1, a2) = support::two_fixture_agents().await;
    let dir = tempdir("kindling-dump-full");
    let out_dir = dir.to_str().unwrap();
    let out = output(kindling([
        "dump", "--agent", &a1.addr, "--agent", &a2.addr, "--out", out_dir,
    ]))
    .await;
    assert_exit(&out, 0);
    // Fixture connections 1..=10: one call, one flow and two TCP events each.
    let dns_rows: usize = (1..=10).map(|id| fixture_dns(id).len()).sum();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("calls\t10 rows\ndns\t{dns_rows} rows\nflows\t10 rows\ntcp_events\t20 rows\n")
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["agents"], 2);
    assert_eq!(manifest["missing"], serde_json::json!([]));
    assert_eq!(manifest["since"], Value::Null);
    assert_eq!(manifest["tables"]["dns"], dns_rows);
    // The rows can hold personal data: owner-only files, whatever the umask.
    for table in schema::STORED_TABLES {
        let meta = std::fs::metadata(dir.join(format!("{table}.parquet"))).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600,
            "{table}"
        );
    }

    // A replayed agent: no capture, no root; exactly the same rows, node names included.
    let replay = AgentProcess::start("replay", &["--replay", out_dir]);
    for table in schema::STORED_TABLES {
        let want = all_rows(&[&a1.addr, &a2.addr], table).await;
        assert!(!want.is_empty(), "{table}");
        assert_eq!(all_rows(&[&replay.addr], table).await, want, "{table}");
    }
    // Aggregates over it split like over live agents.
    let q = "SELECT node, count(*) AS n FROM flows GROUP BY node ORDER BY node";
    let out = output(kindling([
        "query",
        "--agent",
        &replay.addr,
        "--format",
        "csv",
        q,
    ]))
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "node,n\nn1,6\nn2,4\n");

    // An agent that does not answer: the dump is written, the agent named, exit status 3.
    let dead = format!("127.0.0.1:{}", support::host::free_port());
    let partial = tempdir("kindling-dump-partial");
    let out = output(kindling([
        "dump",
        "--agent",
        &a1.addr,
        "--agent",
        &dead,
        "--out",
        partial.to_str().unwrap(),
    ]))
    .await;
    assert_exit(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "kindling: partial dump: 1 of 2 agents did not answer: agent {dead}: unreachable"
        )),
        "{err}"
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(partial.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["tables"]["flows"], 6);
    assert!(
        manifest["missing"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("agent {dead}: "))
    );

    // --since keeps the rows of the last DURATION: the fixture rows are from 2023.
    let recent = tempdir("kindling-dump-recent");
    let out = output(kindling([
        "dump",
        "--agent",
        &a1.addr,
        "--since",
        "1h",
        "--out",
        recent.to_str().unwrap(),
    ]))
    .await;
    assert_exit(&out, 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "calls\t0 rows\ndns\t0 rows\nflows\t0 rows\ntcp_events\t0 rows\n"
    );
    let out = output(kindling([
        "dump", "--agent", &a1.addr, "--since", "soon", "--out", "/tmp/x",
    ]))
    .await;
    assert_exit(&out, 1);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "kindling: --since `soon` is not a duration (30s, 15m, 1h, 1d)\n"
    );

    drop(replay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_query_is_named_and_the_others_rows_are_exact() {
    // A real agent process (replaying n1's rows) is stopped, queried, and killed while the
    // query waits for it; n2 answers in process.
    let (a1, a2) = support::two_fixture_agents().await;
    let dir = tempdir("kindling-dump-killed");
    let out = output(kindling([
        "dump",
        "--agent",
        &a1.addr,
        "--out",
        dir.to_str().unwrap(),
    ]))
    .await;
    assert_exit(&out, 0);
    let victim = AgentProcess::start("victim", &["--replay", dir.to_str().unwrap()]);
    victim.signal(libc::SIGSTOP);
    let mut set = AgentSet::new(vec![victim.addr.clone(), a2.addr.clone()]);
    set.agent_timeout = std::time::Duration::from_secs(20);
    let engine = QueryEngine::new(set, EngineLimits::default());
    let started = std::time::Instant::now();
    let query = tokio::spawn(async move {
        engine
            .query("SELECT node, count(*) AS n, sum(bytes_sent) AS sent FROM flows GROUP BY node")
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !query.is_finished(),
        "the stopped agent cannot have answered"
    );
    victim.signal(libc::SIGKILL);
    let out = query.await.unwrap().unwrap();
    // Noticed through the broken connection, long before the 20 s agent timeout.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let sent: u64 = (7..=10)
        .map(|id| support::fixture_flow(id).bytes_sent)
        .sum();
    assert_eq!(
        support::rows(&out.batches),
        [["n2".to_owned(), "4".to_owned(), sent.to_string()]]
    );
    assert_eq!(out.missing.len(), 1);
    assert_eq!(out.missing[0].agent, victim.addr);
    assert!(
        out.missing[0].message.starts_with("unreachable: "),
        "{:?}",
        out.missing
    );
    drop(victim);
}

/// Agents of two clusters (`--cluster-name`) replaying the same dump, as one datasource with
/// `clusters` through the plugin: each cluster's rows counted exactly, the dashboards'
/// `$cluster` values listed; with one cluster's agents stopped, the other's rows with a notice
/// that names the cluster, not a failed panel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_of_two_clusters_answer_as_one_datasource() {
    use support::host::{Datasource, GrafanaHost, decode_frames};
    let (a1, a2) = support::two_fixture_agents().await;
    let dir = tempdir("kindling-dump-clusters");
    let out_dir = dir.to_str().unwrap();
    let out = output(kindling([
        "dump", "--agent", &a1.addr, "--agent", &a2.addr, "--out", out_dir,
    ]))
    .await;
    assert_exit(&out, 0);
    let replay = |cluster: &str| {
        AgentProcess::start("replay", &["--replay", out_dir, "--cluster-name", cluster])
    };
    let east = replay("east");
    let west = [replay("west"), replay("west")];
    // A name the service map could not tell from its separators is refused at start.
    let bad = output(support::host::agent_command([
        "--replay",
        out_dir,
        "--cluster-name",
        "prod/eu",
    ]))
    .await;
    assert_exit(&bad, 2);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains(
            "`prod/eu` is not a cluster name: at most 63 letters, digits, `.`, `_` or `-`"
        ),
        "{bad:?}"
    );

    let host = GrafanaHost::start();
    let ds = Datasource {
        json_data: serde_json::json!({"clusters": [
            {"name": "east", "agents": [east.addr]},
            {"name": "west", "agents": [west[0].addr, west[1].addr]},
        ]}),
        secure_json_data: Default::default(),
    };
    let queries = [
        (
            "A",
            serde_json::json!({"refId": "A", "format": "table", "rawSql":
                "SELECT cluster, count(*) AS calls FROM calls GROUP BY cluster ORDER BY cluster"}),
        ),
        (
            "V",
            serde_json::json!({"refId": "V", "format": "table", "rawSql":
                "SELECT DISTINCT cluster FROM agent_stats ORDER BY cluster"}),
        ),
    ];
    let responses = host.query_datasource(&ds, &queries).await;
    // Fixture connections 1..=10: one call each, per replaying agent.
    let rows = |r: &str| support::rows(&[decode_frames(&responses[r])[0].batch.clone()]);
    assert_eq!(rows("A"), [["east", "10"], ["west", "20"]]);
    assert_eq!(rows("V"), [["east"], ["west"]]);

    drop(west);
    let responses = host.query_datasource(&ds, &queries[..1]).await;
    assert_eq!(responses["A"].error, "");
    let frames = decode_frames(&responses["A"]);
    assert_eq!(support::rows(&[frames[0].batch.clone()]), [["east", "10"]]);
    let meta: Value = serde_json::from_str(&frames[0].metadata["meta"]).unwrap();
    let notice = meta["notices"][0]["text"].as_str().unwrap();
    assert!(
        notice.starts_with(
            "partial result: cluster west did not answer (none of its 2 agents); \
             2 of 3 agents did not answer: agent west/127.0.0.1:"
        ),
        "{notice}"
    );
    drop(east);
}
