use kindling_agent_common::{AF_INET, COMM_LEN};

use super::*;

#[derive(Debug, Default)]
struct Rows {
    events: Vec<TcpEventRecord>,
    flows: Vec<FlowRecord>,
}

impl RecordSink for Rows {
    fn tcp_event(&mut self, record: TcpEventRecord) {
        self.events.push(record);
    }
    fn flow(&mut self, record: FlowRecord) {
        self.flows.push(record);
    }
}

fn comm_bytes(name: &str) -> [u8; COMM_LEN] {
    let mut c = [0u8; COMM_LEN];
    c[..name.len()].copy_from_slice(name.as_bytes());
    c
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&a);
    out
}

struct Ev(TcpEvent);

impl Ev {
    fn state(ts: u64, sk: u64, old: u8, new: u8, local: u16, remote: u16) -> Self {
        Ev(TcpEvent {
            ts_ns: ts,
            skaddr: sk,
            bytes_sent: 0,
            bytes_received: 0,
            pid: 999,
            tid: 999,
            sport: local,
            dport: remote,
            family: AF_INET,
            kind: TcpEventKind::StateChange as u8,
            old_state: old,
            new_state: new,
            saddr: v4([10, 0, 0, 1]),
            daddr: v4([10, 0, 0, 2]),
            comm: comm_bytes("softirq"),
            ..TcpEvent::zeroed()
        })
    }

    /// The socket's release by its last file, in task `pid` (thread pid + 1).
    fn release(ts: u64, sk: u64, pid: u32, comm: &str) -> Self {
        let mut e = Self::state(ts, sk, 0, 0, 0, 0).0;
        e.kind = TcpEventKind::Release as u8;
        e.pid = pid;
        e.tid = pid + 1;
        e.comm = comm_bytes(comm);
        Ev(e)
    }

    fn task(mut self, pid: u32, comm: &str) -> Self {
        self.0.pid = pid;
        self.0.tid = pid;
        self.0.comm = comm_bytes(comm);
        self
    }

    fn bytes(mut self, sent: u64, received: u64) -> Self {
        self.0.bytes_sent = sent;
        self.0.bytes_received = received;
        self
    }
}

fn run(events: Vec<Ev>) -> (Rows, ConnTracker) {
    let mut t = ConnTracker::new(Clock::with_offset(1_000_000), 16);
    let mut rows = Rows::default();
    for e in events {
        t.on_event(&e.0, &mut rows);
    }
    t.finish_all_closed(&mut rows);
    (rows, t)
}

const CLIENT_PORT: u16 = 40_000;
const SERVER_PORT: u16 = 8080;

