//! Fan-out over many agents: partial results when agents are down, stalled or break off
//! mid-answer; DNS names that stand for several agents; bearer tokens; memory limits. Agents
//! are in-process fixture stores served over Flight (support::serve_with); each holds its own
//! slice of fixture rows, so the exact answer of every subset of agents is known.

use kindling_testkit as support;

use std::{collections::BTreeMap, time::Duration};

use kindling_agent::query::QueryLimits;
use kindling_plugin_backend::{
    EngineLimits, Error, QueryEngine, QueryOutput, agents::AgentSet, error::FailureKind,
};
use serde_json::{Value, json};
use support::{
    InProcessAgent, ServeOptions, empty_store, fixture_call, fixture_flow,
    host::{assert_exit, kindling, output, tempdir},
    load_fixture, serve_with,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// An agent holding fixture connections `ids`.
async fn agent(
    node: &str,
    ids: std::ops::RangeInclusive<u64>,
    options: ServeOptions<'_>,
) -> InProcessAgent {
    let store = empty_store();
    load_fixture(&store, node, ids);
    serve_with(store, node, options).await
}

/// A port that accepts connections and never says anything: a hung agent.
async fn stalled() -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    (addr, task)
}

/// A proxy to `target` that passes the first `bytes` of each answer and then closes the
/// connection: an agent that dies mid-answer.
async fn cut_after(target: String, bytes: usize) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = TcpStream::connect(&target).await.unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut up_read, mut up_write) = upstream.into_split();
            let requests = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut up_write).await;
            });
            tokio::spawn(async move {
                let mut passed = 0;
                let mut buf = vec![0; 4096];
                while passed < bytes {
                    let n = match up_read.read(&mut buf[..(bytes - passed).min(4096)]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    passed += n;
                }
                // Both directions close: the coordinator sees the connection die.
                requests.abort();
            });
        }
    });
    (addr, task)
}

fn engine(agents: &[&str], agent_timeout: Duration) -> QueryEngine {
    let mut set = AgentSet::new(agents.iter().map(|a| (*a).to_owned()).collect());
    set.agent_timeout = agent_timeout;
    QueryEngine::new(set, EngineLimits::default())
}

/// Calls per resource and their summed bytes over fixture connections `ids`: the ground truth.
fn calls_by_resource(ids: impl IntoIterator<Item = u64>) -> Vec<Vec<String>> {
    let mut by: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for id in ids {
        let c = fixture_call(id);
        let e = by.entry(c.resource).or_default();
        e.0 += 1;
        e.1 += c.response_bytes;
    }
    by.into_iter()
        .map(|(r, (n, b))| vec![r, n.to_string(), b.to_string()])
        .collect()
}

const CALLS_BY_RESOURCE: &str = "SELECT resource, count(*) AS calls, sum(response_bytes) AS bytes \
     FROM calls GROUP BY resource ORDER BY resource";

