//! End to end on this host: the agent's eBPF programs watch real TCP connections that the test
//! makes itself, and the rows are read back through the `kindling` CLI and through Grafana host
//! emulation (the plugin binary driven over the plugin protocol; no real Grafana runs here).
//!
//! Ground truth: tests/fixtures/tcp_peer.py makes exactly N connections to a port of its own,
//! connection i carrying 100*i request bytes and 50*i response bytes.

use kindling_testkit as support;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{UInt32Type, UInt64Type};
use serde_json::{Value, json};
use support::host::{AgentProcess, GrafanaHost, decode_frames, require_root};

const N: u64 = 12;

struct Traffic {
    port: u16,
    server_pid: u32,
    client_pid: u32,
}

/// Runs the fixture server and client to completion.
fn make_traffic() -> Traffic {
    traffic(&[])
}

/// The fixture's server and client, with `extra` arguments (`empty`: no bytes).
fn traffic(extra: &[&str]) -> Traffic {
    let script = support::host::fixture("tcp_peer.py");
    let mut server = Command::new("python3")
        .args([&script, "server", &N.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (scripts/setup.sh installs it)");
    let mut line = String::new();
    BufReader::new(server.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().strip_prefix("port ").unwrap().parse().unwrap();
    let mut client = Command::new("python3")
        .args([&script, "client", &port.to_string(), &N.to_string()])
        .args(extra)
        .spawn()
        .unwrap();
    let client_pid = client.id();
    assert!(client.wait().unwrap().success(), "client failed");
    let server_pid = server.id();
    assert!(server.wait().unwrap().success(), "server failed");
    Traffic {
        port,
        server_pid,
        client_pid,
    }
}

fn flows_sql(port: u16) -> String {
    format!(
        "SELECT role, pid, comm, bytes_sent, bytes_received, src_ip, dst_ip, dst_port, status, node \
         FROM flows WHERE dst_port = {port} ORDER BY role, bytes_sent"
    )
}

/// Waits until the agent holds `want` flows for the port (rows reach the store within a flush).
fn wait_for_flows(agent: &AgentProcess, port: u16, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = agent.query_json(&format!(
            "SELECT count(*) AS n FROM flows WHERE dst_port = {port}"
        ));
        let n = rows[0]["n"].as_u64().unwrap() as usize;
        if n >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {n} of {want} flows after 15 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The rows the ground truth says `flows` must hold for the port, in `flows_sql` order.
fn expected_flows(t: &Traffic) -> Vec<(String, u32, String, u64, u64)> {
    let mut rows = Vec::new();
    for i in 1..=N {
        rows.push((
            "client".to_owned(),
            t.client_pid,
            "kl-e2e-client".to_owned(),
            100 * i,
            50 * i,
        ));
    }
    for i in 1..=N {
        rows.push((
            "server".to_owned(),
            t.server_pid,
            "kl-e2e-server".to_owned(),
            50 * i,
            100 * i,
        ));
    }
    rows
}

/// (event, role, pid, comm, rows) of `tcp_events` for the port's connect, accept and close
/// rows.
fn lifecycle_summary(agent: &AgentProcess, port: u16) -> Vec<(String, String, u64, String, u64)> {
    agent
        .query_json(&format!(
            "SELECT event, role, pid, comm, count(*) AS n FROM tcp_events \
             WHERE dst_port = {port} AND event IN ('connect', 'accept', 'close') \
             GROUP BY event, role, pid, comm ORDER BY event, role"
        ))
        .iter()
        .map(|r| {
            (
                r["event"].as_str().unwrap().to_owned(),
                r["role"].as_str().unwrap().to_owned(),
                r["pid"].as_u64().unwrap(),
                r["comm"].as_str().unwrap().to_owned(),
                r["n"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// One connect per client connection and one accept per server one, each attributed to the
/// process that made it, and the close rows of both ends.
fn expected_lifecycle(t: &Traffic) -> Vec<(String, String, u64, String, u64)> {
    let (c, s) = (u64::from(t.client_pid), u64::from(t.server_pid));
    let row = |event: &str, role: &str, pid: u64, comm: &str| {
        (event.into(), role.into(), pid, comm.into(), N)
    };
    vec![
        row("accept", "server", s, "kl-e2e-server"),
        row("close", "client", c, "kl-e2e-client"),
        row("close", "server", s, "kl-e2e-server"),
        row("connect", "client", c, "kl-e2e-client"),
    ]
}

#[test]
fn connections_that_move_no_data_are_owned_by_the_processes_at_both_ends() {
    require_root();
    let agent = AgentProcess::start("e2e-empty", &[]);
    // No byte moves: who accepted each connection is known only from the server's close (the
    // socket's release, in its task).
    let t = traffic(&["empty"]);
    wait_for_flows(&agent, t.port, 2 * N as usize);
    agent.barrier();
    assert_eq!(lifecycle_summary(&agent, t.port), expected_lifecycle(&t));
    let flows: Vec<(String, u64, u64, u64)> = agent
        .query_json(&format!(
            "SELECT role, pid, sum(bytes_sent + bytes_received) AS bytes, count(*) AS n \
             FROM flows WHERE dst_port = {} GROUP BY role, pid ORDER BY role",
            t.port
        ))
        .iter()
        .map(|r| {
            (
                r["role"].as_str().unwrap().to_owned(),
                r["pid"].as_u64().unwrap(),
                r["bytes"].as_u64().unwrap(),
                r["n"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flows,
        [
            ("client".to_owned(), u64::from(t.client_pid), 0, N),
            ("server".to_owned(), u64::from(t.server_pid), 0, N),
        ]
    );
}

/// A server that closes first: its socket ends (FIN_WAIT2, orphaned, handed to a timewait
/// socket) as soon as the client's kernel acknowledges its FIN, before the client sends its own.
/// The flow counts exactly the bytes received: the peer's FIN takes one sequence number of
/// `bytes_received` only once it arrived, and close() alone must not make the agent subtract it.
#[test]
fn a_server_that_closes_first_counts_exactly_the_bytes_it_received() {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
    };
    require_root();
    let agent = AgentProcess::start("e2e-node", &[]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(&[b'q'; 1000]).unwrap();
    server.read_exact(&mut [0; 1000]).unwrap();
    server.write_all(&[b'r'; 500]).unwrap();
    drop(server);
    let mut response = Vec::new();
    client.read_to_end(&mut response).unwrap();
    assert_eq!(response.len(), 500);
    // The client holds its end open until the server's row is in: the server's socket ended
    // without the client's FIN.
    let deadline = Instant::now() + Duration::from_secs(15);
    while agent.query_json(&format!(
        "SELECT count(*) AS n FROM flows WHERE dst_port = {port} AND role = 'server'"
    ))[0]["n"]
        != 1
    {
        assert!(Instant::now() < deadline, "no server flow after 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(client);
    wait_for_flows(&agent, port, 2);
    agent.barrier();
    let rows = agent.query_json(&format!(
        "SELECT role, bytes_sent, bytes_received, status FROM flows WHERE dst_port = {port} \
         ORDER BY role"
    ));
    let got: Vec<(&str, u64, u64, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["role"].as_str().unwrap(),
                r["bytes_sent"].as_u64().unwrap(),
                r["bytes_received"].as_u64().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("client", 1000, 500, "closed"),
            ("server", 500, 1000, "closed")
        ]
    );
}

#[test]
fn loopback_connections_through_cli_and_grafana_host_emulation() {
    require_root();
    let agent = AgentProcess::start("e2e-node", &[]);
    let t = make_traffic();
    // Both ends are on this node: one client row and one server row per connection.
    wait_for_flows(&agent, t.port, 2 * N as usize);
    // Everything the kernel reported so far is stored: a late duplicate would be here now.
    agent.barrier();

    // --- CLI
    let rows = agent.query_json(&flows_sql(t.port));
    let got: Vec<(String, u32, String, u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["role"].as_str().unwrap().to_owned(),
                r["pid"].as_u64().unwrap() as u32,
                r["comm"].as_str().unwrap().to_owned(),
                r["bytes_sent"].as_u64().unwrap(),
                r["bytes_received"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected_flows(&t));
    for r in &rows {
        assert_eq!(r["src_ip"], "127.0.0.1");
        assert_eq!(r["dst_ip"], "127.0.0.1");
        assert_eq!(r["dst_port"].as_u64(), Some(u64::from(t.port)));
        assert_eq!(r["status"], "closed");
        assert_eq!(r["node"], "e2e-node");
    }

    // tcp_events: exactly one connect per client connection and one accept per server one, each
    // attributed to the process that made the syscall.
    assert_eq!(lifecycle_summary(&agent, t.port), expected_lifecycle(&t));

    // Durations are positive and end after start.
    let bad = agent.query_json(&format!(
        "SELECT count(*) AS n FROM flows WHERE dst_port = {} AND (end_ts < start_ts OR duration_ns = 0)",
        t.port
    ));
    assert_eq!(bad[0]["n"].as_u64(), Some(0));

    // The CLI expands Grafana macros over the last --since: every flow of this test (N client
    // and N server rows) ended in the last 10 minutes.
    let in_range = |since: &str| {
        let out = agent.cli(&[
            "query",
            "--agent",
            &agent.addr,
            "--since",
            since,
            "--format",
            "json",
            &format!(
                "SELECT count(*) AS n FROM flows WHERE $__timeFilter(end_ts) AND dst_port = {}",
                t.port
            ),
        ]);
        assert!(out.status.success(), "{out:?}");
        let row: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
        row["n"].as_u64().unwrap()
    };
    assert_eq!(in_range("10m"), 2 * N);
    let bad_since = agent.cli(&[
        "query",
        "--agent",
        &agent.addr,
        "--since",
        "soon",
        "SELECT 1",
    ]);
    assert!(!bad_since.status.success());
    assert_eq!(
        String::from_utf8_lossy(&bad_since.stderr).trim(),
        "kindling: --since `soon` is not a duration (30s, 15m, 1h, 1d)"
    );

    // --- Grafana host emulation
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let host = GrafanaHost::start();
        let sql = flows_sql(t.port);
        let responses = host
            .query_data(
                &[&agent.addr],
                &[(
                    "A",
                    json!({"refId": "A", "queryType": "sql", "rawSql": sql, "format": "table"}),
                )],
            )
            .await;
        let a = &responses["A"];
        assert_eq!(a.error, "", "QueryData error");
        let frames = decode_frames(a);
        assert_eq!(frames.len(), 1);
        let frame = &frames[0];
        assert_eq!(frame.metadata.get("refId").map(String::as_str), Some("A"));
        let meta: Value = serde_json::from_str(&frame.metadata["meta"]).unwrap();
        assert_eq!(meta["executedQueryString"], sql);
        assert_eq!(frame_flows(&frame.batch), expected_flows(&t));

        // time_series: one frame per text-column value (labels), numbers as series, by time;
        // Grafana macros take the query's time range (the last hour, which holds every
        // connection of this test) and bucket size.
        let ts_sql = format!(
            "SELECT $__timeGroupAlias(end_ts, '1h'), role, count(*) AS connections \
             FROM flows WHERE $__timeFilter(end_ts) AND dst_port = {} GROUP BY 1, 2",
            t.port
        );
        let responses = host
            .query_data(
                &[&agent.addr],
                &[("TS", json!({"rawSql": ts_sql, "format": "time_series"}))],
            )
            .await;
        assert_eq!(responses["TS"].error, "");
        let frames = decode_frames(&responses["TS"]);
        let mut series: Vec<(String, u64)> = frames
            .iter()
            .map(|f| {
                let schema = f.batch.schema();
                assert_eq!(schema.field(0).name(), "time");
                let value = schema.field(1);
                assert_eq!(value.name(), "connections");
                let labels: Value = serde_json::from_str(&value.metadata()["labels"]).unwrap();
                let total: i64 = f
                    .batch
                    .column(1)
                    .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                    .iter()
                    .flatten()
                    .sum();
                (labels["role"].as_str().unwrap().to_owned(), total as u64)
            })
            .collect();
        series.sort();
        assert_eq!(
            series,
            vec![("client".to_owned(), N), ("server".to_owned(), N)]
        );

        // A user's mistake comes back on its own refId with status 400; the other query works.
        let responses = host
            .query_data(
                &[&agent.addr],
                &[
                    (
                        "bad",
                        json!({"refId": "bad", "rawSql": "SELECT * FROM nope"}),
                    ),
                    (
                        "good",
                        json!({"refId": "good", "rawSql": "SELECT 1 AS one"}),
                    ),
                    (
                        "macro",
                        json!({"refId": "macro", "rawSql": "SELECT * FROM flows WHERE $__timeFilter()"}),
                    ),
                ],
            )
            .await;
        assert_eq!(responses["macro"].status, 400);
        assert_eq!(
            responses["macro"].error,
            "$__timeFilter takes 1 argument: $__timeFilter(col)"
        );
        assert_eq!(responses["bad"].status, 400);
        assert_eq!(
            responses["bad"].error,
            "table 'datafusion.public.nope' not found; tables: agent_stats, calls, dns, flows, open_calls, protocol_stats, tcp_events"
        );
        assert_eq!(responses["good"].error, "");
        assert_eq!(decode_frames(&responses["good"])[0].batch.num_rows(), 1);

        // CheckHealth: one reachable agent, and an unreachable one named.
        let health = host.check_health(&[&agent.addr]).await;
        assert_eq!(health.status, 1, "OK: {}", health.message);
        assert!(
            health.message.starts_with("1 of 1 agents reachable."),
            "{}",
            health.message
        );
        assert!(
            health.message.contains("node e2e-node"),
            "{}",
            health.message
        );
        let dead = format!("127.0.0.1:{}", support::host::free_port());
        let health = host.check_health(&[&agent.addr, &dead]).await;
        assert_eq!(health.status, 2, "ERROR: {}", health.message);
        assert!(
            health.message.starts_with("1 of 2 agents reachable."),
            "{}",
            health.message
        );
        assert!(
            health.message.contains(&format!("{dead}: unreachable")),
            "{}",
            health.message
        );
    });

    // --- CLI errors are clear and non-zero.
    let out = agent.cli(&["query", "--agent", &agent.addr, "SELEC 1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("kindling: SQL error: ParserError"));
    let out = agent.cli(&["query", "--agent", &agent.addr, "SELECT * FROM flow"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "kindling: table 'datafusion.public.flow' not found; tables: agent_stats, calls, dns, flows, open_calls, protocol_stats, tcp_events"
    );
    let dead = format!("127.0.0.1:{}", support::host::free_port());
    let out = agent.cli(&[
        "query",
        "--agent",
        &agent.addr,
        "--agent",
        &dead,
        "SELECT count(*) FROM flows",
    ]);
    // A partial result: the live agent's count, the dead one named, exit status 3.
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "kindling: partial result: 1 of 2 agents did not answer: agent {dead}: unreachable"
        )),
        "{err}"
    );
    let only_dead = agent.cli(&["query", "--agent", &dead, "SELECT count(*) FROM flows"]);
    assert_eq!(only_dead.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&only_dead.stderr)
            .starts_with(&format!("kindling: agent {dead}: unreachable")),
        "{only_dead:?}"
    );

    // --- Not root: one line naming what is missing, exit 1.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(support::host::workspace_bin("kindling-agent"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "kindling-agent: kindling-agent must run as root (it loads eBPF programs); effective uid is 65534\n"
    );

    // --- Stop: exit 0 and no program of ours left loaded (the kernel frees them once their
    // links are gone, after a grace period: waited for, at most 5 s).
    let status = agent.terminate();
    assert!(status.success(), "agent exit status {status:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let progs = Command::new("bpftool")
            .args(["prog", "show"])
            .output()
            .unwrap();
        let progs = String::from_utf8_lossy(&progs.stdout);
        let left: Vec<_> = [
            "inet_sock_set_s",
            "sock_send_lengt",
            "sock_release",
            "udp_recvmsg4",
        ]
        .into_iter()
        .filter(|name| progs.contains(&format!("name {name}")))
        .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left:?} still loaded 5 s after the agent stopped:\n{progs}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The frame's rows as (role, pid, comm, bytes_sent, bytes_received).
fn frame_flows(b: &RecordBatch) -> Vec<(String, u32, String, u64, u64)> {
    let col = |name: &str| std::sync::Arc::clone(b.column(b.schema().index_of(name).unwrap()));
    let role = col("role");
    let pid = col("pid");
    let comm = col("comm");
    let sent = col("bytes_sent");
    let received = col("bytes_received");
    (0..b.num_rows())
        .map(|i| {
            (
                role.as_string::<i32>().value(i).to_owned(),
                pid.as_primitive::<UInt32Type>().value(i),
                comm.as_string::<i32>().value(i).to_owned(),
                sent.as_primitive::<UInt64Type>().value(i),
                received.as_primitive::<UInt64Type>().value(i),
            )
        })
        .collect()
}