#[test]
fn client_connection_has_connecting_task_and_final_bytes() {
    use tcp_state::*;
    let sk = 0xffff_0001;
    let (rows, t) = run(vec![
        // The source port is bound after CLOSE -> SYN_SENT fires.
        Ev::state(100, sk, CLOSE, SYN_SENT, 0, SERVER_PORT).task(42, "curl"),
        Ev::state(150, sk, SYN_SENT, ESTABLISHED, CLIENT_PORT, SERVER_PORT),
        Ev::state(300, sk, ESTABLISHED, FIN_WAIT1, CLIENT_PORT, SERVER_PORT),
        Ev::state(310, sk, FIN_WAIT1, FIN_WAIT2, CLIENT_PORT, SERVER_PORT),
        Ev::state(320, sk, FIN_WAIT2, CLOSE, CLIENT_PORT, SERVER_PORT).bytes(1234, 567),
    ]);
    assert_eq!(t.live(), 0);
    let kinds: Vec<_> = rows.events.iter().map(|e| (e.event, e.new_state)).collect();
    assert_eq!(
        kinds,
        [
            (TcpEventType::StateChange, "SYN_SENT"),
            // Written once the local port is known, at the time of the SYN.
            (TcpEventType::Connect, ""),
            (TcpEventType::StateChange, "ESTABLISHED"),
            (TcpEventType::StateChange, "FIN_WAIT1"),
            (TcpEventType::StateChange, "FIN_WAIT2"),
            (TcpEventType::Close, "CLOSE"),
        ]
    );
    assert!(
        rows.events
            .iter()
            .all(|e| e.owner.pid == 42 && e.role == Role::Client)
    );
    let connect = &rows.events[1];
    assert_eq!(connect.ts_ns, 1_000_100);
    assert_eq!(
        (connect.endpoints.src_port, connect.endpoints.dst_port),
        (CLIENT_PORT, SERVER_PORT)
    );
    assert_eq!(connect.syscall_ret, None);
    assert_eq!(rows.flows.len(), 1);
    let f = &rows.flows[0];
    assert_eq!(f.role, Role::Client);
    assert_eq!((f.owner.pid, f.owner.tid, &*f.owner.comm), (42, 42, "curl"));
    assert_eq!((f.start_ts_ns, f.end_ts_ns), (1_000_100, 1_000_320));
    assert_eq!((f.bytes_sent, f.bytes_received), (1234, 567));
    assert_eq!(f.endpoints.src_ip.to_string(), "10.0.0.1");
    assert_eq!(
        (f.endpoints.src_port, f.endpoints.dst_port),
        (CLIENT_PORT, SERVER_PORT)
    );
    assert!(!f.open);
}

#[test]
fn server_connection_that_moved_no_data_is_owned_by_the_task_that_released_it() {
    use tcp_state::*;
    let (listener, sk) = (0xffff_1000, 0xffff_2000);
    let (rows, _) = run(vec![
        Ev::state(1, listener, CLOSE, LISTEN, SERVER_PORT, 0).task(7, "nginx"),
        // Child socket events run in softirq: the current task is unrelated.
        Ev::state(10, sk, LISTEN, SYN_RECV, SERVER_PORT, CLIENT_PORT),
        Ev::state(11, sk, SYN_RECV, ESTABLISHED, SERVER_PORT, CLIENT_PORT),
        Ev::state(20, sk, ESTABLISHED, CLOSE_WAIT, SERVER_PORT, CLIENT_PORT),
        // The server closes its end: the release comes first, in its task.
        Ev::release(21, sk, 7, "nginx"),
        Ev::state(22, sk, CLOSE_WAIT, LAST_ACK, SERVER_PORT, CLIENT_PORT),
        Ev::state(23, sk, LAST_ACK, CLOSE, SERVER_PORT, CLIENT_PORT).bytes(10, 20),
        // A second release (another process held the socket too) changes nothing.
        Ev::release(24, sk, 8, "other"),
    ]);
    // The listener's own transitions are not connection events.
    let kinds: Vec<_> = rows.events.iter().map(|e| (e.event, e.owner.pid)).collect();
    assert_eq!(
        kinds,
        [
            (TcpEventType::StateChange, 0),
            (TcpEventType::StateChange, 0),
            (TcpEventType::StateChange, 0),
            (TcpEventType::Accept, 7),
            (TcpEventType::StateChange, 7),
            (TcpEventType::Close, 7),
        ]
    );
    let accept = &rows.events[3];
    assert_eq!((accept.ts_ns, accept.syscall_ret), (1_000_021, None));
    assert_eq!((accept.owner.tid, &*accept.owner.comm), (8, "nginx"));
    let f = &rows.flows[0];
    assert_eq!(f.role, Role::Server);
    assert_eq!((f.owner.pid, &*f.owner.comm), (7, "nginx"));
    // src is the client (the remote end here), dst the server.
    assert_eq!(f.endpoints.src_ip.to_string(), "10.0.0.2");
    assert_eq!(
        (f.endpoints.src_port, f.endpoints.dst_port),
        (CLIENT_PORT, SERVER_PORT)
    );
    assert_eq!(f.endpoints.dst_ip.to_string(), "10.0.0.1");
    assert_eq!((f.bytes_sent, f.bytes_received), (10, 20));
}