fn missing_names(out: &QueryOutput) -> Vec<String> {
    out.missing.iter().map(|m| m.agent.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_down_stalled_or_cut_off_leave_an_exact_partial_result_naming_them() {
    let a1 = agent("n1", 1..=4, ServeOptions::default()).await;
    let a2 = agent("n2", 5..=8, ServeOptions::default()).await;
    // n3's answer is large (2000 calls in 4-row batches), so a cut at 16 KiB falls inside it.
    let a3 = agent("n3", 1001..=3000, ServeOptions::default()).await;
    let dead = format!("127.0.0.1:{}", support::host::free_port());
    let (hung, hung_task) = stalled().await;
    let (cut, cut_task) = cut_after(a3.addr.clone(), 16 << 10).await;

    // Rows, not groups, so that n3's answer is long enough to be cut. n3 answers in full when
    // reached directly: the cut is what loses its rows.
    let rows_sql = "SELECT conn_id, resource FROM calls ORDER BY conn_id";
    let rows_of = |ids: std::ops::RangeInclusive<u64>| -> Vec<Vec<String>> {
        ids.map(|id| vec![id.to_string(), fixture_call(id).resource])
            .collect()
    };
    let direct = engine(&[&a3.addr], Duration::from_secs(10))
        .query(rows_sql)
        .await
        .unwrap();
    assert_eq!(support::rows(&direct.batches), rows_of(1001..=3000));
    assert!(direct.missing.is_empty());

    let all = [a1.addr.as_str(), a2.addr.as_str(), &dead, &hung, &cut];
    let started = std::time::Instant::now();
    let out = engine(&all, Duration::from_secs(1))
        .query(rows_sql)
        .await
        .unwrap();
    // The stalled agent costs its timeout, not the query's 30 s.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(support::rows(&out.batches), rows_of(1..=8));
    assert_eq!(out.agents, 5);
    let mut want = vec![dead.clone(), hung.clone(), cut.clone()];
    want.sort();
    assert_eq!(missing_names(&out), want);
    let why: BTreeMap<&str, &str> = out
        .missing
        .iter()
        .map(|m| (m.agent.as_str(), m.message.as_str()))
        .collect();
    assert!(why[dead.as_str()].starts_with("unreachable: "), "{why:?}");
    assert_eq!(why[hung.as_str()], "no answer within 1s");
    assert!(!why[cut.as_str()].is_empty(), "{why:?}");
    assert!(
        out.missing
            .iter()
            .all(|m| m.kind == FailureKind::Unavailable)
    );
    let warning = out.partial_warning().unwrap();
    assert!(
        warning.starts_with("partial result: 3 of 5 agents did not answer: agent "),
        "{warning}"
    );

    // An agent that appears in several scans of one query is named once; a join sees the
    // same slices on both sides.
    let out = engine(&all, Duration::from_secs(1))
        .query(
            "SELECT count(*) AS n, sum(f.bytes_sent) AS sent FROM flows f \
             JOIN calls c ON f.conn_id = c.conn_id AND f.node = c.node",
        )
        .await
        .unwrap();
    let sent: u64 = (1..=8).map(|id| fixture_flow(id).bytes_sent).sum();
    assert_eq!(
        support::rows(&out.batches),
        [["8".to_owned(), sent.to_string()]]
    );
    assert_eq!(missing_names(&out), want);

    // Every agent down: an error that names each, not an empty result.
    let err = engine(&[&dead, &hung], Duration::from_secs(1))
        .query(CALLS_BY_RESOURCE)
        .await
        .unwrap_err();
    let Error::Unavailable(failures) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(failures.len(), 2, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("agent {hung}: no answer within 1s")),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("agent {dead}: unreachable")),
        "{err}"
    );

    // A query that touches no agent needs none.
    let out = engine(&[&dead], Duration::from_secs(1))
        .query("SELECT 1 AS one")
        .await
        .unwrap();
    assert_eq!(support::rows(&out.batches), [["1"]]);
    assert!(out.missing.is_empty());

    hung_task.abort();
    cut_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_bound_queries_every_agent_a_few_at_a_time() {
    let mut agents = Vec::new();
    for i in 0..6u64 {
        agents.push(
            agent(
                &format!("n{i}"),
                (i * 3 + 1)..=(i * 3 + 3),
                ServeOptions::default(),
            )
            .await,
        );
    }
    let addrs: Vec<&str> = agents.iter().map(|a| a.addr.as_str()).collect();
    for fanout in [1, 2, 6] {
        let mut set = AgentSet::new(addrs.iter().map(|a| (*a).to_owned()).collect());
        set.fanout = fanout;
        let out = QueryEngine::new(set, EngineLimits::default())
            .query(CALLS_BY_RESOURCE)
            .await
            .unwrap();
        assert_eq!(
            support::rows(&out.batches),
            calls_by_resource(1..=18),
            "fanout {fanout}"
        );
        assert_eq!((out.agents, out.missing.len()), (6, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limits_fail_the_query_with_a_clear_error() {
    let a1 = agent("n1", 1..=4, ServeOptions::default()).await;
    // An agent whose queries may hold 64 KiB: a sort of 2000 calls does not fit.
    let small = agent(
        "n2",
        1001..=3000,
        ServeOptions {
            limits: QueryLimits {
                memory_bytes: 64 << 10,
                ..QueryLimits::default()
            },
            ..ServeOptions::default()
        },
    )
    .await;
    // A fragment over the agent's limit (sent as any Flight client could) fails with
    // ResourceExhausted, which fails the query rather than leaving the agent out.
    let set = AgentSet::new(vec![small.addr.clone()]);
    let target = kindling_plugin_backend::agents::Agent::at(&small.addr);
    let err = kindling_plugin_backend::agents::fetch_all(
        &target,
        &set,
        "SELECT * FROM calls ORDER BY resource, request_bytes".to_owned(),
        None,
        Default::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, FailureKind::Limit, "{err}");
    assert!(err.message.contains("Resources exhausted"), "{err}");
    // Within the limit, the same agent answers.
    let out = engine(&[&a1.addr, &small.addr], Duration::from_secs(10))
        .query("SELECT count(*) FROM calls")
        .await
        .unwrap();
    assert_eq!(support::rows(&out.batches), [["2004"]]);

    // The coordinator's own limit bounds what it collects from agents.
    let mut set = AgentSet::new(vec![a1.addr.clone(), small.addr.clone()]);
    set.agent_timeout = Duration::from_secs(10);
    let tight = QueryEngine::new(
        set,
        EngineLimits {
            memory_bytes: 64 << 10,
            ..EngineLimits::default()
        },
    );
    let err = tight.query("SELECT * FROM calls").await.unwrap_err();
    let Error::ResourcesExhausted(message) = &err else {
        panic!("{err:?}")
    };
    // Whichever agent's answer crosses the limit first is named.
    let named = [&a1.addr, &small.addr].iter().any(|a| {
        message.starts_with(&format!(
            "agent {a}: Resources exhausted: Failed to allocate"
        ))
    });
    assert!(named && message.contains("for AgentScanExec["), "{message}");

    // Answers are charged at the bytes of their rows: three times what the rows of both agents
    // take is enough. (Charged at `get_array_memory_size`, each Flight message's body counted
    // once per column buffer, it took dozens of times more.)
    let all = engine(&[&a1.addr, &small.addr], Duration::from_secs(10))
        .query("SELECT * FROM calls")
        .await
        .unwrap();
    let size: usize = all
        .batches
        .iter()
        .flat_map(|b| b.columns())
        .map(|c| c.to_data().get_slice_memory_size().unwrap())
        .sum();
    let mut set = AgentSet::new(vec![a1.addr.clone(), small.addr.clone()]);
    set.agent_timeout = Duration::from_secs(10);
    let roomy = QueryEngine::new(
        set,
        EngineLimits {
            memory_bytes: 3 * size,
            ..EngineLimits::default()
        },
    );
    let out = roomy.query("SELECT * FROM calls").await.unwrap();
    let rows: usize = out.batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 2004, "within {} bytes", 3 * size);
}

/// The JSON rows the CLI printed, as (resource, calls, bytes).
fn json_rows(stdout: &[u8]) -> Vec<Vec<String>> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            vec![
                v["resource"].as_str().unwrap().to_owned(),
                v["calls"].to_string(),
                v["bytes"].to_string(),
            ]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_checked_by_agents_and_sent_by_the_engine_cli_and_plugin() {
    let guarded = agent(
        "n1",
        1..=4,
        ServeOptions {
            token: Some("s3cret"),
            ..ServeOptions::default()
        },
    )
    .await;
    let open = agent("n2", 5..=8, ServeOptions::default()).await;
    let both = [guarded.addr.as_str(), open.addr.as_str()];
    let with_token = |token: Option<&str>| {
        let set = AgentSet::new(both.iter().map(|a| (*a).to_owned()).collect())
            .with_token(token.map(str::to_owned));
        QueryEngine::new(set, EngineLimits::default())
    };

    // Right token: every row (an agent without a token ignores it).
    let out = with_token(Some("s3cret"))
        .query(CALLS_BY_RESOURCE)
        .await
        .unwrap();
    assert_eq!(support::rows(&out.batches), calls_by_resource(1..=8));
    assert!(out.missing.is_empty());
    // No token or a wrong one: the guarded agent refuses and is named.
    for (token, why) in [
        (None, "this agent requires a bearer token"),
        (Some("s3cre"), "wrong bearer token"),
    ] {
        let out = with_token(token).query(CALLS_BY_RESOURCE).await.unwrap();
        assert_eq!(support::rows(&out.batches), calls_by_resource(5..=8));
        assert_eq!(out.missing.len(), 1);
        assert_eq!(
            out.missing[0].to_string(),
            format!("agent {}: refused the token: {why}", guarded.addr)
        );
    }

    // The CLI: --token-file; without it, the partial result, the agent named on stderr and
    // exit status 3.
    let dir = tempdir("kindling-token");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let token_path = token_file.to_str().unwrap();
    let query_args = |token: Option<&str>| {
        let mut a = vec!["query".to_owned()];
        for agent in both {
            a.extend(["--agent".to_owned(), agent.to_owned()]);
        }
        if let Some(path) = token {
            a.extend(["--token-file".to_owned(), path.to_owned()]);
        }
        a.extend(["--format", "json", CALLS_BY_RESOURCE].map(str::to_owned));
        a
    };
    let out = output(kindling(query_args(Some(token_path)))).await;
    assert_exit(&out, 0);
    assert_eq!(json_rows(&out.stdout), calls_by_resource(1..=8));
    let out = output(kindling(query_args(None))).await;
    assert_exit(&out, 3);
    assert_eq!(json_rows(&out.stdout), calls_by_resource(5..=8));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "kindling: partial result: 1 of 2 agents did not answer: agent {}: refused the token: this agent requires a bearer token\n",
            guarded.addr
        )
    );
    std::fs::write(&token_file, "\n").unwrap();
    let out = output(kindling(query_args(Some(token_path)))).await;
    assert_exit(&out, 1);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("kindling: the token file {token_path} is empty\n")
    );

    // The plugin: the token from secureJsonData; without it, a frame notice names the agent.
    let host = support::host::GrafanaHost::start();
    let query = [("A", json!({"refId": "A", "rawSql": CALLS_BY_RESOURCE}))];
    let mut ds = support::host::Datasource::agents(&both);
    ds.secure_json_data.insert("token".into(), "s3cret".into());
    let responses = host.query_datasource(&ds, &query).await;
    let frames = support::host::decode_frames(&responses["A"]);
    assert_eq!(
        support::rows(&[frames[0].batch.clone()]),
        calls_by_resource(1..=8)
    );
    let meta: Value = serde_json::from_str(&frames[0].metadata["meta"]).unwrap();
    assert_eq!(meta.get("notices"), None, "{meta}");
    let health = host.check_datasource(&ds).await;
    assert!(
        health.message.starts_with("2 of 2 agents reachable."),
        "{}",
        health.message
    );

    let ds = support::host::Datasource::agents(&both);
    let responses = host.query_datasource(&ds, &query).await;
    assert_eq!(responses["A"].error, "");
    let frames = support::host::decode_frames(&responses["A"]);
    assert_eq!(
        support::rows(&[frames[0].batch.clone()]),
        calls_by_resource(5..=8)
    );
    let meta: Value = serde_json::from_str(&frames[0].metadata["meta"]).unwrap();
    assert_eq!(
        meta["notices"],
        json!([{
            "severity": "warning",
            "text": format!("partial result: 1 of 2 agents did not answer: agent {}: refused the token: this agent requires a bearer token", guarded.addr),
        }])
    );
    let health = host.check_datasource(&ds).await;
    assert!(
        health.message.starts_with("1 of 2 agents reachable.")
            && health
                .message
                .contains(&format!("{}: refused the token", guarded.addr)),
        "{}",
        health.message
    );
    // Only the guarded agent: no partial result to show, a 502 naming it.
    let responses = host
        .query_datasource(&support::host::Datasource::agents(&[&guarded.addr]), &query)
        .await;
    assert_eq!(responses["A"].status, 502);
    assert_eq!(
        responses["A"].error,
        format!(
            "agent {}: refused the token: this agent requires a bearer token",
            guarded.addr
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_name_stands_for_every_agent_it_resolves_to() {
    // The CLI runs in a mount namespace whose /etc/hosts maps one name to two loopback
    // addresses, with an agent on each (a headless Service, without Kubernetes).
    support::host::require_root();
    support::host::tool("unshare");
    let port = support::host::free_port();
    let mut agents = Vec::new();
    for (node, ids, ip) in [("n1", 1..=4, "127.0.0.2"), ("n2", 5..=8, "127.0.0.3")] {
        let options = ServeOptions {
            addr: &format!("{ip}:{port}"),
            ..ServeOptions::default()
        };
        agents.push(agent(node, ids, options).await);
    }
    let dir = tempdir("kindling-hosts");
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n127.0.0.2 agents.kindling.test\n127.0.0.3 agents.kindling.test\n",
    )
    .unwrap();
    let name = format!("agents.kindling.test:{port}");
    let with_hosts = |args: &[&str]| {
        let mut cmd = std::process::Command::new("unshare");
        cmd.args([
            "-m",
            "sh",
            "-c",
            r#"mount --bind "$0" /etc/hosts && exec "$@""#,
        ])
        .arg(&hosts)
        .arg(env!("CARGO_BIN_EXE_kindling"))
        .args(args);
        cmd
    };
    let out = output(with_hosts(&[
        "query",
        "--agent",
        &name,
        "--format",
        "json",
        CALLS_BY_RESOURCE,
    ]))
    .await;
    assert_exit(&out, 0);
    assert_eq!(json_rows(&out.stdout), calls_by_resource(1..=8));

    let out = output(with_hosts(&["health", "--agent", &name])).await;
    assert_exit(&out, 0);
    let report = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<(&str, &str, &str)> = report
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            let who = f.next().unwrap();
            let status = f.next().unwrap();
            let node = f.next().unwrap().split(' ').next().unwrap();
            (who, status, node)
        })
        .collect();
    assert_eq!(
        lines,
        [
            (
                format!("127.0.0.2:{port} ({name})").as_str(),
                "ok",
                "node=n1"
            ),
            (
                format!("127.0.0.3:{port} ({name})").as_str(),
                "ok",
                "node=n2"
            ),
        ]
    );

    // A name that does not resolve is one missing agent, named with why.
    let out = output(with_hosts(&[
        "query",
        "--agent",
        &name,
        "--agent",
        "nope.kindling.test:1",
        "--format",
        "json",
        CALLS_BY_RESOURCE,
    ]))
    .await;
    assert_exit(&out, 3);
    assert_eq!(json_rows(&out.stdout), calls_by_resource(1..=8));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "kindling: partial result: 1 of 3 agents did not answer: agent nope.kindling.test:1: cannot resolve"
        ),
        "{err}"
    );
    drop(agents);
}

