//! Connection tracking: turns the kernel's raw TCP events into `tcp_events` and `flows` rows.
//!
//! The kernel reports state changes per `struct sock` (its address is the connection's identity
//! while it lives) and, separately, which task connected or accepted which socket. The tracker
//! joins the two and decides each connection's role:
//!
//! - CLOSE -> SYN_SENT is a client; this transition runs in the connecting task, so its pid is
//!   the owner's.
//! - -> SYN_RECV is a server-side child socket; it runs in softirq context, so the owner is only
//!   known when accept() returns the socket.
//! - A socket first seen in another state (it predates the agent) is a server if its local port
//!   is a known listening port, else a client.
//!
//! Entering CLOSE ends the connection and yields its `flows` row, with its network health:
//! RTT (kernel samples, min and max), retransmissions, resets, connect latency (SYN_SENT to
//! ESTABLISHED) and why it closed. A client socket that goes from SYN_SENT to CLOSE also
//! yields a `connect_failed` row whose reason comes from the socket's error (`sk_err`).
//!
//! Retransmissions, resets and RTT samples name their socket; packet drops carry only the
//! packet's addresses and are matched to a connection through an index of live connections
//! by (local, remote) address.
//!
//! The table of live connections is bounded; connections beyond the bound are not tracked
//! and are counted.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::IpAddr,
};

use kindling_agent_common::{
    AF_INET, AF_INET6, COMM_LEN, DataEvent, IPPROTO_UDP, TcpEvent, TcpEventKind, tcp_state,
};

use crate::{
    decode::{Clock, ReasonNames, comm, ip, state_name},
    records::{
        Endpoints, FlowHealth, FlowRecord, Owner, Role, TcpEventRecord, TcpEventType, TlsInfo,
    },
    sockdiag::TcpInfo,
};

/// errno values found in `sk_err`.
mod errno {
    pub(super) const EPIPE: i32 = 32;
    pub(super) const ENETUNREACH: i32 = 101;
    pub(super) const ECONNRESET: i32 = 104;
    pub(super) const ETIMEDOUT: i32 = 110;
    pub(super) const ECONNREFUSED: i32 = 111;
    pub(super) const EHOSTUNREACH: i32 = 113;
}

/// Where the tracker's rows go.
pub trait RecordSink {
    /// A `tcp_events` row.
    fn tcp_event(&mut self, record: TcpEventRecord);
    /// A `flows` row.
    fn flow(&mut self, record: FlowRecord);
}

/// What the sessionizer knows about a TCP connection from the connection tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRef {
    /// This node's end.
    pub role: Role,
    /// `flows.conn_id`.
    pub conn_id: u64,
    /// (local, remote) port as the tracker knows them; 0 where not known yet.
    pub ports: (u16, u16),
}

impl ConnRef {
    /// Whether this is the connection of an event with these ports. The two ring buffers are
    /// drained one after the other, so a data event of a new socket can arrive while the
    /// tracker still holds the previous connection of the same (reused) socket address.
    pub fn matches(&self, local: u16, remote: u16) -> bool {
        (self.ports.0 == 0 || self.ports.0 == local)
            && (self.ports.1 == 0 || self.ports.1 == remote)
    }
}

/// Counters of events the tracker could not use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// New connections not tracked because the table was full (each counted once, at its
    /// SYN_SENT or SYN_RECV).
    pub table_full: u64,
    /// Events with an unknown kind byte.
    pub malformed: u64,
    /// RTT samples of sockets the tracker does not follow (they predate the agent and have
    /// not changed state since, or the table was full).
    pub untracked_rtt: u64,
}

#[derive(Debug, Clone)]
struct Conn {
    conn_id: u64,
    role: Role,
    owner: Owner,
    endpoints: Endpoints,
    start_ts_ns: i64,
    /// When the client sent its SYN.
    syn_sent_ts_ns: Option<i64>,
    /// A client connection's `connect` row waits for its local port (bound just after the
    /// SYN_SENT transition), so it is written at the next transition.
    connect_row_due: bool,
    connect_latency_ns: Option<u64>,
    retransmits: u32,
    resets: u32,
    /// (last, min, max) smoothed RTT in microseconds.
    rtt: Option<(u32, u32, u32)>,
    /// What the sessionizer read of a TLS start ([`ConnTracker::note_tls`]).
    tls: TlsInfo,
}