#[test]
fn server_connection_is_owned_by_the_task_of_its_first_data_event() {
    use tcp_state::*;
    let sk = 0xffff_3000;
    let mut t = ConnTracker::new(Clock::with_offset(1_000_000), 16);
    let mut rows = Rows::default();
    for e in [
        Ev::state(1, 0xffff_1000, CLOSE, LISTEN, SERVER_PORT, 0),
        Ev::state(10, sk, LISTEN, SYN_RECV, SERVER_PORT, CLIENT_PORT),
        Ev::state(11, sk, SYN_RECV, ESTABLISHED, SERVER_PORT, CLIENT_PORT),
    ] {
        t.on_event(&e.0, &mut rows);
    }
    let read = |ts: u64, pid: u32, comm: &str| DataEvent {
        ts_exit_ns: ts,
        skaddr: sk,
        sport: SERVER_PORT,
        dport: CLIENT_PORT,
        pid,
        tid: pid + 1,
        cgroup_id: 77,
        comm: comm_bytes(comm),
        ..DataEvent::zeroed()
    };
    // An event of another socket at the same (reused) address does not name it.
    let mut stranger = read(29, 66, "stranger");
    (stranger.sport, stranger.dport) = (SERVER_PORT, CLIENT_PORT + 1);
    t.conn_for_data(&stranger, &mut NoRows);
    // The worker's first read names the connection's owner; later events (another process
    // writing to an inherited socket) do not change it.
    let conn = t.conn_for_data(&read(30, 12, "worker"), &mut rows).unwrap();
    assert_eq!(
        (conn.role, conn.ports),
        (Role::Server, (SERVER_PORT, CLIENT_PORT))
    );
    t.conn_for_data(&read(31, 13, "other"), &mut rows).unwrap();
    t.on_event(&Ev::release(40, sk, 12, "worker").0, &mut rows);
    assert!(
        t.conn_for_data(&read(41, 12, "worker"), &mut NoRows)
            .is_some()
    );
    t.on_event(
        &Ev::state(50, sk, ESTABLISHED, CLOSE, SERVER_PORT, CLIENT_PORT).0,
        &mut rows,
    );
    t.finish_all_closed(&mut rows);
    let accepts: Vec<_> = rows
        .events
        .iter()
        .filter(|e| e.event == TcpEventType::Accept)
        .map(|e| (e.ts_ns, e.owner.clone()))
        .collect();
    let worker = Owner {
        pid: 12,
        tid: 13,
        comm: "worker".into(),
        cgroup_id: 77,
    };
    assert_eq!(accepts, [(1_000_030, worker.clone())]);
    assert_eq!(rows.flows[0].owner, worker);
    // A client connection keeps the task that connected.
    let client = 0xffff_4000;
    t.on_event(
        &Ev::state(60, client, CLOSE, SYN_SENT, 0, 80)
            .task(5, "curl")
            .0,
        &mut rows,
    );
    let client_read = DataEvent {
        skaddr: client,
        ..read(61, 12, "worker")
    };
    t.conn_for_data(&client_read, &mut rows);
    assert_eq!(&*rows.events.last().unwrap().owner.comm, "curl");
}

/// A sink that must not be written to.
struct NoRows;

impl RecordSink for NoRows {
    fn tcp_event(&mut self, record: TcpEventRecord) {
        panic!("unexpected row {record:?}");
    }
    fn flow(&mut self, record: FlowRecord) {
        panic!("unexpected row {record:?}");
    }
}

#[test]
fn connection_predating_the_agent_gets_role_from_listening_ports() {
    use tcp_state::*;
    let (rows, _) = run(vec![
        Ev::state(1, 0xa, CLOSE, LISTEN, SERVER_PORT, 0),
        Ev::state(5, 0xb, ESTABLISHED, CLOSE_WAIT, SERVER_PORT, CLIENT_PORT),
        Ev::state(6, 0xc, ESTABLISHED, FIN_WAIT1, CLIENT_PORT, 5432),
    ]);
    assert_eq!(rows.events[0].role, Role::Server);
    assert_eq!(rows.events[1].role, Role::Client);
    assert_eq!(rows.events[1].endpoints.dst_port, 5432);
}

