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
            ret: 0,
            sport: local,
            dport: remote,
            family: AF_INET,
            kind: TcpEventKind::StateChange as u8,
            old_state: old,
            new_state: new,
            _pad: [0; 3],
            saddr: v4([10, 0, 0, 1]),
            daddr: v4([10, 0, 0, 2]),
            comm: comm_bytes("softirq"),
        })
    }

    fn syscall(ts: u64, sk: u64, kind: TcpEventKind, pid: u32, comm: &str, ret: i32) -> Self {
        let mut e = Self::state(ts, sk, 0, 0, 0, 0).0;
        e.kind = kind as u8;
        e.pid = pid;
        e.tid = pid + 1;
        e.comm = comm_bytes(comm);
        e.ret = ret;
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
        Ev::syscall(160, sk, TcpEventKind::Connect, 42, "curl", 0),
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
            (TcpEventType::StateChange, "ESTABLISHED"),
            (TcpEventType::Connect, ""),
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
    assert_eq!(rows.events[2].syscall_ret, Some(0));
    assert_eq!(rows.flows.len(), 1);
    let f = &rows.flows[0];
    assert_eq!(f.role, Role::Client);
    assert_eq!(
        (f.owner.pid, f.owner.tid, f.owner.comm.as_str()),
        (42, 43, "curl")
    );
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
fn server_connection_is_owned_by_the_accepting_task() {
    use tcp_state::*;
    let (listener, sk) = (0xffff_1000, 0xffff_2000);
    let (rows, _) = run(vec![
        Ev::state(1, listener, CLOSE, LISTEN, SERVER_PORT, 0).task(7, "nginx"),
        // Child socket events run in softirq: the current task is unrelated.
        Ev::state(10, sk, LISTEN, SYN_RECV, SERVER_PORT, CLIENT_PORT),
        Ev::state(11, sk, SYN_RECV, ESTABLISHED, SERVER_PORT, CLIENT_PORT),
        Ev::syscall(12, sk, TcpEventKind::Accept, 7, "nginx", 5),
        Ev::state(20, sk, ESTABLISHED, CLOSE_WAIT, SERVER_PORT, CLIENT_PORT),
        Ev::state(21, sk, CLOSE_WAIT, LAST_ACK, SERVER_PORT, CLIENT_PORT),
        Ev::state(22, sk, LAST_ACK, CLOSE, SERVER_PORT, CLIENT_PORT).bytes(10, 20),
    ]);
    // The listener's own transitions are not connection events.
    assert_eq!(rows.events.len(), 6);
    assert_eq!(rows.events[0].owner.pid, 0, "owner unknown before accept");
    assert_eq!(rows.events[2].event, TcpEventType::Accept);
    assert_eq!(rows.events[2].syscall_ret, Some(5));
    assert_eq!(rows.events[5].owner.comm, "nginx");
    let f = &rows.flows[0];
    assert_eq!(f.role, Role::Server);
    assert_eq!((f.owner.pid, f.owner.comm.as_str()), (7, "nginx"));
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
    assert_eq!(rows.flows[0].owner.comm, "b");
    assert_ne!(rows.events[0].conn_id, rows.events[1].conn_id);
}

#[test]
fn table_bound_and_unknown_events_are_counted() {
    use tcp_state::*;
    let mut events: Vec<Ev> = (0..20)
        .map(|i| Ev::state(i, 0x100 + i, CLOSE, SYN_SENT, 0, 80))
        .collect();
    events.push(Ev::syscall(30, 0xdead, TcpEventKind::Accept, 1, "x", 3));
    let mut junk = Ev::state(31, 0x1, 0, 0, 0, 0);
    junk.0.kind = 99;
    events.push(junk);
    let (rows, t) = run(events);
    assert_eq!(t.live(), 16);
    assert_eq!(rows.events.len(), 16);
    assert_eq!(
        t.stats(),
        TrackerStats {
            table_full: 4,
            unmatched_syscalls: 1,
            malformed: 1
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
    let counters = HashMap::from([(local, (100, 200))]);
    assert_eq!(t.report_open(1_000, &counters, &mut rows), 1);
    let f = rows.flows.last().unwrap();
    assert!(f.open);
    assert_eq!((f.bytes_sent, f.bytes_received), (100, 200));
    assert_eq!(t.live(), 1, "reporting does not end the connection");
    // Younger than the minimum age: not reported.
    assert_eq!(t.report_open(i64::MAX, &counters, &mut rows), 0);
}