/// A CA and an agent certificate for 127.0.0.1 signed by it (PEM files in `dir`), made with
/// openssl; returns (CA PEM, agent certificate PEM, agent key PEM).
fn certificates(dir: &std::path::Path, ca_name: &str) -> (String, Vec<u8>, Vec<u8>) {
    support::host::tool("openssl");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let subject = format!("/CN={ca_name}");
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", &subject,
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "agent.key",
            "-out",
            "agent.csr",
            "-subj",
            "/CN=agent",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "agent.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "agent.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    (
        String::from_utf8(read("ca.pem")).unwrap(),
        read("agent.pem"),
        read("agent.key"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_agents_answer_clients_that_trust_their_ca_only() {
    let dir = tempdir("kindling-tls");
    let (ca, cert, key) = certificates(&dir, "kindling-test-ca");
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (other_ca, _, _) = certificates(&other, "another-ca");
    let secure = agent(
        "n1",
        1..=4,
        ServeOptions {
            tls: Some((cert, key)),
            token: Some("s3cret"),
            ..ServeOptions::default()
        },
    )
    .await;
    let with_tls = |ca: Option<&str>, server_name: Option<&str>| {
        let set = AgentSet::new(vec![secure.addr.clone()])
            .with_token(Some("s3cret".into()))
            .with_tls(ca.map(|ca| kindling_plugin_backend::agents::TlsSettings {
                ca_pem: ca.to_owned(),
                server_name: server_name.map(str::to_owned),
            }));
        QueryEngine::new(set, EngineLimits::default())
    };
    let out = with_tls(Some(&ca), None)
        .query(CALLS_BY_RESOURCE)
        .await
        .unwrap();
    assert_eq!(support::rows(&out.batches), calls_by_resource(1..=4));
    let out = with_tls(Some(&ca), Some("localhost"))
        .query(CALLS_BY_RESOURCE)
        .await
        .unwrap();
    assert_eq!(support::rows(&out.batches), calls_by_resource(1..=4));
    // Another CA, a name the certificate lacks, or plain text: the agent is not reached.
    for (engine, why) in [
        (
            with_tls(Some(&other_ca), None),
            "unreachable: invalid peer certificate: UnknownIssuer",
        ),
        (
            with_tls(Some(&ca), Some("agent.example")),
            "unreachable: invalid peer certificate: certificate not valid for name \"agent.example\"",
        ),
        // Plain text to a TLS port: the agent's TLS layer drops the connection (tonic reports a
        // transport error, a cancelled call or an h2 protocol error, depending on timing).
        (with_tls(None, None), ""),
    ] {
        let err = engine.query(CALLS_BY_RESOURCE).await.unwrap_err();
        let Error::Unavailable(failures) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(failures[0].agent, secure.addr);
        assert!(
            err.to_string()
                .starts_with(&format!("agent {}: {why}", secure.addr)),
            "{why}: {err}"
        );
    }

    // The CLI and the plugin, with CA and token.
    std::fs::write(dir.join("token"), "s3cret").unwrap();
    let mut cmd = kindling([
        "query",
        "--agent",
        &secure.addr,
        "--format",
        "json",
        "--tls-ca",
    ]);
    cmd.arg(dir.join("ca.pem"))
        .arg("--token-file")
        .arg(dir.join("token"))
        .arg(CALLS_BY_RESOURCE);
    let out = output(cmd).await;
    assert_exit(&out, 0);
    assert_eq!(json_rows(&out.stdout), calls_by_resource(1..=4));
    let host = support::host::GrafanaHost::start();
    let mut ds = support::host::Datasource::agents(&[&secure.addr]);
    ds.secure_json_data.insert("token".into(), "s3cret".into());
    ds.secure_json_data.insert("tlsCACert".into(), ca.clone());
    let query = [("A", json!({"refId": "A", "rawSql": CALLS_BY_RESOURCE}))];
    let responses = host.query_datasource(&ds, &query).await;
    assert_eq!(responses["A"].error, "");
    let frames = support::host::decode_frames(&responses["A"]);
    assert_eq!(
        support::rows(&[frames[0].batch.clone()]),
        calls_by_resource(1..=4)
    );
}

/// 20,000 calls times a billion numbers under a TopK: days of work in constant memory. One
/// probe batch of the numbers makes 20,000 batches of the join without a yield point in
/// DataFusion's own operators.
const CROSS_JOIN: &str = "SELECT c.resource, g.value FROM calls c \
     CROSS JOIN generate_series(1, 1000000000) AS g ORDER BY 1, 2 LIMIT 3";

/// `1+1+...+1` with `n` operators, as column `x` of one row of `calls`: n + 4 operators and
/// keywords (SELECT, AS, FROM, LIMIT).
fn operator_chain(n: usize) -> String {
    format!("SELECT {}1 AS x FROM calls LIMIT 1", "1+".repeat(n))
}

/// Queries that would run for minutes or blow the stack end at the agent's and the
/// coordinator's limits with errors that say which, and both keep answering. (The test runs on
/// the test thread: a 2 MiB stack, as the agent's and the plugin's query threads have.)
#[tokio::test]
async fn runaway_and_deep_queries_end_at_the_limits_with_clear_errors() {
    let a = agent(
        "n1",
        1..=20_000,
        ServeOptions {
            limits: QueryLimits {
                timeout: Duration::from_secs(1),
                ..QueryLimits::default()
            },
            ..ServeOptions::default()
        },
    )
    .await;
    let set = AgentSet::new(vec![a.addr.clone()]);
    let target = kindling_plugin_backend::agents::Agent::at(&a.addr);
    let fragment = |sql: &str| {
        kindling_plugin_backend::agents::fetch_all(
            &target,
            &set,
            sql.to_owned(),
            None,
            Default::default(),
        )
    };

    // A cross join that would run for days and an endless recursive query: both end at the
    // agent's time limit.
    for sql in [
        CROSS_JOIN,
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
    ] {
        let err = fragment(sql).await.unwrap_err();
        assert_eq!(err.kind, FailureKind::Limit, "{sql}: {err}");
        assert!(
            err.message
                .ends_with("Resources exhausted: query exceeded the agent's time limit of 1 s"),
            "{sql}: {err}"
        );
    }
    // The `ticket` fuzz target's finding (bench/fuzz/regressions/ticket/repeat_2e9): a 2 GB
    // string, allocated outside any memory pool, refused before it is.
    let err = fragment("SELECT repeat('x', 2000000000)")
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Limit, "{err}");
    assert!(
        err.message.ends_with(
            "repeat() would produce 2000000000 bytes in one batch; the limit is 67108864"
        ),
        "{err}"
    );
    // Too deep to plan safely: refused before planning.
    let err = fragment(&operator_chain(1500)).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Query, "{err}");
    assert!(
        err.message.ends_with(
            "SQL with 1504 operators and keywords exceeds the limit of 500 (expressions that \
             deep could exhaust the stack)"
        ),
        "{err}"
    );
    // At the limit, it plans and runs.
    let rows = fragment(&operator_chain(496)).await.unwrap();
    assert_eq!(support::rows(&rows), [["497"]]);

    // The coordinator: the same cross join ends at its own time limit, and the deep chain is
    // refused before it is parsed.
    let mut set = AgentSet::new(vec![a.addr.clone()]);
    set.agent_timeout = Duration::from_secs(10);
    let coordinator = QueryEngine::new(
        set,
        EngineLimits {
            timeout: Duration::from_secs(2),
            ..EngineLimits::default()
        },
    );
    let err = coordinator.query(CROSS_JOIN).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(2.0)), "{err:?}");
    let err = coordinator.query(&operator_chain(5000)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "SQL with 5004 operators and keywords exceeds the limit of 500 (expressions that deep \
         could exhaust the stack)"
    );
    let out = coordinator.query(&operator_chain(496)).await.unwrap();
    assert_eq!(support::rows(&out.batches), [["497"]]);

    // Both still answer, exactly.
    let out = coordinator
        .query("SELECT count(*) FROM calls")
        .await
        .unwrap();
    assert_eq!(support::rows(&out.batches), [["20000"]]);
}