#[test]
fn reused_socket_address_starts_a_new_connection() {
    use tcp_state::*;
    let sk = 0xbeef;
    let (rows, t) = run(vec![
        Ev::state(1, sk, CLOSE, SYN_SENT, 0, 80).task(1, "a"),
        // CLOSE lost (ring buffer full); the address is reused by another connect.
        Ev::state(5, sk, CLOSE, SYN_SENT, 0, 81).task(2, "b"),
        Ev::state(6, sk, SYN_SENT, CLOSE, 1000, 81),
    ]);
    assert_eq!(t.live(), 0);
    assert_eq!(rows.flows.len(), 1);
    assert_eq!(&*rows.flows[0].owner.comm, "b");
    assert_ne!(rows.events[0].conn_id, rows.events[1].conn_id);
}

#[test]
fn table_bound_and_unknown_events_are_counted() {
    use tcp_state::*;
    let mut events: Vec<Ev> = (0..20)
        .map(|i| Ev::state(i, 0x100 + i, CLOSE, SYN_SENT, 0, 80))
        .collect();
    // Later events of the four connections not followed do not count them again, and when a
    // followed one closes, they are not picked up half-way.
    events.extend((16..20).map(|i| Ev::state(20 + i, 0x100 + i, SYN_SENT, ESTABLISHED, 0, 80)));
    events.push(Ev::state(40, 0x100, SYN_SENT, CLOSE, 0, 80));
    events.push(Ev::state(41, 0x110, ESTABLISHED, FIN_WAIT1, 0, 80));
    // The release of a socket never followed (a UDP or listening one, say) is no row.
    events.push(Ev::release(30, 0xdead, 1, "x"));
    let mut junk = Ev::state(31, 0x1, 0, 0, 0, 0);
    junk.0.kind = 99;
    events.push(junk);
    let (rows, t) = run(events);
    assert_eq!(t.live(), 15);
    // 16 starts, then the closed one's connect row (its SYN_SENT ended), its CLOSE state
    // change and its close row.
    assert_eq!(rows.events.len(), 19);
    assert_eq!(rows.flows.len(), 1);
    assert_eq!(
        t.stats(),
        TrackerStats {
            table_full: 4,
            malformed: 1,
            untracked_rtt: 0,
        }
    );
}

