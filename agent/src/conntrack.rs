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
//! Entering CLOSE ends the connection and yields its `flows` row. The table of live
//! connections is bounded; connections beyond the bound are not tracked and are counted.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use kindling_agent_common::{AF_INET6, TcpEvent, TcpEventKind, tcp_state};

use crate::records::{Endpoints, FlowRecord, Owner, Role, TcpEventRecord, TcpEventType};

/// Converts kernel monotonic timestamps (`bpf_ktime_get_ns`) into wall-clock nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    realtime_minus_monotonic: i64,
}

impl Clock {
    /// Measures the current offset between CLOCK_REALTIME and CLOCK_MONOTONIC.
    pub fn now() -> Self {
        let read = |clock| {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid pointer to a local timespec.
            unsafe { libc::clock_gettime(clock, &mut ts) };
            ts.tv_sec * 1_000_000_000 + ts.tv_nsec
        };
        let mono = read(libc::CLOCK_MONOTONIC);
        let real = read(libc::CLOCK_REALTIME);
        Self {
            realtime_minus_monotonic: real - mono,
        }
    }

    /// A clock whose wall time equals monotonic time plus `offset` (for tests).
    pub fn with_offset(offset: i64) -> Self {
        Self {
            realtime_minus_monotonic: offset,
        }
    }

    /// Wall-clock ns for a kernel monotonic timestamp.
    pub fn wall(&self, monotonic_ns: u64) -> i64 {
        monotonic_ns as i64 + self.realtime_minus_monotonic
    }

    /// Wall-clock ns now.
    pub fn wall_now(&self) -> i64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a local timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    }
}

/// Where the tracker's rows go.
pub trait RecordSink {
    /// A `tcp_events` row.
    fn tcp_event(&mut self, record: TcpEventRecord);
    /// A `flows` row.
    fn flow(&mut self, record: FlowRecord);
}

/// Counters of events the tracker could not use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// New connections not tracked because the table was full.
    pub table_full: u64,
    /// Connect/accept events for sockets with no known state (not TCP, or state events lost).
    pub unmatched_syscalls: u64,
    /// Events with an unknown kind byte.
    pub malformed: u64,
}

#[derive(Debug, Clone)]
struct Conn {
    conn_id: u64,
    role: Role,
    owner: Owner,
    endpoints: Endpoints,
    start_ts_ns: i64,
}

/// Follows live TCP connections by socket address.
#[derive(Debug)]
pub struct ConnTracker {
    clock: Clock,
    max_conns: usize,
    conns: HashMap<u64, Conn>,
    /// Listening sockets: skaddr -> local port.
    listeners: HashMap<u64, u16>,
    listen_ports: HashSet<u16>,
    next_conn_id: u64,
    stats: TrackerStats,
    /// (skaddr, conn_id) of connections closed since the last [`ConnTracker::take_closed`].
    closed: Vec<(u64, u64)>,
}

/// Name of a kernel TCP state, without the `TCP_` prefix.
pub fn state_name(state: u8) -> &'static str {
    match state {
        tcp_state::ESTABLISHED => "ESTABLISHED",
        tcp_state::SYN_SENT => "SYN_SENT",
        tcp_state::SYN_RECV => "SYN_RECV",
        tcp_state::FIN_WAIT1 => "FIN_WAIT1",
        tcp_state::FIN_WAIT2 => "FIN_WAIT2",
        tcp_state::TIME_WAIT => "TIME_WAIT",
        tcp_state::CLOSE => "CLOSE",
        tcp_state::CLOSE_WAIT => "CLOSE_WAIT",
        tcp_state::LAST_ACK => "LAST_ACK",
        tcp_state::LISTEN => "LISTEN",
        tcp_state::CLOSING => "CLOSING",
        tcp_state::NEW_SYN_RECV => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

pub(crate) fn ip(family: u16, raw: &[u8; 16]) -> IpAddr {
    if family == AF_INET6 {
        let v6 = Ipv6Addr::from(*raw);
        // Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d; show them as IPv4.
        match v6.to_ipv4_mapped() {
            Some(v4) => v4.into(),
            None => v6.into(),
        }
    } else {
        Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).into()
    }
}

fn comm(raw: &[u8; 16]) -> String {
    String::from_utf8_lossy(comm_bytes(raw)).into_owned()
}