impl Conn {
    /// A server connection whose accepting process is not known yet.
    fn unowned_server(&self) -> bool {
        self.role == Role::Server && self.owner.pid == 0
    }

    fn conn_ref(&self) -> ConnRef {
        let (local, remote) = match self.role {
            Role::Client => (self.endpoints.src_port, self.endpoints.dst_port),
            Role::Server => (self.endpoints.dst_port, self.endpoints.src_port),
        };
        ConnRef {
            role: self.role,
            conn_id: self.conn_id,
            ports: (local, remote),
        }
    }

    /// A `tcp_events` row of this connection.
    fn row(&self, ts_ns: i64, event: TcpEventType, endpoints: Endpoints) -> TcpEventRecord {
        TcpEventRecord::new(
            ts_ns,
            event,
            self.conn_id,
            self.role,
            self.owner.clone(),
            endpoints,
        )
    }

    /// Folds in what sock_diag reports for the live socket.
    fn note_info(&mut self, info: &TcpInfo) {
        if info.srtt_us > 0 {
            self.note_rtt(info.srtt_us);
            self.note_min(info.min_rtt_us);
        }
        self.retransmits = self.retransmits.max(info.retransmits);
    }

    /// The kernel's minimum RTT (0 and u32::MAX mean none yet).
    fn note_min(&mut self, min_rtt_us: u32) {
        if let Some(r) = self.rtt.as_mut()
            && min_rtt_us > 0
            && min_rtt_us != u32::MAX
        {
            r.1 = r.1.min(min_rtt_us);
        }
    }

    fn note_rtt(&mut self, srtt_us: u32) {
        self.rtt = Some(match self.rtt {
            None => (srtt_us, srtt_us, srtt_us),
            Some((_, min, max)) => (srtt_us, min.min(srtt_us), max.max(srtt_us)),
        });
    }

    fn health(&self, close_reason: &'static str) -> FlowHealth {
        FlowHealth {
            srtt_us: self.rtt.map(|r| r.0),
            srtt_min_us: self.rtt.map(|r| r.1),
            srtt_max_us: self.rtt.map(|r| r.2),
            retransmits: self.retransmits,
            resets: self.resets,
            connect_latency_ns: self.connect_latency_ns,
            close_reason,
        }
    }
}

/// How long a closed connection's rows wait for the socket's last events (kernel time).
pub const CLOSE_HOLD_NS: u64 = 100_000_000;

/// A connection that entered CLOSE, waiting [`CLOSE_HOLD_NS`] for late events.
#[derive(Debug)]
struct Closing {
    conn: Conn,
    /// The CLOSE state change, with the kernel's final counters.
    ev: TcpEvent,
    ts: i64,
    seen: Endpoints,
}

/// The task an event ran in.
fn task_owner(pid: u32, tid: u32, raw_comm: &[u8; COMM_LEN], cgroup_id: u64) -> Owner {
    Owner {
        pid,
        tid,
        comm: comm(raw_comm).into(),
        cgroup_id,
    }
}

/// `owner` accepted the server connection `conn` (seen first at `ts_ns`): it owns the
/// connection's rows from now on, and the `accept` row says so.
fn claim(conn: &mut Conn, owner: Owner, ts_ns: i64, sink: &mut impl RecordSink) {
    conn.owner = owner;
    sink.tcp_event(conn.row(ts_ns, TcpEventType::Accept, conn.endpoints));
}