#[test]
fn open_connections_are_reported_with_sock_diag_counters() {
    use tcp_state::*;
    let sk = 0x77;
    let mut t = ConnTracker::new(Clock::with_offset(0), 16);
    let mut rows = Rows::default();
    // A timestamp of 1 ns after boot is far in the past of wall_now().
    t.on_event(
        &Ev::state(1, sk, CLOSE, SYN_SENT, 0, 80).task(3, "c").0,
        &mut rows,
    );
    t.on_event(
        &Ev::state(2, sk, SYN_SENT, ESTABLISHED, 5555, 80).0,
        &mut rows,
    );
    let local = Endpoints {
        src_ip: "10.0.0.1".parse().unwrap(),
        src_port: 5555,
        dst_ip: "10.0.0.2".parse().unwrap(),
        dst_port: 80,
    };
    let info = TcpInfo {
        bytes_sent: 100,
        bytes_received: 200,
        srtt_us: 900,
        min_rtt_us: 700,
        retransmits: 3,
    };
    let counters = HashMap::from([(local, info)]);
    assert_eq!(t.report_open(1_000, &counters, &mut rows), 1);
    let f = rows.flows.last().unwrap();
    assert!(f.open);
    assert_eq!((f.bytes_sent, f.bytes_received), (100, 200));
    assert_eq!(
        (
            f.health.srtt_us,
            f.health.srtt_min_us,
            f.health.srtt_max_us,
            f.health.retransmits
        ),
        (Some(900), Some(700), Some(900), 3)
    );
    assert_eq!(t.live(), 1, "reporting does not end the connection");
    // Younger than the minimum age: not reported.
    assert_eq!(t.report_open(i64::MAX, &counters, &mut rows), 0);
    // RTT samples: one row per followed connection with an RTT, folding into its flow.
    let slower = TcpInfo {
        srtt_us: 1_500,
        min_rtt_us: 650,
        ..info
    };
    assert_eq!(
        t.sample_rtt(&HashMap::from([(local, slower)]), &mut rows),
        1
    );
    let sample = rows.events.last().unwrap();
    assert_eq!(
        (sample.event, sample.conn_id, sample.srtt_us),
        (TcpEventType::Rtt, 1, Some(1_500))
    );
    // A socket sock_diag has not sampled yet (srtt 0) gives no row.
    let unsampled = TcpInfo { srtt_us: 0, ..info };
    assert_eq!(
        t.sample_rtt(&HashMap::from([(local, unsampled)]), &mut rows),
        0
    );
    t.on_event(
        &Ev::state(3, sk, ESTABLISHED, CLOSE, 5555, 80)
            .close_info(1_200, 600, 0, 3, 0)
            .0,
        &mut rows,
    );
    t.finish_all_closed(&mut rows);
    let closed = rows.flows.last().unwrap();
    assert_eq!(
        (
            closed.health.srtt_us,
            closed.health.srtt_min_us,
            closed.health.srtt_max_us
        ),
        (Some(1_200), Some(600), Some(1_500))
    );
}

impl Ev {
    fn kind(ts: u64, sk: u64, kind: TcpEventKind) -> Self {
        let mut e = Self::state(ts, sk, 0, 0, 0, 0).0;
        e.kind = kind as u8;
        Ev(e)
    }

    fn rtt(ts: u64, sk: u64, srtt_us: u32) -> Self {
        let mut e = Self::kind(ts, sk, TcpEventKind::Rtt);
        e.0.srtt_us = srtt_us;
        e
    }

    fn close_info(mut self, srtt: u32, min: u32, max: u32, retrans: u32, sk_err: i32) -> Self {
        self.0.srtt_us = srtt;
        self.0.rtt_min_us = min;
        self.0.rtt_max_us = max;
        self.0.retransmits = retrans;
        self.0.sk_err = sk_err;
        self
    }

    /// A dropped packet from 10.0.0.`from`:`sport` to 10.0.0.`to`:`dport`.
    fn drop_packet(ts: u64, from: u8, sport: u16, to: u8, dport: u16, proto: u8) -> Self {
        let mut e = Self::kind(ts, 0, TcpEventKind::Drop);
        e.0.saddr = v4([10, 0, 0, from]);
        e.0.daddr = v4([10, 0, 0, to]);
        e.0.sport = sport;
        e.0.dport = dport;
        e.0.ip_protocol = proto;
        e.0.reason = 77;
        e
    }
}

fn reasons() -> ReasonNames {
    ReasonNames {
        drop: [(77, "NETFILTER_DROP".to_owned())].into(),
        reset: [(5, "TCP_ABORT_ON_CLOSE".to_owned())].into(),
    }
}

fn run_with_reasons(events: Vec<Ev>) -> (Rows, ConnTracker) {
    let mut t = ConnTracker::new(Clock::with_offset(0), 16).with_reasons(reasons());
    let mut rows = Rows::default();
    for e in events {
        t.on_event(&e.0, &mut rows);
    }
    t.finish_all_closed(&mut rows);
    (rows, t)
}

fn events_of(rows: &Rows) -> Vec<(&'static str, u64, Option<&str>, Option<u32>)> {
    rows.events
        .iter()
        .map(|e| (e.event.as_str(), e.conn_id, e.reason.as_deref(), e.srtt_us))
        .collect()
}