/// Two clusters in one engine, each with its own token: one SQL over both, every row with its
/// agent's cluster; a cluster whose agents are all down leaves a partial answer that names it,
/// and an agent sent another cluster's token is refused and named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_are_queried_as_one_and_a_cluster_down_is_named() {
    use kindling_plugin_backend::agents::ClusterAgents;
    let east = |token| ServeOptions {
        cluster: "east",
        token: Some(token),
        ..ServeOptions::default()
    };
    let e1 = agent("n1", 1..=4, east("east-token")).await;
    let e2 = agent("n2", 5..=6, east("east-token")).await;
    let w1 = agent(
        "n1",
        7..=9,
        ServeOptions {
            cluster: "west",
            token: Some("west-token"),
            ..ServeOptions::default()
        },
    )
    .await;
    let cluster = |name: &str, addrs: &[&str], token: &str| ClusterAgents {
        token: Some(token.to_owned()),
        ..ClusterAgents::new(name, addrs.iter().map(|a| (*a).to_owned()).collect())
    };
    let engine = |clusters| {
        let mut set = AgentSet::of_clusters(clusters);
        set.agent_timeout = Duration::from_secs(2);
        QueryEngine::new(set, EngineLimits::default())
    };
    let sql = "SELECT cluster, node, count(*) AS calls FROM calls \
               GROUP BY cluster, node ORDER BY cluster, node";
    let both = engine(vec![
        cluster("east", &[&e1.addr, &e2.addr], "east-token"),
        cluster("west", &[&w1.addr], "west-token"),
    ]);
    let out = both.query(sql).await.unwrap();
    assert_eq!(
        support::rows(&out.batches),
        [
            ["east", "n1", "4"],
            ["east", "n2", "2"],
            ["west", "n1", "3"]
        ]
    );
    assert_eq!((out.agents, out.partial_warning()), (3, None));

    // West down: east answers alone, and the warning names the cluster before its agent.
    drop(w1);
    let out = both.query(sql).await.unwrap();
    assert_eq!(
        support::rows(&out.batches),
        [["east", "n1", "4"], ["east", "n2", "2"]]
    );
    assert_eq!(out.clusters_down, [("west".to_owned(), 1)]);
    let warning = out.partial_warning().unwrap();
    assert!(
        warning.starts_with(
            "partial result: cluster west did not answer (none of its 1 agents); \
             1 of 3 agents did not answer: agent west/127.0.0.1:"
        ),
        "{warning}"
    );

    // An east agent listed under west, so sent west's token: refused, and named with the
    // cluster it was listed in.
    let mixed = engine(vec![
        cluster("east", &[&e1.addr], "east-token"),
        cluster("west", &[&e2.addr], "west-token"),
    ]);
    let out = mixed.query(sql).await.unwrap();
    assert_eq!(support::rows(&out.batches), [["east", "n1", "4"]]);
    assert_eq!(missing_names(&out), [format!("west/{}", e2.addr)]);
    assert!(
        out.missing[0].message.starts_with("refused the token"),
        "{:?}",
        out.missing
    );
    assert_eq!(out.clusters_down, [("west".to_owned(), 1)]);
}