/// Writes a closed connection's `connect_failed` (for a connect that never got through),
/// `close` and `flows` rows.
fn emit_close(closing: Closing, sink: &mut impl RecordSink) {
    let Closing {
        mut conn,
        ev,
        ts,
        seen,
    } = closing;
    let failed_connect = ev.old_state == tcp_state::SYN_SENT;
    let reason = if failed_connect && ev.sk_err == 0 {
        "aborted"
    } else {
        close_reason(ev.sk_err, conn.resets)
    };
    let mut row = conn.row(ts, TcpEventType::Close, seen);
    row.old_state = state_name(ev.old_state);
    row.new_state = state_name(ev.new_state);
    if failed_connect {
        let mut failed = row.clone();
        failed.event = TcpEventType::ConnectFailed;
        failed.reason = Some(connect_failure(ev.sk_err).to_owned());
        sink.tcp_event(failed);
    }
    row.reason = Some(reason.to_owned());
    row.srtt_us = (ev.srtt_us > 0).then_some(ev.srtt_us);
    sink.tcp_event(row);
    // The kernel's own counters are exact where events could be lost.
    conn.retransmits = conn.retransmits.max(ev.retransmits);
    if ev.srtt_us > 0 {
        conn.note_rtt(ev.srtt_us);
        conn.note_min(ev.rtt_min_us);
        if let Some(r) = conn.rtt.as_mut() {
            r.2 = r.2.max(ev.rtt_max_us);
        }
    }
    let health = conn.health(reason);
    sink.flow(FlowRecord {
        start_ts_ns: conn.start_ts_ns,
        end_ts_ns: ts,
        conn_id: conn.conn_id,
        owner: conn.owner,
        role: conn.role,
        endpoints: conn.endpoints,
        bytes_sent: ev.bytes_sent,
        bytes_received: ev.bytes_received,
        open: false,
        health,
        tls: conn.tls,
    });
}

/// Why a connection attempt failed, from the socket's error.
pub fn connect_failure(sk_err: i32) -> &'static str {
    match sk_err {
        errno::ECONNREFUSED => "refused",
        errno::ETIMEDOUT => "timeout",
        errno::EHOSTUNREACH | errno::ENETUNREACH => "unreachable",
        0 => "aborted",
        errno::ECONNRESET => "rst",
        other => errno_name(other),
    }
}

/// A short name for errno values without a reason of their own.
fn errno_name(errno: i32) -> &'static str {
    match errno {
        1 => "error EPERM",
        13 => "error EACCES",
        99 => "error EADDRNOTAVAIL",
        _ => "error",
    }
}

/// Why an established connection closed.
fn close_reason(sk_err: i32, resets: u32) -> &'static str {
    match sk_err {
        errno::ETIMEDOUT => "timeout",
        errno::EHOSTUNREACH | errno::ENETUNREACH => "unreachable",
        errno::ECONNRESET | errno::ECONNREFUSED | errno::EPIPE => "rst",
        _ if resets > 0 => "rst",
        0 => "fin",
        other => errno_name(other),
    }
}

/// Follows live TCP connections by socket address.
#[derive(Debug)]
pub struct ConnTracker {
    clock: Clock,
    max_conns: usize,
    /// Looked up for every data event (by skaddr): a fast hasher (foldhash) over kernel
    /// addresses.
    conns: HashMap<u64, Conn, foldhash::fast::RandomState>,
    /// Listening sockets: skaddr -> local port.
    listeners: HashMap<u64, u16>,
    listen_ports: HashSet<u16>,
    next_conn_id: u64,
    /// Sockets whose connection was not followed because the table was full, until their
    /// CLOSE (at most `max_conns`).
    not_followed: HashSet<u64>,
    stats: TrackerStats,
    /// Live connections by their local view (src = local end), for matching packet drops.
    by_tuple: HashMap<Endpoints, u64>,
    /// Connections that entered CLOSE, their rows not written yet (see
    /// [`ConnTracker::finish_closed`]), by socket address: several when new connections
    /// reused the address within the hold (short connections of one client often do), oldest
    /// first.
    closing: HashMap<u64, Vec<Closing>>,
    /// (CLOSE event time, skaddr) in arrival order: the next closes due, without a scan.
    closing_order: VecDeque<(u64, u64)>,
    reasons: ReasonNames,
    /// (skaddr, conn_id) of connections closed since the last [`ConnTracker::take_closed`].
    closed: Vec<(u64, u64)>,
}

fn endpoints(role: Role, ev: &TcpEvent) -> Endpoints {
    let local = (ip(ev.family, &ev.saddr), ev.sport);
    let remote = (ip(ev.family, &ev.daddr), ev.dport);
    let (src, dst) = match role {
        Role::Client => (local, remote),
        Role::Server => (remote, local),
    };
    Endpoints {
        src_ip: src.0,
        src_port: src.1,
        dst_ip: dst.0,
        dst_port: dst.1,
    }
}