#[test]
fn flow_health_from_samples_retransmits_and_close() {
    use tcp_state::*;
    let (rows, _) = run_with_reasons(vec![
        Ev::state(1_000, 0xa, CLOSE, SYN_SENT, 0, 80).task(7, "curl"),
        Ev::state(1_000 + 2_500_000, 0xa, SYN_SENT, ESTABLISHED, 40000, 80),
        Ev::rtt(3_000_000, 0xa, 2_400),
        Ev::kind(3_100_000, 0xa, TcpEventKind::Retransmit),
        Ev::rtt(4_000_000, 0xa, 9_000),
        // The kernel's min/max cover samples between two reported ones.
        Ev::state(5_000_000, 0xa, FIN_WAIT1, CLOSE, 40000, 80)
            .close_info(3_000, 1_900, 9_500, 4, 0),
    ]);
    assert_eq!(
        events_of(&rows),
        vec![
            ("state_change", 1, None, None),
            ("connect", 1, None, None),
            ("state_change", 1, None, None),
            ("rtt", 1, None, Some(2_400)),
            ("retransmit", 1, None, None),
            ("rtt", 1, None, Some(9_000)),
            ("close", 1, Some("fin"), Some(3_000)),
        ]
    );
    let f = &rows.flows[0];
    assert_eq!(
        f.health,
        FlowHealth {
            srtt_us: Some(3_000),
            srtt_min_us: Some(1_900),
            srtt_max_us: Some(9_500),
            // The kernel counted 4 where one event was seen: the kernel wins.
            retransmits: 4,
            resets: 0,
            connect_latency_ns: Some(2_500_000),
            close_reason: "fin",
        }
    );
}

#[test]
fn failed_connects_get_their_reason_from_the_socket_error() {
    use tcp_state::*;
    let mut events = Vec::new();
    for (i, sk_err) in [111, 110, 113, 0, 13].into_iter().enumerate() {
        let sk = 0x100 + i as u64;
        let t = 1_000 * i as u64;
        events.push(Ev::state(t, sk, CLOSE, SYN_SENT, 41000 + i as u16, 80).task(9, "app"));
        if sk_err == 111 {
            events.push(Ev::kind(t + 1, sk, TcpEventKind::ResetReceived));
        }
        events.push(
            Ev::state(t + 2, sk, SYN_SENT, CLOSE, 41000 + i as u16, 80)
                .close_info(0, 0, 0, 0, sk_err),
        );
    }
    let (rows, _) = run_with_reasons(events);
    let connects: Vec<_> = rows
        .events
        .iter()
        .filter(|e| e.event == TcpEventType::Connect)
        .map(|e| (e.conn_id, e.ts_ns, e.owner.pid))
        .collect();
    // One connect row per connection, at its SYN, written when its SYN_SENT ended.
    assert_eq!(
        connects,
        (0..5)
            .map(|i| (i + 1, 1_000 * i as i64, 9))
            .collect::<Vec<_>>()
    );
    let failed: Vec<_> = rows
        .events
        .iter()
        .filter(|e| e.event == TcpEventType::ConnectFailed)
        .map(|e| (e.conn_id, e.reason.as_deref().unwrap(), &*e.owner.comm))
        .collect();
    assert_eq!(
        failed,
        vec![
            (1, "refused", "app"),
            (2, "timeout", "app"),
            (3, "unreachable", "app"),
            (4, "aborted", "app"),
            (5, "error EACCES", "app"),
        ]
    );
    let closes: Vec<_> = rows
        .flows
        .iter()
        .map(|f| {
            (
                f.health.close_reason,
                f.health.resets,
                f.health.connect_latency_ns,
                f.health.srtt_us,
            )
        })
        .collect();
    assert_eq!(
        closes,
        vec![
            ("rst", 1, None, None),
            ("timeout", 0, None, None),
            ("unreachable", 0, None, None),
            ("aborted", 0, None, None),
            ("error EACCES", 0, None, None),
        ]
    );
}