/// `comm` without its NUL padding.
pub(crate) fn comm_bytes(raw: &[u8; 16]) -> &[u8] {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    &raw[..end]
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
            conns: HashMap::new(),
            listeners: HashMap::new(),
            listen_ports: HashSet::new(),
            next_conn_id: 1,
            closed: Vec::new(),
            stats: TrackerStats::default(),
        }
    }

    /// What could not be used so far.
    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// Connections currently followed.
    pub fn live(&self) -> usize {
        self.conns.len()
    }

    /// Role and id of the live connection of socket `skaddr`, if followed.
    pub fn conn_ref(&self, skaddr: u64) -> Option<crate::sessions::ConnRef> {
        self.conns.get(&skaddr).map(|c| {
            let (local, remote) = match c.role {
                Role::Client => (c.endpoints.src_port, c.endpoints.dst_port),
                Role::Server => (c.endpoints.dst_port, c.endpoints.src_port),
            };
            crate::sessions::ConnRef {
                role: c.role,
                conn_id: c.conn_id,
                ports: (local, remote),
            }
        })
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
            Some(kind @ (TcpEventKind::Connect | TcpEventKind::Accept)) => {
                self.on_syscall(kind, ev, sink)
            }
            None => self.stats.malformed += 1,
        }
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
            self.conns.remove(&ev.skaddr);
        }
        if !self.conns.contains_key(&ev.skaddr) {
            if self.conns.len() >= self.max_conns {
                self.stats.table_full += 1;
                return;
            }
            let (role, owner) = if ev.new_state == tcp_state::SYN_SENT {
                let owner = Owner {
                    pid: ev.pid,
                    tid: ev.tid,
                    comm: comm(&ev.comm),
                };
                (Role::Client, owner)
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
            };
            self.next_conn_id += 1;
            self.conns.insert(ev.skaddr, conn);
        }
        let conn = self.conns.get_mut(&ev.skaddr).expect("inserted above");
        let seen = endpoints(conn.role, ev);
        // The client's port is bound after CLOSE -> SYN_SENT fires: keep the fullest view.
        if seen.src_port != 0 && seen.dst_port != 0 {
            conn.endpoints = seen;
        }
        let closing = ev.new_state == tcp_state::CLOSE;
        sink.tcp_event(TcpEventRecord {
            ts_ns: ts,
            event: if closing {
                TcpEventType::Close
            } else {
                TcpEventType::StateChange
            },
            conn_id: conn.conn_id,
            role: conn.role,
            owner: conn.owner.clone(),
            endpoints: seen,
            old_state: state_name(ev.old_state),
            new_state: state_name(ev.new_state),
            syscall_ret: None,
        });
        if closing {
            let conn = self.conns.remove(&ev.skaddr).expect("present");
            self.closed.push((ev.skaddr, conn.conn_id));
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
            });
        }
    }

    fn on_syscall(&mut self, kind: TcpEventKind, ev: &TcpEvent, sink: &mut impl RecordSink) {
        let Some(conn) = self.conns.get_mut(&ev.skaddr) else {
            self.stats.unmatched_syscalls += 1;
            return;
        };
        conn.owner = Owner {
            pid: ev.pid,
            tid: ev.tid,
            comm: comm(&ev.comm),
        };
        sink.tcp_event(TcpEventRecord {
            ts_ns: self.clock.wall(ev.ts_ns),
            event: match kind {
                TcpEventKind::Connect => TcpEventType::Connect,
                _ => TcpEventType::Accept,
            },
            conn_id: conn.conn_id,
            role: conn.role,
            owner: conn.owner.clone(),
            endpoints: conn.endpoints,
            old_state: "",
            new_state: "",
            syscall_ret: Some(ev.ret),
        });
    }

    /// A `flows` row with status `open` for every connection that has lived longer than
    /// `min_age_ns`, with the byte counts `counters` reports for its endpoints (see
    /// [`crate::sockdiag`]); connections it does not know are skipped.
    pub fn report_open(
        &self,
        min_age_ns: i64,
        counters: &HashMap<Endpoints, (u64, u64)>,
        sink: &mut impl RecordSink,
    ) -> usize {
        let now = self.clock.wall_now();
        let mut n = 0;
        for conn in self.conns.values() {
            if now - conn.start_ts_ns < min_age_ns {
                continue;
            }
            let Some(&(bytes_sent, bytes_received)) = counters.get(&local_view(conn)) else {
                continue;
            };
            sink.flow(FlowRecord {
                start_ts_ns: conn.start_ts_ns,
                end_ts_ns: now,
                conn_id: conn.conn_id,
                owner: conn.owner.clone(),
                role: conn.role,
                endpoints: conn.endpoints,
                bytes_sent,
                bytes_received,
                open: true,
            });
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