impl ConnTracker {
    /// A tracker following at most `max_conns` live connections.
    pub fn new(clock: Clock, max_conns: usize) -> Self {
        Self {
            clock,
            max_conns,
            conns: HashMap::default(),
            listeners: HashMap::new(),
            listen_ports: HashSet::new(),
            next_conn_id: 1,
            not_followed: HashSet::new(),
            closed: Vec::new(),
            stats: TrackerStats::default(),
            by_tuple: HashMap::new(),
            closing: HashMap::new(),
            closing_order: VecDeque::new(),
            reasons: ReasonNames::default(),
        }
    }

    /// Names drop and reset reasons with the kernel's enums (else they are numbers).
    pub fn with_reasons(mut self, reasons: ReasonNames) -> Self {
        self.reasons = reasons;
        self
    }

    /// Numbers connections from `first` on (1 by default): a restarted agent that reloaded
    /// rows (`--spill-dir`) continues after their largest `conn_id`.
    pub fn with_first_conn_id(mut self, first: u64) -> Self {
        self.next_conn_id = first.max(1);
        self
    }

    /// What could not be used so far.
    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// Connections currently followed.
    pub fn live(&self) -> usize {
        self.conns.len()
    }

    /// What the sessionizer read of the TLS start of connection `conn_id` on socket `skaddr`:
    /// kept for its `flows` rows, also while its close rows are held (a short connection's
    /// data events often come in the round that saw it close); ignored when the socket is
    /// another connection's by now.
    pub fn note_tls(&mut self, skaddr: u64, conn_id: u64, tls: TlsInfo) {
        if let Some(conn) = self.find_conn(skaddr, |c| c.conn_id == conn_id) {
            conn.tls.update(tls);
        }
    }

    /// Role and id of the live connection of socket `skaddr`, if followed.
    pub fn conn_ref(&self, skaddr: u64) -> Option<ConnRef> {
        self.conns.get(&skaddr).map(Conn::conn_ref)
    }

