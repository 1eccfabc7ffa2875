//! Network health end to end: faults the test itself creates between two network namespaces
//! (support::netlab), seen by the agent's eBPF programs and checked through the `kindling` CLI.
//!
//! Ground truth per test: the delay the forwarder adds, the nftables rules and their counters,
//! the number of connections made and how each ended, and the DNS records dnsmasq was given.

use kindling_testkit as support;

use std::{
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    host::{AgentProcess, Killed, require_root, tool},
    netlab::{Lab, Netns},
};

/// What a lab server does with each connection.
#[derive(Clone, Copy)]
enum Mode {
    /// Echo every byte back until the client closes.
    Echo,
    /// Close at once with SO_LINGER 0: the kernel sends a RST.
    Abort,
}

/// A TCP server in a lab namespace, stopped on drop.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(ns: &Netns, port: u16, mode: Mode) -> Self {
        let listener = ns.enter(move || {
            let l = TcpListener::bind(("0.0.0.0", port)).expect("bind in netns");
            l.set_nonblocking(true).unwrap();
            l
        });
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        std::thread::spawn(move || serve(conn, mode));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: TcpStream, mode: Mode) {
    match mode {
        Mode::Echo => {
            let mut buf = [0u8; 4096];
            loop {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if conn.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        Mode::Abort => {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt with a valid linger struct on our socket.
            let ret = unsafe {
                libc::setsockopt(
                    conn.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    size_of::<libc::linger>() as u32,
                )
            };
            assert_eq!(ret, 0);
            drop(conn);
        }
    }
}

/// `rounds` request/response exchanges of `size` bytes each on one connection, then a close.
fn echo_rounds(to: Ipv4Addr, port: u16, rounds: usize, size: usize) {
    let mut s = TcpStream::connect((to, port)).unwrap_or_else(|e| panic!("connect {to}: {e}"));
    let out = vec![0x5a; size];
    let mut back = vec![0; size];
    for _ in 0..rounds {
        s.write_all(&out).unwrap();
        s.read_exact(&mut back).unwrap();
    }
}

/// Polls `sql` (a column `n`) until it reaches `want`, then lets late rows arrive and returns
/// the final count.
fn settle_count(agent: &AgentProcess, sql: &str, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = agent.query_json(sql)[0]["n"].as_u64().unwrap();
        if n >= want {
            std::thread::sleep(Duration::from_millis(500));
            return agent.query_json(sql)[0]["n"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "{n} of {want} after 20 s: {sql}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

const DELAY: Duration = Duration::from_millis(40);

/// Two agents watch the same traffic: one reading RTT from sock_diag every 100 ms and at
/// close (the default), one also following every segment (`--rtt-every-segment`).
#[test]
fn added_delay_shows_as_rtt_and_connect_latency() {
    require_root();
    let lab = Lab::new(DELAY);
    let sampled = AgentProcess::start("net-rtt", &["--rtt-sample-ms", "100"]);
    let per_segment = AgentProcess::start(
        "net-rtt-segment",
        &["--rtt-sample-ms", "100", "--rtt-every-segment"],
    );
    let _server = Server::start(&lab.server, 7000, Mode::Echo);
    let (delayed, clean) = (lab.delayed_server_ip(), lab.server_ip());
    lab.client.enter(move || {
        echo_rounds(delayed, 7000, 20, 100);
        echo_rounds(clean, 7000, 20, 100);
    });
    check_rtt(&sampled, &lab);
    check_rtt(&per_segment, &lab);
}

fn check_rtt(agent: &AgentProcess, lab: &Lab) {
    let ips = format!("'{}', '{}'", lab.delayed_client_ip(), lab.client_ip());
    let flows_sql = format!(
        "SELECT dst_ip, srtt_us, srtt_min_us, srtt_max_us, connect_latency_ns, retransmits, \
         resets, close_reason FROM flows WHERE role = 'client' AND dst_port = 7000 \
         AND src_ip IN ({ips}) ORDER BY dst_ip"
    );
    settle_count(
        agent,
        &format!("SELECT count(*) AS n FROM ({flows_sql})"),
        2,
    );
    let flows = agent.query_json(&flows_sql);
    assert_eq!(flows.len(), 2, "{flows:?}");
    let d_us = DELAY.as_micros() as u64;
    // Tolerance: the forwarder adds scheduling latency on this 2-core VM; the smoothed
    // minimum stays within 5 ms of D, the last value within 15 ms.
    let (clean_row, delayed_row) = (&flows[0], &flows[1]);
    assert_eq!(delayed_row["dst_ip"], lab.delayed_server_ip().to_string());
    let min = u64_of(delayed_row, "srtt_min_us");
    let last = u64_of(delayed_row, "srtt_us");
    let max = u64_of(delayed_row, "srtt_max_us");
    assert!(
        (d_us..=d_us + 5_000).contains(&min),
        "{}: delayed path: srtt_min_us {min} not within [D, D + 5 ms], D = {d_us} us",
        agent.addr
    );
    assert!(
        (d_us..=d_us + 15_000).contains(&last),
        "delayed path: srtt_us {last}, D = {d_us} us"
    );
    assert!(min <= last && last <= max, "{delayed_row}");
    let connect = u64_of(delayed_row, "connect_latency_ns");
    assert!(
        (DELAY.as_nanos() as u64..DELAY.as_nanos() as u64 + 15_000_000).contains(&connect),
        "connect latency {connect} ns over a {DELAY:?} path"
    );
    assert_eq!(delayed_row["close_reason"], "fin");
    assert_eq!(u64_of(delayed_row, "retransmits"), 0);
    assert_eq!(u64_of(delayed_row, "resets"), 0);
    // The clean veth path: RTT and connect latency far below the delay.
    assert!(u64_of(clean_row, "srtt_max_us") < 5_000, "{clean_row}");
    assert!(
        u64_of(clean_row, "connect_latency_ns") < 5_000_000,
        "{clean_row}"
    );
    assert_eq!(clean_row["close_reason"], "fin");
    // RTT samples of the delayed connection, reported at most every 100 ms.
    let samples = agent.query_json(&format!(
        "SELECT count(*) AS n, min(srtt_us) AS lo, max(srtt_us) AS hi FROM tcp_events \
             WHERE event = 'rtt' AND role = 'client' AND dst_ip = '{}'",
        lab.delayed_server_ip()
    ));
    let (n, lo, hi) = (
        u64_of(&samples[0], "n"),
        u64_of(&samples[0], "lo"),
        u64_of(&samples[0], "hi"),
    );
    // The connection lived for its handshake and 20 rounds of at least 40 ms (840 ms): at
    // least one sample and at most one per 100 ms.
    assert!((1..=10).contains(&n), "{n} rtt samples");
    assert!(
        lo >= d_us && hi <= d_us + 15_000,
        "rtt samples {lo}..{hi} us"
    );
}

#[test]
fn loss_gives_retransmits_on_the_lossy_flow_only_and_every_drop_is_seen() {
    require_root();
    let lab = Lab::new(DELAY);
    lab.server_nft(
        "table inet kl {\n chain input {\n  type filter hook input priority 0; policy accept;\n  \
         tcp dport 7001 numgen random mod 100 < 10 counter drop comment \"loss\"\n }\n}\n",
    );
    let agent = AgentProcess::start("net-loss", &[]);
    let _clean = Server::start(&lab.server, 7000, Mode::Echo);
    let _lossy = Server::start(&lab.server, 7001, Mode::Echo);
    let server = lab.server_ip();
    lab.client.enter(move || {
        echo_rounds(server, 7000, 100, 1000);
        echo_rounds(server, 7001, 100, 1000);
    });
    let lab_ips = format!("'{}', '{}'", lab.client_ip(), lab.server_ip());
    let flows_sql = format!(
        "SELECT dst_port, role, retransmits FROM flows WHERE src_ip = '{}' \
         AND dst_port IN (7000, 7001) ORDER BY dst_port, role",
        lab.client_ip()
    );
    settle_count(
        &agent,
        &format!("SELECT count(*) AS n FROM ({flows_sql})"),
        4,
    );
    let flows = agent.query_json(&flows_sql);
    assert_eq!(flows.len(), 4, "{flows:?}");
    // Clean flow: no retransmission on either end.
    assert_eq!(u64_of(&flows[0], "retransmits"), 0, "{flows:?}");
    assert_eq!(u64_of(&flows[1], "retransmits"), 0, "{flows:?}");
    // Lossy flow: the client's segments were dropped on the way in, so the client resent.
    let lossy_client = u64_of(&flows[2], "retransmits");
    assert!(lossy_client >= 1, "{flows:?}");
    let events = agent.query_json(&format!(
        "SELECT dst_port, count(*) AS n FROM tcp_events WHERE event = 'retransmit' \
             AND src_ip IN ({lab_ips}) AND dst_port IN (7000, 7001) GROUP BY dst_port"
    ));
    assert_eq!(
        events.len(),
        1,
        "retransmit events only on the lossy port: {events:?}"
    );
    assert_eq!(u64_of(&events[0], "dst_port"), 7001);
    assert!(u64_of(&events[0], "n") >= lossy_client);
    // Every packet nftables dropped is one drop event with the kernel's reason. Packets can
    // still cross the rule after the flows close (an ACK from TIME_WAIT), and their events
    // reach the agent at its next flush: compare the two counts until they agree (20 s).
    let drops_sql = format!(
        "SELECT count(*) AS n FROM tcp_events WHERE event = 'drop' \
             AND reason = 'NETFILTER_DROP' AND src_ip = '{}' AND dst_port = 7001",
        lab.client_ip()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut events, mut dropped);
    loop {
        dropped = lab.server_nft_counter("loss");
        events = u64_of(&agent.query_json(&drops_sql)[0], "n");
        if events == dropped || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(dropped > 0, "10% loss over 200+ packets dropped nothing");
    assert_eq!(events, dropped, "drop events, nftables' count");
    // The clean flow lost nothing, and socket teardown (QUEUE_PURGE) is no drop.
    let clean_drops = agent.query_json(&format!(
        "SELECT count(*) AS n FROM tcp_events WHERE event = 'drop' \
             AND src_ip IN ({lab_ips}) AND 7000 IN (src_port, dst_port)"
    ));
    assert_eq!(u64_of(&clean_drops[0], "n"), 0);
}

#[test]
fn rejected_connects_are_refused_and_dropped_syns_time_out() {
    require_root();
    let lab = Lab::new(DELAY);
    lab.server_nft(
        "table inet kl {\n chain input {\n  type filter hook input priority 0; policy accept;\n  \
         tcp dport 7002 counter reject with tcp reset comment \"refuse\"\n  \
         tcp dport 7003 counter drop comment \"blackhole\"\n }\n}\n",
    );
    // One SYN retry: a connect gives up after 1 + 2 s.
    lab.client.sh("sysctl -qw net.ipv4.tcp_syn_retries=1");
    let agent = AgentProcess::start("net-connect", &[]);
    let server = lab.server_ip();
    const REFUSED: usize = 5;
    const TIMED_OUT: usize = 2;
    let outcomes = lab.client.enter(move || {
        let try_connect = move |port: u16| {
            TcpStream::connect_timeout(&SocketAddr::from((server, port)), Duration::from_secs(10))
                .map(|_| ())
                .map_err(|e| e.kind())
        };
        let slow: Vec<_> = (0..TIMED_OUT)
            .map(|_| std::thread::spawn(move || try_connect(7003)))
            .collect();
        let mut out: Vec<_> = (0..REFUSED).map(|_| try_connect(7002)).collect();
        out.extend(slow.into_iter().map(|t| t.join().unwrap()));
        out
    });
    // connect_timeout is non-blocking underneath: the kernel's give-up shows as TimedOut.
    let want: Vec<Result<(), ErrorKind>> = [Err(ErrorKind::ConnectionRefused); REFUSED]
        .into_iter()
        .chain([Err(ErrorKind::TimedOut); TIMED_OUT])
        .collect();
    assert_eq!(outcomes, want);
    let failed_sql = |reason: &str, port: u16| {
        format!(
            "SELECT count(*) AS n FROM tcp_events WHERE event = 'connect_failed' \
             AND reason = '{reason}' AND role = 'client' AND dst_ip = '{server}' \
             AND dst_port = {port}"
        )
    };
    assert_eq!(
        settle_count(&agent, &failed_sql("refused", 7002), REFUSED as u64),
        REFUSED as u64
    );
    assert_eq!(
        settle_count(&agent, &failed_sql("timeout", 7003), TIMED_OUT as u64),
        TIMED_OUT as u64
    );
    let by_reason = agent.query_json(&format!(
        "SELECT dst_port, close_reason, count(*) AS n, max(resets) AS resets, \
             sum(retransmits) AS retransmits, count(connect_latency_ns) AS connected \
             FROM flows WHERE dst_ip = '{server}' AND dst_port IN (7002, 7003) \
             GROUP BY 1, 2 ORDER BY 1"
    ));
    assert_eq!(by_reason.len(), 2, "{by_reason:?}");
    let (refused, timed_out) = (&by_reason[0], &by_reason[1]);
    assert_eq!(refused["close_reason"], "rst");
    assert_eq!(
        (
            u64_of(refused, "n"),
            u64_of(refused, "resets"),
            u64_of(refused, "connected")
        ),
        (REFUSED as u64, 1, 0)
    );
    assert_eq!(timed_out["close_reason"], "timeout");
    // Every SYN sent to the black hole was counted by nftables: the first of each connect
    // plus its retransmissions.
    let syns = lab.server_nft_counter("blackhole");
    let resent = syns - TIMED_OUT as u64;
    assert!(
        resent >= TIMED_OUT as u64,
        "{syns} SYNs for {TIMED_OUT} connects"
    );
    assert_eq!(
        (u64_of(timed_out, "n"), u64_of(timed_out, "retransmits")),
        (TIMED_OUT as u64, resent)
    );
    let syn_retransmits = agent.query_json(&format!(
        "SELECT count(*) AS n FROM tcp_events WHERE event = 'retransmit' \
             AND old_state = 'SYN_SENT' AND dst_ip = '{server}' AND dst_port = 7003"
    ));
    assert_eq!(u64_of(&syn_retransmits[0], "n"), resent);
    // Every SYN the black hole swallowed is a drop event.
    let drops = agent.query_json(&format!(
        "SELECT count(*) AS n FROM tcp_events WHERE event = 'drop' \
             AND reason = 'NETFILTER_DROP' AND dst_ip = '{server}' AND dst_port = 7003"
    ));
    assert_eq!(u64_of(&drops[0], "n"), syns);
    assert_eq!(lab.server_nft_counter("refuse"), REFUSED as u64);
}

#[test]
fn aborted_connections_give_one_reset_on_each_end() {
    require_root();
    let lab = Lab::new(DELAY);
    let agent = AgentProcess::start("net-reset", &[]);
    let _server = Server::start(&lab.server, 7004, Mode::Abort);
    let server = lab.server_ip();
    const N: usize = 4;
    let reads = lab.client.enter(move || {
        (0..N)
            .map(|_| {
                let mut s = TcpStream::connect((server, 7004)).unwrap();
                let mut buf = [0u8; 16];
                s.read(&mut buf).map_err(|e| e.kind())
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(reads, vec![Err(ErrorKind::ConnectionReset); N]);
    let count = |event: &str, role: &str| {
        format!(
            "SELECT count(*) AS n FROM tcp_events WHERE event = '{event}' AND role = '{role}' \
             AND dst_ip = '{server}' AND dst_port = 7004"
        )
    };
    assert_eq!(
        settle_count(&agent, &count("reset_sent", "server"), N as u64),
        N as u64
    );
    assert_eq!(
        settle_count(&agent, &count("reset_received", "client"), N as u64),
        N as u64
    );
    // No other end sent or received one.
    assert_eq!(settle_count(&agent, &count("reset_sent", "client"), 0), 0);
    settle_count(
        &agent,
        &format!("SELECT count(*) AS n FROM flows WHERE dst_ip = '{server}' AND dst_port = 7004"),
        2 * N as u64,
    );
    let flows = agent.query_json(&format!(
        "SELECT role, close_reason, count(*) AS n, min(resets) AS lo, max(resets) AS hi \
             FROM flows WHERE dst_ip = '{server}' AND dst_port = 7004 GROUP BY 1, 2 ORDER BY 1"
    ));
    let summary: Vec<_> = flows
        .iter()
        .map(|f| {
            (
                f["role"].as_str().unwrap().to_owned(),
                f["close_reason"].as_str().unwrap().to_owned(),
                u64_of(f, "n"),
                u64_of(f, "lo"),
                u64_of(f, "hi"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("client".into(), "rst".into(), N as u64, 1, 1),
            ("server".into(), "rst".into(), N as u64, 1, 1),
        ]
    );
}

fn dnsmasq(ns: &Netns, args: &[String]) -> Killed {
    tool("dnsmasq");
    tool("dig");
    Killed(
        Command::new("ip")
            .args(["netns", "exec", &ns.name, "dnsmasq"])
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--user=root",
                "--pid-file=",
            ])
            .args(args)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dnsmasq"),
    )
}

#[test]
fn dns_rcodes_latency_and_search_list_expansions() {
    require_root();
    let lab = Lab::new(DELAY);
    let n = lab.n;
    // The upstream, in the client namespace, reached over the delayed path: its answers take D.
    let _upstream = dnsmasq(
        &lab.client,
        &[
            format!("--listen-address=10.201.{n}.1"),
            "--port=5353".into(),
            "--host-record=www.slow.test,10.8.8.8".into(),
        ],
    );
    let _resolver = dnsmasq(
        &lab.server,
        &[
            format!("--listen-address=10.200.{n}.2"),
            "--port=53".into(),
            "--local=/cluster.local/".into(),
            "--local=/blocked.test/".into(),
            "--host-record=api.example.test,10.9.9.9".into(),
            format!("--server=/slow.test/10.201.{n}.1#5353"),
        ],
    );
    // A Kubernetes ClusterFirst resolv.conf for the client namespace (ip netns exec mounts it).
    std::fs::create_dir_all(format!("/etc/netns/{}", lab.client.name)).unwrap();
    std::fs::write(
        format!("/etc/netns/{}/resolv.conf", lab.client.name),
        format!(
            "nameserver 10.200.{n}.2\nsearch default.svc.cluster.local svc.cluster.local\n\
             options ndots:5 attempts:1 timeout:3\n"
        ),
    )
    .unwrap();
    let agent = AgentProcess::start("net-dns", &["--dns-search-window", "1"]);
    // Wait for both servers to answer (dnsmasq starts asynchronously).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lab
        .client
        .sh(&format!(
            "dig @10.200.{n}.2 www.slow.test +short +tries=1 +time=2 || true"
        ))
        .contains("10.8.8.8")
    {
        assert!(Instant::now() < deadline, "dnsmasq did not answer");
        std::thread::sleep(Duration::from_millis(200));
    }
    let resolved = lab.client.sh("getent ahostsv4 api.example.test | head -1");
    assert!(resolved.starts_with("10.9.9.9"), "{resolved}");
    let missing = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.client.name,
            "getent",
            "ahostsv4",
            "nothere.blocked.test",
        ])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "getent of an unknown name");
    let slow = lab.client.sh(&format!(
        "dig @10.200.{n}.2 www.slow.test +short +tries=1 +time=3"
    ));
    assert_eq!(slow.trim(), "10.8.8.8");

    let client_rows = format!(
        "SELECT domain, rcode, search_expansion, search_misses, answers, latency_ns, comm \
         FROM dns WHERE client_ip = '10.200.{n}.1' AND comm = 'getent' ORDER BY ts"
    );
    settle_count(
        &agent,
        &format!("SELECT count(*) AS n FROM ({client_rows})"),
        6,
    );
    let got: Vec<_> = agent
        .query_json(&client_rows)
        .iter()
        .map(|r| {
            (
                r["domain"].as_str().unwrap().to_owned(),
                r["rcode"].as_str().unwrap().to_owned(),
                r["search_expansion"].as_bool().unwrap(),
                u64_of(r, "search_misses"),
                r["answers"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let row = |d: &str, rcode: &str, exp: bool, misses: u64, answers: &str| {
        (
            d.to_owned(),
            rcode.to_owned(),
            exp,
            misses,
            answers.to_owned(),
        )
    };
    assert_eq!(
        got,
        vec![
            row(
                "api.example.test.default.svc.cluster.local",
                "NXDOMAIN",
                true,
                0,
                ""
            ),
            row(
                "api.example.test.svc.cluster.local",
                "NXDOMAIN",
                true,
                0,
                ""
            ),
            row("api.example.test", "NOERROR", false, 2, "10.9.9.9"),
            // Never resolved: every NXDOMAIN stays an error.
            row(
                "nothere.blocked.test.default.svc.cluster.local",
                "NXDOMAIN",
                false,
                0,
                ""
            ),
            row(
                "nothere.blocked.test.svc.cluster.local",
                "NXDOMAIN",
                false,
                0,
                ""
            ),
            row("nothere.blocked.test", "NXDOMAIN", false, 0, ""),
        ]
    );
    // The slow upstream: dig waited about D for dnsmasq, which waited about D for its upstream.
    let d_ns = DELAY.as_nanos() as u64;
    let slow_rows = agent.query_json(
        "SELECT comm, client_ip, server_ip, latency_ns FROM dns WHERE domain = 'www.slow.test' \
         AND rcode = 'NOERROR' ORDER BY ts DESC",
    );
    // Latest first. dig asks from the client namespace; dnsmasq asks its upstream from an
    // unconnected socket bound to no address (its client_ip is 0.0.0.0).
    let latest = |key: &str, value: String| {
        slow_rows
            .iter()
            .find(|r| r[key] == value.as_str())
            .unwrap_or_else(|| panic!("no row with {key} {value}: {slow_rows:?}"))
            .clone()
    };
    let dig = latest("client_ip", format!("10.200.{n}.1"));
    assert_eq!(dig["server_ip"], format!("10.200.{n}.2"));
    let upstream = latest("server_ip", format!("10.201.{n}.1"));
    assert_eq!(upstream["comm"], "dnsmasq");
    for r in [&dig, &upstream] {
        let l = u64_of(r, "latency_ns");
        assert!(
            (d_ns..d_ns + 15_000_000).contains(&l),
            "latency {l} ns through a {DELAY:?} upstream: {r}"
        );
    }
    // The DNS monitor: search-list expansions are not errors; the unknown name is.
    let domains = agent.query_json(
        "SELECT domain, lookups, errors, search_expansions FROM dns_domains() \
         WHERE domain LIKE '%example.test%' OR domain LIKE 'nothere%' ORDER BY domain",
    );
    let summary: Vec<_> = domains
        .iter()
        .map(|d| {
            (
                d["domain"].as_str().unwrap().to_owned(),
                u64_of(d, "lookups"),
                u64_of(d, "errors"),
                u64_of(d, "search_expansions"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("api.example.test".to_owned(), 1, 0, 0),
            (
                "api.example.test.default.svc.cluster.local".to_owned(),
                1,
                0,
                1
            ),
            ("api.example.test.svc.cluster.local".to_owned(), 1, 0, 1),
            ("nothere.blocked.test".to_owned(), 1, 1, 0),
            (
                "nothere.blocked.test.default.svc.cluster.local".to_owned(),
                1,
                1,
                0
            ),
            ("nothere.blocked.test.svc.cluster.local".to_owned(), 1, 1, 0),
        ]
    );
    let servers = agent.query_json(&format!(
        "SELECT server_ip, lookups, p50_ms FROM dns_servers() WHERE server_ip = '10.201.{n}.1'"
    ));
    assert!(u64_of(&servers[0], "lookups") >= 1);
    assert!(servers[0]["p50_ms"].as_f64().unwrap() >= DELAY.as_secs_f64() * 1e3);
}