#[test]
fn resets_and_drops_are_charged_to_their_connection() {
    use tcp_state::*;
    let (rows, t) = run_with_reasons(vec![
        // Client 10.0.0.1:40000 -> 10.0.0.2:80.
        Ev::state(1, 0xc, CLOSE, SYN_SENT, 40000, 80),
        Ev::state(2, 0xc, SYN_SENT, ESTABLISHED, 40000, 80),
        // A packet it sent, dropped; one it would have received, dropped.
        Ev::drop_packet(3, 1, 40000, 2, 80, 6),
        Ev::drop_packet(4, 2, 80, 1, 40000, 6),
        // Packets of no followed connection: TCP and UDP.
        Ev::drop_packet(5, 1, 40001, 2, 80, 6),
        Ev::drop_packet(6, 1, 5353, 2, 53, 17),
        {
            let mut e = Ev::kind(7, 0xc, TcpEventKind::ResetSent);
            e.0.reason = 5;
            e.0.sport = 40000;
            e.0.dport = 80;
            e
        },
        // A RST from a closed port (no socket).
        {
            let mut e = Ev::kind(8, 0, TcpEventKind::ResetSent);
            e.0.reason = 1;
            e.0.sport = 81;
            e.0.dport = 50000;
            e
        },
        Ev::rtt(9, 0xdead, 100),
        Ev::state(10, 0xc, ESTABLISHED, CLOSE, 40000, 80).close_info(50, 40, 60, 0, 104),
    ]);
    assert_eq!(
        events_of(&rows)[3..],
        [
            ("drop", 1, Some("NETFILTER_DROP"), None),
            ("drop", 1, Some("NETFILTER_DROP"), None),
            ("drop", 0, Some("NETFILTER_DROP"), None),
            ("drop", 0, Some("NETFILTER_DROP"), None),
            ("reset_sent", 1, Some("TCP_ABORT_ON_CLOSE"), None),
            // Unnamed reason codes stay numbers.
            ("reset_sent", 0, Some("1"), None),
            ("close", 1, Some("rst"), Some(50)),
        ]
    );
    let udp = &rows.events[6];
    assert_eq!((udp.transport, udp.endpoints.dst_port), ("udp", 53));
    let closed_port = &rows.events[8];
    assert_eq!(
        (
            closed_port.role,
            closed_port.endpoints.dst_port,
            closed_port.endpoints.src_port
        ),
        (Role::Server, 81, 50000)
    );
    assert_eq!(rows.flows[0].health.resets, 1);
    assert_eq!(rows.flows[0].health.close_reason, "rst");
    assert_eq!(t.stats().untracked_rtt, 1);
    // A drop right after the close is still the connection's; once
    // its rows are written the connection leaves the address index.
    let mut t = ConnTracker::new(Clock::with_offset(0), 16);
    let mut rows = Rows::default();
    for e in [
        Ev::state(1, 0xc, CLOSE, SYN_SENT, 40000, 80),
        Ev::state(2, 0xc, SYN_SENT, ESTABLISHED, 40000, 80),
        Ev::state(3, 0xc, ESTABLISHED, CLOSE, 40000, 80),
        Ev::drop_packet(4, 1, 40000, 2, 80, 6),
    ] {
        t.on_event(&e.0, &mut rows);
    }
    assert_eq!(rows.events.last().unwrap().conn_id, 1);
    assert!(rows.flows.is_empty(), "the close waits");
    t.finish_closed(3 + CLOSE_HOLD_NS - 1, &mut rows);
    assert!(
        rows.flows.is_empty(),
        "for CLOSE_HOLD_NS after the CLOSE event"
    );
    t.finish_closed(3 + CLOSE_HOLD_NS, &mut rows);
    assert_eq!(rows.flows.len(), 1);
    t.on_event(&Ev::drop_packet(5, 1, 40000, 2, 80, 6).0, &mut rows);
    assert_eq!(rows.events.last().unwrap().conn_id, 0);
}