    /// Sockets whose connection closed since the last call, as (skaddr, conn_id); the caller
    /// takes them every round, which keeps the list short.
    pub fn take_closed(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.closed)
    }

    /// Adds ports that were listening before the agent started (their LISTEN transition was
    /// never seen); they decide the role of sockets the tracker does not know.
    pub fn seed_listen_ports(&mut self, ports: impl IntoIterator<Item = u16>) {
        self.listen_ports.extend(ports);
    }

    /// Local ports with a listening socket.
    pub fn listen_ports(&self) -> &HashSet<u16> {
        &self.listen_ports
    }

    /// Processes one kernel event.
    pub fn on_event(&mut self, ev: &TcpEvent, sink: &mut impl RecordSink) {
        match TcpEventKind::from_u8(ev.kind) {
            Some(TcpEventKind::StateChange) => self.on_state_change(ev, sink),
            Some(TcpEventKind::Release) => self.on_release(ev, sink),
            Some(kind @ (TcpEventKind::Retransmit | TcpEventKind::ResetReceived)) => {
                self.on_socket_health(kind, ev, sink)
            }
            Some(TcpEventKind::ResetSent) => self.on_reset_sent(ev, sink),
            Some(TcpEventKind::Rtt) => self.on_rtt(ev, sink),
            Some(TcpEventKind::Drop) => self.on_drop(ev, sink),
            None => self.stats.malformed += 1,
        }
    }

    /// A row for an event of a socket: its connection's when followed, else one with
    /// `conn_id` 0 whose role is guessed from the listening ports.
    fn socket_row(&mut self, ev: &TcpEvent, event: TcpEventType) -> TcpEventRecord {
        let ts = self.clock.wall(ev.ts_ns);
        self.learn_endpoints(ev);
        let listening = self.listen_ports.contains(&ev.sport);
        match self.conn_mut(ev.skaddr) {
            Some(conn) => {
                match event {
                    // Saturating: the count may start from the kernel's total_retrans (any u32).
                    TcpEventType::Retransmit => {
                        conn.retransmits = conn.retransmits.saturating_add(1)
                    }
                    TcpEventType::ResetSent | TcpEventType::ResetReceived => {
                        conn.resets = conn.resets.saturating_add(1);
                    }
                    _ => {}
                }
                conn.row(ts, event, conn.endpoints)
            }
            None => {
                let role = if listening {
                    Role::Server
                } else {
                    Role::Client
                };
                TcpEventRecord::new(ts, event, 0, role, Owner::default(), endpoints(role, ev))
            }
        }
    }

    fn on_socket_health(&mut self, kind: TcpEventKind, ev: &TcpEvent, sink: &mut impl RecordSink) {
        let event = if kind == TcpEventKind::Retransmit {
            TcpEventType::Retransmit
        } else {
            TcpEventType::ResetReceived
        };
        let mut row = self.socket_row(ev, event);
        if kind == TcpEventKind::Retransmit {
            row.old_state = state_name(ev.old_state);
            row.new_state = row.old_state;
        }
        sink.tcp_event(row);
    }

    /// A RST this end sent: for a socket, or with no socket (`skaddr` 0) in answer to a packet
    /// for a closed port, which makes this end the would-be server.
    fn on_reset_sent(&mut self, ev: &TcpEvent, sink: &mut impl RecordSink) {
        let mut row = if ev.skaddr != 0 && self.conn_ref_any(ev.skaddr).is_some() {
            self.socket_row(ev, TcpEventType::ResetSent)
        } else {
            let ts = self.clock.wall(ev.ts_ns);
            TcpEventRecord::new(
                ts,
                TcpEventType::ResetSent,
                0,
                Role::Server,
                Owner::default(),
                endpoints(Role::Server, ev),
            )
        };
        row.reason = Some(self.reasons.reset_reason(ev.reason));
        sink.tcp_event(row);
    }

    fn on_rtt(&mut self, ev: &TcpEvent, sink: &mut impl RecordSink) {
        let Some(conn) = self.conns.get_mut(&ev.skaddr) else {
            self.stats.untracked_rtt += 1;
            return;
        };
        conn.note_rtt(ev.srtt_us);
        let mut row = conn.row(self.clock.wall(ev.ts_ns), TcpEventType::Rtt, conn.endpoints);
        row.srtt_us = Some(ev.srtt_us);
        sink.tcp_event(row);
    }

    /// A dropped packet (`saddr` its source): charged to the connection that sent it if
    /// followed, else to the one it was going to.
    fn on_drop(&mut self, ev: &TcpEvent, sink: &mut impl RecordSink) {
        let src = (ip(ev.family, &ev.saddr), ev.sport);
        let dst = (ip(ev.family, &ev.daddr), ev.dport);
        let view = |local: (IpAddr, u16), remote: (IpAddr, u16)| Endpoints {
            src_ip: local.0,
            src_port: local.1,
            dst_ip: remote.0,
            dst_port: remote.1,
        };
        let udp = ev.ip_protocol == IPPROTO_UDP;
        let conn = if udp {
            None
        } else {
            [view(src, dst), view(dst, src)]
                .iter()
                .find_map(|key| self.by_tuple.get(key))
                .and_then(|&sk| self.conn_ref_any(sk))
        };
        let ts = self.clock.wall(ev.ts_ns);
        let mut row = match conn {
            Some(conn) => conn.row(ts, TcpEventType::Drop, conn.endpoints),
            None => {
                // Not followed: the packet's source is the client unless it comes from a
                // listening port.
                let (role, ends) = if !udp && self.listen_ports.contains(&src.1) {
                    (Role::Server, view(dst, src))
                } else {
                    (Role::Client, view(src, dst))
                };
                TcpEventRecord::new(ts, TcpEventType::Drop, 0, role, Owner::default(), ends)
            }
        };
        row.reason = Some(self.reasons.drop_reason(ev.reason));
        row.transport = if udp { "udp" } else { "tcp" };
        sink.tcp_event(row);
    }

    /// Completes a followed connection's endpoints from an event that carries its ports (a
    /// client's local port is bound after its first state change) and indexes them.
    fn learn_endpoints(&mut self, ev: &TcpEvent) {
        if ev.sport == 0 || ev.dport == 0 || (ev.family != AF_INET && ev.family != AF_INET6) {
            return;
        }
        let Some(conn) = self.conns.get_mut(&ev.skaddr) else {
            return;
        };
        if conn.endpoints.src_port == 0 || conn.endpoints.dst_port == 0 {
            conn.endpoints = endpoints(conn.role, ev);
            self.by_tuple.insert(local_view(conn), ev.skaddr);
        }
    }

    /// Drops the live connection of socket `skaddr` before a new connection reuses its
    /// address (a close still held for it stays until its rows are due: the data events of a
    /// short connection may come after the next one opened).
    fn forget(&mut self, skaddr: u64) {
        if let Some(conn) = self.conns.remove(&skaddr) {
            self.unindex(skaddr, &conn);
        }
    }

    /// The connection of socket `skaddr`: live, or the last closed there and not yet written.
    fn conn_mut(&mut self, skaddr: u64) -> Option<&mut Conn> {
        if let Some(c) = self.conns.get_mut(&skaddr) {
            return Some(c);
        }
        self.closing
            .get_mut(&skaddr)
            .and_then(|held| held.last_mut())
            .map(|c| &mut c.conn)
    }

    fn conn_ref_any(&self, skaddr: u64) -> Option<&Conn> {
        self.conns.get(&skaddr).or_else(|| {
            self.closing
                .get(&skaddr)
                .and_then(|held| held.last())
                .map(|c| &c.conn)
        })
    }

    /// The connection of socket `skaddr` (live, or closed and not yet written) for which
    /// `this` holds, the live one first, then the closed ones newest first.
    fn find_conn(&mut self, skaddr: u64, this: impl Fn(&Conn) -> bool) -> Option<&mut Conn> {
        if self.conns.get(&skaddr).is_some_and(&this) {
            return self.conns.get_mut(&skaddr);
        }
        self.closing
            .get_mut(&skaddr)?
            .iter_mut()
            .rev()
            .map(|c| &mut c.conn)
            .find(|c| this(c))
    }

    fn on_state_change(&mut self, ev: &TcpEvent, sink: &mut impl RecordSink) {
        let ts = self.clock.wall(ev.ts_ns);
        if ev.new_state == tcp_state::LISTEN {
            self.listeners.insert(ev.skaddr, ev.sport);
            self.listen_ports.insert(ev.sport);
            return;
        }
        if let Some(port) = self.listeners.remove(&ev.skaddr) {
            // A listener closing; another socket may still listen on the port (SO_REUSEPORT).
            if !self.listeners.values().any(|&p| p == port) {
                self.listen_ports.remove(&port);
            }
            return;
        }
        let starts_new = (ev.old_state == tcp_state::CLOSE && ev.new_state == tcp_state::SYN_SENT)
            || ev.new_state == tcp_state::SYN_RECV;
        if starts_new {
            // The address of a freed socket can be reused at once; a stale entry means its
            // CLOSE was lost.
            self.forget(ev.skaddr);
            self.not_followed.remove(&ev.skaddr);
        } else if self.not_followed.contains(&ev.skaddr) {
            // A connection not followed from its start is not picked up half-way either
            // (its row would have a wrong start and a guessed role).
            if ev.new_state == tcp_state::CLOSE {
                self.not_followed.remove(&ev.skaddr);
            }
            return;
        }
        if !self.conns.contains_key(&ev.skaddr) {
            if self.conns.len() >= self.max_conns {
                // Counted once per connection, at its first event, and remembered (up to
                // max_conns of them) so that its later events are ignored.
                if starts_new {
                    self.stats.table_full += 1;
                    if self.not_followed.len() < self.max_conns {
                        self.not_followed.insert(ev.skaddr);
                    }
                }
                return;
            }
            let (role, owner) = if ev.new_state == tcp_state::SYN_SENT {
                (
                    Role::Client,
                    task_owner(ev.pid, ev.tid, &ev.comm, ev.cgroup_id),
                )
            } else if ev.new_state == tcp_state::SYN_RECV || self.listen_ports.contains(&ev.sport) {
                (Role::Server, Owner::default())
            } else {
                (Role::Client, Owner::default())
            };
            let conn = Conn {
                conn_id: self.next_conn_id,
                role,
                owner,
                endpoints: endpoints(role, ev),
                start_ts_ns: ts,
                syn_sent_ts_ns: (ev.new_state == tcp_state::SYN_SENT).then_some(ts),
                connect_row_due: ev.new_state == tcp_state::SYN_SENT,
                connect_latency_ns: None,
                retransmits: 0,
                resets: 0,
                rtt: None,
                tls: TlsInfo::default(),
            };
            self.next_conn_id += 1;
            self.conns.insert(ev.skaddr, conn);
        }
        let conn = self.conns.get_mut(&ev.skaddr).expect("inserted above");
        let seen = endpoints(conn.role, ev);
        // The client's port is bound after CLOSE -> SYN_SENT fires: keep the fullest view.
        if seen.src_port != 0 && seen.dst_port != 0 {
            conn.endpoints = seen;
            self.by_tuple.insert(local_view(conn), ev.skaddr);
        }
        if ev.old_state == tcp_state::SYN_SENT && ev.new_state == tcp_state::ESTABLISHED {
            conn.connect_latency_ns = conn.syn_sent_ts_ns.map(|t| (ts - t).max(0) as u64);
        }
        if conn.connect_row_due && ev.old_state == tcp_state::SYN_SENT {
            // Who connected: the task the SYN_SENT transition ran in, at that time.
            conn.connect_row_due = false;
            let at = conn.syn_sent_ts_ns.unwrap_or(ts);
            sink.tcp_event(conn.row(at, TcpEventType::Connect, conn.endpoints));
        }
        if ev.new_state == tcp_state::CLOSE {
            // The rows wait for events the kernel reports right after CLOSE (the RST that
            // tcp_disconnect sends after moving to CLOSE); see finish_closed.
            let conn = self.conns.remove(&ev.skaddr).expect("present");
            self.closed.push((ev.skaddr, conn.conn_id));
            self.closing_order.push_back((ev.ts_ns, ev.skaddr));
            self.closing.entry(ev.skaddr).or_default().push(Closing {
                conn,
                ev: *ev,
                ts,
                seen,
            });
            return;
        }
        let mut row = conn.row(ts, TcpEventType::StateChange, seen);
        row.old_state = state_name(ev.old_state);
        row.new_state = state_name(ev.new_state);
        sink.tcp_event(row);
    }

    /// Writes the close rows (`close`, `connect_failed`, `flows`) of connections that entered
    /// CLOSE at least [`CLOSE_HOLD_NS`] before `now_ns` (kernel monotonic time). Holding them
    /// lets the events the kernel reports just after CLOSE count for their connection.
    pub fn finish_closed(&mut self, now_ns: u64, sink: &mut impl RecordSink) {
        while let Some(&(ts_ns, skaddr)) = self.closing_order.front() {
            if ts_ns.saturating_add(CLOSE_HOLD_NS) > now_ns {
                break;
            }
            self.closing_order.pop_front();
            let Some(held) = self.closing.get_mut(&skaddr) else {
                continue;
            };
            let Some(i) = held.iter().position(|c| c.ev.ts_ns == ts_ns) else {
                continue;
            };
            let closing = held.remove(i);
            if held.is_empty() {
                self.closing.remove(&skaddr);
            }
            self.unindex(skaddr, &closing.conn);
            emit_close(closing, sink);
        }
    }

    /// Writes every pending close row now (at shutdown).
    pub fn finish_all_closed(&mut self, sink: &mut impl RecordSink) {
        self.finish_closed(u64::MAX, sink);
    }

    fn unindex(&mut self, skaddr: u64, conn: &Conn) {
        let key = local_view(conn);
        if self.by_tuple.get(&key) == Some(&skaddr) {
            self.by_tuple.remove(&key);
        }
    }

    /// The connection a data event of socket `skaddr` belongs to, for the sessionizer (live,
    /// or closed with its close rows still held). A server connection whose owner is not known yet takes the event's
    /// task as its owner: the process that accepted it, which user space sees only at its first
    /// read or write (or its release, [`TcpEventKind::Release`]), and gets its `accept` row.
    pub fn conn_for_data(&mut self, ev: &DataEvent, sink: &mut impl RecordSink) -> Option<ConnRef> {
        // A connection whose close rows are held still names its last data events (those of
        // a short connection often come in the round that saw it close, maybe after a new
        // connection took the same socket address): the one whose ports are the event's.
        let at = self.clock.wall(ev.ts_exit_ns);
        let ports = |c: &Conn| c.conn_ref().matches(ev.sport, ev.dport);
        let conn = match self.find_conn(ev.skaddr, ports) {
            Some(conn) => conn,
            None => self.conn_mut(ev.skaddr)?,
        };
        let conn_ref = conn.conn_ref();
        // Only an event of this very socket (not of a new one at a reused address) names it.
        if conn.unowned_server() && conn_ref.matches(ev.sport, ev.dport) {
            let owner = task_owner(ev.pid, ev.tid, &ev.comm, ev.cgroup_id);
            claim(conn, owner, at, sink);
        }
        Some(conn_ref)
    }

    /// A TCP socket released by its last file, in the task that held it: a server connection
    /// that moved no data learns who accepted it here (see [`Self::conn_for_data`]).
    fn on_release(&mut self, ev: &TcpEvent, sink: &mut impl RecordSink) {
        let ts = self.clock.wall(ev.ts_ns);
        let Some(conn) = self.conn_mut(ev.skaddr) else {
            return;
        };
        if conn.unowned_server() {
            claim(
                conn,
                task_owner(ev.pid, ev.tid, &ev.comm, ev.cgroup_id),
                ts,
                sink,
            );
        }
    }

    /// A `flows` row with status `open` for every connection that has lived longer than
    /// `min_age_ns`, with the counters `infos` reports for its endpoints (see
    /// [`crate::sockdiag`]); connections it does not know are skipped.
    pub fn report_open(
        &mut self,
        min_age_ns: i64,
        infos: &HashMap<Endpoints, TcpInfo>,
        sink: &mut impl RecordSink,
    ) -> usize {
        let now = self.clock.wall_now();
        let mut n = 0;
        for conn in self.conns.values_mut() {
            if now - conn.start_ts_ns < min_age_ns {
                continue;
            }
            let Some(info) = infos.get(&local_view(conn)) else {
                continue;
            };
            conn.note_info(info);
            sink.flow(FlowRecord {
                start_ts_ns: conn.start_ts_ns,
                end_ts_ns: now,
                conn_id: conn.conn_id,
                owner: conn.owner.clone(),
                role: conn.role,
                endpoints: conn.endpoints,
                bytes_sent: info.bytes_sent,
                bytes_received: info.bytes_received,
                open: true,
                health: conn.health(""),
                tls: conn.tls.clone(),
            });
            n += 1;
        }
        n
    }

    /// An `rtt` row for every followed connection that sock_diag (`infos`) reports with an
    /// RTT sample; its flow's RTT (last, min, max) and retransmissions follow. Returns the
    /// number of rows.
    pub fn sample_rtt(
        &mut self,
        infos: &HashMap<Endpoints, TcpInfo>,
        sink: &mut impl RecordSink,
    ) -> usize {
        let now = self.clock.wall_now();
        let mut n = 0;
        for conn in self.conns.values_mut() {
            let Some(info) = infos.get(&local_view(conn)) else {
                continue;
            };
            if info.srtt_us == 0 {
                continue;
            }
            conn.note_info(info);
            let mut row = conn.row(now, TcpEventType::Rtt, conn.endpoints);
            row.srtt_us = Some(info.srtt_us);
            sink.tcp_event(row);
            n += 1;
        }
        n
    }
}

/// The connection's endpoints as the local socket sees them (src = local end), the key
/// under which sock_diag reports its counters.
fn local_view(conn: &Conn) -> Endpoints {
    let e = conn.endpoints;
    match conn.role {
        Role::Client => e,
        Role::Server => Endpoints {
            src_ip: e.dst_ip,
            src_port: e.dst_port,
            dst_ip: e.src_ip,
            dst_port: e.src_port,
        },
    }
}

#[cfg(test)]
mod tests;
