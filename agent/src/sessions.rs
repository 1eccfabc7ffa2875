//! Sessionizing: turns socket data events into `calls` and `dns` rows.
//!
//! Each TCP socket (by `struct sock` address) and each UDP socket-and-peer pair is a session.
//! The protocol is detected from the content of the session's first segments
//! (`kindling_protocols::detect`), never from ports; the session's parser then reports where
//! messages start and end, in byte order, through splits and pipelining. Requests queue up in
//! order; each response completes the oldest open request (DNS pairs by transaction id, since
//! UDP answers may come in any order).
//!
//! Timing, in the browser's terms, from the byte movements this end saw, each at the return of
//! its syscall (the programs see the bytes at the socket layer, just before the syscall
//! returns). `request_sent` runs from the request's first byte to its last, `waiting_ttfb` to
//! the response's first byte, `content_download` to its last; the three add up to the call's
//! duration. A lost event shows as a gap in a TCP direction's byte stream (`stream_end`); the
//! session then resyncs.
//!
//! Bounds: at most `max_sessions` sessions and `MAX_PENDING` open requests per session; DNS
//! queries unanswered after `dns_timeout` become TIMEOUT rows. Everything dropped is counted.

use std::{
    collections::{HashMap, HashSet, VecDeque, hash_map::Entry},
    net::IpAddr,
    time::Duration,
};

use kindling_agent_common::{DataEvent, SOCK_DGRAM, SocketSyscall};
use kindling_protocols::{
    Direction, FeedOutcome, MessageEvent, Protocol, RequestInfo, ResponseInfo, Segment,
    StreamParser, Transport,
};

use crate::{
    conntrack::ConnRef,
    decode::{Clock, comm_bytes, ip},
    records::{CallRecord, DnsRecord, Endpoints, Owner, Role, TlsInfo},
};

/// Requests a session may have open at once (pipelining depth); more are counted and dropped.
const MAX_PENDING: usize = 1024;
/// Segments a session may need to reveal its protocol before it is left alone.
const DETECT_SEGMENTS: u8 = 4;

/// Where sessions' rows go.
pub trait CallSink {
    /// A `calls` row.
    fn call(&mut self, record: CallRecord);
    /// A `dns` row.
    fn dns(&mut self, record: DnsRecord);
}

/// Counters per protocol, for `agent_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProtocolCounters {
    /// Calls recorded.
    pub calls: u64,
    /// Segments the parser could not frame.
    pub unparsed: u64,
    /// Messages whose header was cut by the capture size.
    pub truncated: u64,
    /// Messages whose header fields index compression table entries never seen (HTTP/2
    /// connections the agent joined late): calls with those fields empty.
    pub unknown_headers: u64,
    /// Responses with no open request, and requests dropped unanswered.
    pub unmatched: u64,
    /// Times a session's parser started afresh after events of one direction were lost.
    pub resynced: u64,
}

/// [`ProtocolCounters`] of every protocol, indexed by [`Protocol`]: the sessionizer finds a
/// segment's counters without a lookup by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerProtocol([ProtocolCounters; Protocol::ALL.len()]);

impl PerProtocol {
    /// The counters of `protocol`.
    pub fn counters(&self, protocol: Protocol) -> &ProtocolCounters {
        &self.0[protocol as usize]
    }

    /// The counters of `protocol`, to count in.
    pub fn of(&mut self, protocol: Protocol) -> &mut ProtocolCounters {
        &mut self.0[protocol as usize]
    }
}

impl std::ops::Index<&str> for PerProtocol {
    type Output = ProtocolCounters;

    /// The counters of the protocol named `name` (as in the `protocol` column).
    fn index(&self, name: &str) -> &ProtocolCounters {
        let protocol = Protocol::ALL.into_iter().find(|p| p.as_str() == name);
        self.counters(protocol.expect("the name of a protocol"))
    }
}

/// Counters of the sessionizer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Per protocol.
    pub per_protocol: PerProtocol,
    /// Sessions not tracked because the table was full.
    pub sessions_full: u64,
    /// Sessions whose protocol was not recognized.
    pub undetected: u64,
    /// Data events of the wrong shape.
    pub malformed: u64,
}

#[derive(Debug)]
struct OpenCall {
    request: RequestInfo,
    /// The stream of a multiplexed protocol (HTTP/2) the call is on, and the call's own
    /// protocol (gRPC on an HTTP/2 connection).
    stream: Option<(u32, Protocol)>,
    tid: u32,
    start_ns: i64,
    request_end_ns: i64,
    request_bytes: u64,
    response: Option<ResponseInfo>,
    first_byte_ns: i64,
    last_byte_ns: i64,
    response_bytes: u64,
    request_payload: Option<String>,
    response_payload: Option<String>,
}

/// Where a session is in a TLS handshake's cleartext.
#[derive(Debug)]
enum Handshake {
    /// No request bytes yet.
    Unseen,
    /// A ClientHello began the connection at `at_ns`; what was read so far, and per direction
    /// (request, response) a record header read on its own (OpenSSL reads a record's 5-byte
    /// header, then its body), to read with the next bytes.
    Open {
        at_ns: i64,
        info: TlsInfo,
        header: [Option<[u8; 5]>; 2],
    },
    /// Over, or the connection did not start with a handshake.
    Done,
}

#[derive(Debug)]
enum Detection {
    /// Not yet known; holds the first response-direction bytes (MySQL greets first).
    Pending {
        segments: u8,
        first_response: Option<Vec<u8>>,
    },
    Known(Protocol, Box<dyn StreamParser>),
    /// Not a protocol we parse: further segments are ignored.
    Unknown,
}

#[derive(Debug)]
struct Session {
    role: Role,
    transport: Transport,
    conn_id: u64,
    /// This end and the peer, as the first event saw them: a socket address seen again with
    /// other ends is a new socket (the kernel reuses freed `struct sock` memory at once).
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    endpoints: Endpoints,
    owner: Owner,
    detection: Detection,
    /// The TLS library whose plaintext the probes gave (`openssl`, `go`) once some arrived:
    /// the socket's own bytes (ciphertext) are no longer parsed.
    tls: Option<&'static str>,
    /// The cleartext start of a TLS connection, followed from its first bytes.
    handshake: Handshake,
    open: VecDeque<OpenCall>,
    /// Index in `open` of the request whose bytes are still arriving.
    writing: Option<usize>,
    /// Index in `open` of the call whose response bytes are arriving.
    reading: Option<usize>,
    /// Bytes seen in each direction (request, response) that belong to no message yet, and
    /// when the first of them moved: a message whose header came in a segment of its own
    /// (MySQL's server reads the 4-byte header first) starts there.
    carry: [(u64, i64); 2],
    /// TCP: where the next event's bytes should start in each direction's byte stream
    /// (request, response), from the last event's `stream_end`; a different start means
    /// events were lost in between.
    stream_next: [Option<u32>; 2],
    last_seen_ns: i64,
}

/// Key of a session: the socket, plus the peer for UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SessionKey {
    sk: u64,
    peer: Option<(IpAddr, u16)>,
}

/// Turns data events into calls.
#[derive(Debug)]
pub struct Sessionizer {
    clock: Clock,
    max_sessions: usize,
    dns_timeout_ns: i64,
    /// Looked up for every data event: a fast hasher (foldhash, seeded per process; SipHash
    /// was 4% of the capture thread at saturation).
    sessions: HashMap<SessionKey, Session, foldhash::fast::RandomState>,
    /// The peers of each UDP socket's sessions, so that a close finds them without a scan.
    udp_peers: HashMap<u64, Vec<(IpAddr, u16)>>,
    /// TCP connections the tracker saw close, as (when, skaddr, conn_id), retired after
    /// [`CLOSE_GRACE_NS`] so that their last data events, which travel on the other ring
    /// buffer, are still paired.
    closing: VecDeque<(i64, u64, u64)>,
    /// Whether calls keep the captured first bytes of their request and response.
    store_payloads: bool,
    /// A port whose connections are not parsed (the agent's own query port).
    ignored_port: Option<u16>,
    stats: SessionStats,
    /// What the parser found in the segment being fed, kept between segments so that no
    /// segment allocates a list of its own.
    outcome: FeedOutcome,
    /// TLS starts read since the tracker last took them: (skaddr, conn_id, what was read).
    tls_updates: Vec<(u64, u64, TlsInfo)>,
}

/// How long a closed connection's session waits for its last data events.
const CLOSE_GRACE_NS: i64 = 1_000_000_000;
/// TCP sessions unknown to the connection tracker (opened before the agent) are forgotten
/// after this long without data, since their close may never be seen.
const UNTRACKED_IDLE_NS: i64 = 300_000_000_000;

impl Sessionizer {
    /// A sessionizer following at most `max_sessions` sessions.
    pub fn new(clock: Clock, max_sessions: usize, dns_timeout: Duration) -> Self {
        Self {
            clock,
            max_sessions,
            dns_timeout_ns: dns_timeout.as_nanos() as i64,
            sessions: HashMap::default(),
            udp_peers: HashMap::new(),
            closing: VecDeque::new(),
            store_payloads: false,
            ignored_port: None,
            stats: SessionStats::default(),
            outcome: FeedOutcome::default(),
            tls_updates: Vec::new(),
        }
    }

    /// The TLS starts read since the last call, for the connection tracker's `flows` rows:
    /// (skaddr, conn_id, what was read so far; a field not set leaves the tracker's as it is), a
    /// connection's newest last.
    pub fn take_tls_updates(&mut self) -> std::vec::Drain<'_, (u64, u64, TlsInfo)> {
        self.tls_updates.drain(..)
    }

    /// Leaves connections to or from `port` unparsed: the agent's own query traffic (its
    /// Flight port, which the CLI and the coordinator reach) is not the applications'. Their
    /// connections are still in `flows` and `tcp_events`.
    pub fn ignoring_port(mut self, port: Option<u16>) -> Self {
        self.ignored_port = port;
        self
    }

    /// Keeps the captured first bytes of each call's request and response in its row
    /// (`--store-payloads`; credential header values are masked even then).
    pub fn with_payloads(mut self, on: bool) -> Self {
        self.store_payloads = on;
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Sessions followed now.
    pub fn live(&self) -> usize {
        self.sessions.len()
    }

    /// Processes one data event. `conn` is what the connection tracker knows of a TCP socket;
    /// `listen_ports` decides the role of a TCP socket it does not know.
    pub fn on_event(
        &mut self,
        ev: &DataEvent,
        conn: Option<ConnRef>,
        listen_ports: &HashSet<u16>,
        sink: &mut impl CallSink,
    ) {
        let Some(syscall) = SocketSyscall::from_u8(ev.syscall) else {
            self.stats.malformed += 1;
            return;
        };
        let transport = if ev.sock_type == SOCK_DGRAM {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let local = (ip(ev.family, &ev.saddr), ev.sport);
        let remote = (ip(ev.family, &ev.daddr), ev.dport);
        if syscall == SocketSyscall::Close {
            self.close_socket(ev.skaddr, sink);
            return;
        }
        if self
            .ignored_port
            .is_some_and(|p| local.1 == p || remote.1 == p)
        {
            return;
        }
        let key = SessionKey {
            sk: ev.skaddr,
            peer: (transport == Transport::Udp).then_some(remote),
        };
        let send = syscall.is_send();
        let conn = conn.filter(|c| c.matches(local.1, remote.1));
        let stale = self.sessions.get(&key).is_some_and(|s| {
            s.local != local
                || (transport == Transport::Tcp && s.remote != remote)
                || conn.is_some_and(|c| s.conn_id != 0 && s.conn_id != c.conn_id)
        });
        if stale {
            let old = self.sessions.remove(&key).expect("checked above");
            self.retire(old, sink);
        }
        let full = self.sessions.len() >= self.max_sessions;
        let session = match self.sessions.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(_) if full => {
                self.stats.sessions_full += 1;
                return;
            }
            Entry::Vacant(vacant) => {
                let role = match (conn, transport) {
                    (Some(c), _) => c.role,
                    // The end that speaks first on UDP is the client (a query precedes its answer).
                    (None, Transport::Udp) => {
                        if send {
                            Role::Client
                        } else {
                            Role::Server
                        }
                    }
                    (None, Transport::Tcp) => {
                        if listen_ports.contains(&local.1) {
                            Role::Server
                        } else {
                            Role::Client
                        }
                    }
                };
                let (src, dst) = match role {
                    Role::Client => (local, remote),
                    Role::Server => (remote, local),
                };
                let session = Session {
                    role,
                    transport,
                    conn_id: conn.map_or(0, |c| c.conn_id),
                    local,
                    remote,
                    endpoints: Endpoints {
                        src_ip: src.0,
                        src_port: src.1,
                        dst_ip: dst.0,
                        dst_port: dst.1,
                    },
                    owner: Owner::default(),
                    detection: Detection::Pending {
                        segments: 0,
                        first_response: None,
                    },
                    tls: None,
                    handshake: Handshake::Unseen,
                    open: VecDeque::new(),
                    writing: None,
                    reading: None,
                    carry: [(0, 0); 2],
                    stream_next: [None; 2],
                    last_seen_ns: 0,
                };
                if let Some(peer) = key.peer {
                    self.udp_peers.entry(key.sk).or_default().push(peer);
                }
                vacant.insert(session)
            }
        };
        if session.conn_id == 0
            && let Some(c) = conn
            && c.role == session.role
        {
            session.conn_id = c.conn_id;
        }
        if syscall.is_tls() != session.tls.is_some() {
            if session.tls.is_none() {
                // The first plaintext of a TLS connection: parsed from here as a new
                // connection's first bytes; what its handshake's ciphertext did is undone.
                if matches!(session.detection, Detection::Unknown) {
                    self.stats.undetected = self.stats.undetected.saturating_sub(1);
                }
                session.tls = syscall.tls_library();
                self.tls_updates.push((
                    ev.skaddr,
                    session.conn_id,
                    TlsInfo {
                        library: session.tls,
                        ..TlsInfo::default()
                    },
                ));
                session.detection = Detection::Pending {
                    segments: 0,
                    first_response: None,
                };
                session.open.clear();
                session.writing = None;
                session.reading = None;
                session.carry = [(0, 0); 2];
                session.stream_next = [None; 2];
            } else {
                // Ciphertext of a connection whose plaintext the probes give.
                return;
            }
        }
        let direction = match (session.role, send) {
            (Role::Client, true) | (Role::Server, false) => Direction::Request,
            _ => Direction::Response,
        };
        if transport == Transport::Tcp && stream_gap(session, direction, send, ev) {
            resync(session, direction, &mut self.stats);
        }
        // The first bytes of the syscall; the parsers that can use them also get its tail.
        let captured = ev.head();
        // The moment the bytes moved: when the syscall returned (the only moment the
        // programs see; a send's bytes are then in the socket, a receive's in the process).
        let moved_ns = self.clock.wall(ev.ts_exit_ns);
        session.last_seen_ns = moved_ns;
        if transport == Transport::Tcp
            && !matches!(session.handshake, Handshake::Done)
            && let Some(info) =
                follow_handshake(session, direction, syscall.is_tls(), captured, moved_ns)
        {
            self.tls_updates.push((ev.skaddr, session.conn_id, info));
        }
        // The owner changes rarely (a fork inherits the socket): no allocation per event.
        let raw_comm = comm_bytes(&ev.comm);
        let owner = &mut session.owner;
        if (owner.pid, owner.tid, owner.cgroup_id) != (ev.pid, ev.tid, ev.cgroup_id)
            || owner.comm.as_bytes() != raw_comm
        {
            *owner = Owner {
                pid: ev.pid,
                tid: ev.tid,
                comm: String::from_utf8_lossy(raw_comm).into(),
                cgroup_id: ev.cgroup_id,
            };
        }
        // Detect the protocol from the first bytes each way.
        if let Detection::Pending {
            segments,
            first_response,
        } = &mut session.detection
        {
            match direction {
                Direction::Response if first_response.is_none() => {
                    *first_response = Some(captured.to_vec());
                    return;
                }
                Direction::Response => return,
                Direction::Request => {
                    *segments += 1;
                    match kindling_protocols::detect(transport, captured, first_response.as_deref())
                    {
                        Some(p) => {
                            session.detection =
                                Detection::Known(p, kindling_protocols::parser(p, transport));
                        }
                        None if *segments >= DETECT_SEGMENTS => {
                            tracing::trace!(
                                sk = ev.skaddr, pid = ev.pid, role = ?session.role,
                                "Protocol not recognized"
                            );
                            session.detection = Detection::Unknown;
                            self.stats.undetected += 1;
                            return;
                        }
                        None => return,
                    }
                }
            }
        }
        let Detection::Known(protocol, parser) = &mut session.detection else {
            return;
        };
        let protocol = *protocol;
        let outcome = &mut self.outcome;
        outcome.clear();
        let tail = ev.tail();
        if tail.is_empty() || !matches!(protocol, Protocol::Http2 | Protocol::Grpc) {
            let segment = Segment {
                direction,
                data: captured,
                len: ev.len as usize,
            };
            parser.feed_into(&segment, outcome);
        } else {
            // An HTTP/2 frame header past the first bytes, when it lies in the tail, is
            // found again by skipping the frames before it by their lengths: the tail is
            // fed as the syscall's last bytes, after the unseen ones.
            let head = Segment {
                direction,
                data: captured,
                len: (ev.len as usize).saturating_sub(tail.len()),
            };
            parser.feed_into(&head, outcome);
            let tail = Segment {
                direction,
                data: tail,
                len: tail.len(),
            };
            parser.feed_into(&tail, outcome);
        }
        tracing::trace!(
            sk = ev.skaddr, pid = ev.pid, syscall = ev.syscall, len = ev.len, ?direction,
            data = %String::from_utf8_lossy(&captured[..captured.len().min(64)]).escape_debug(),
            ?outcome, "Segment fed"
        );
        let counters = self.stats.per_protocol.of(protocol);
        counters.unparsed += u64::from(outcome.unparsed);
        counters.truncated += u64::from(outcome.truncated);
        counters.unknown_headers += u64::from(outcome.unknown_headers);

        // Bytes of this segment go to the message in progress when it began, else to the first
        // message it starts (pipelined messages in one segment share the segment's bytes).
        let mut bytes_left = ev.len;
        match direction {
            Direction::Request => {
                if let Some(i) = session.writing {
                    let call = &mut session.open[i];
                    call.request_bytes += std::mem::take(&mut bytes_left);
                    call.request_end_ns = moved_ns;
                }
            }
            Direction::Response => {
                if let Some(i) = session.reading {
                    let call = &mut session.open[i];
                    call.response_bytes += std::mem::take(&mut bytes_left);
                    call.last_byte_ns = moved_ns;
                }
            }
        }
        let tid = ev.tid;
        let dir_index = usize::from(direction == Direction::Response);
        if outcome.unparsed > 0 {
            session.carry[dir_index] = (0, 0);
        }
        // Bytes left over before the other side spoke were no message's start (a handshake).
        session.carry[1 - dir_index] = (0, 0);
        let (carried, carried_since) = session.carry[dir_index];
        let mut started = false;
        let mut upgraded = None;
        // The segment's captured bytes go to the first message starting in it (built only then).
        let mut payload_unclaimed = self.store_payloads;
        let mut claim_payload =
            || std::mem::take(&mut payload_unclaimed).then(|| payload_text(protocol, captured));
        for event in outcome.events.drain(..) {
            match event {
                MessageEvent::RequestStart(request) => {
                    if make_room(session) {
                        counters.unmatched += 1;
                    }
                    let (carry, since) = if started {
                        (0, moved_ns)
                    } else {
                        (carried, carried_since)
                    };
                    started = true;
                    session.open.push_back(OpenCall {
                        request,
                        stream: None,
                        tid,
                        start_ns: if carry > 0 { since } else { moved_ns },
                        request_end_ns: moved_ns,
                        request_bytes: std::mem::take(&mut bytes_left) + carry,
                        response: None,
                        first_byte_ns: 0,
                        last_byte_ns: 0,
                        response_bytes: 0,
                        request_payload: claim_payload(),
                        response_payload: None,
                    });
                    session.writing = Some(session.open.len() - 1);
                }
                MessageEvent::ResponseStart(response) => {
                    let dns_id = response.dns_id;
                    let slot = session.open.iter().position(|c| {
                        c.stream.is_none()
                            && c.response.is_none()
                            && (dns_id.is_none() || c.request.dns_id == dns_id)
                    });
                    match slot {
                        Some(i) => {
                            let (carry, since) = if started {
                                (0, moved_ns)
                            } else {
                                (carried, carried_since)
                            };
                            started = true;
                            let call = &mut session.open[i];
                            call.response = Some(response);
                            call.first_byte_ns = if carry > 0 { since } else { moved_ns };
                            call.last_byte_ns = moved_ns;
                            call.response_bytes = std::mem::take(&mut bytes_left) + carry;
                            call.response_payload = claim_payload();
                            session.reading = Some(i);
                        }
                        None => {
                            counters.unmatched += 1;
                            session.reading = None;
                        }
                    }
                }
                MessageEvent::End {
                    direction: Direction::Request,
                } => {
                    if let Some(i) = session.writing.take() {
                        session.open[i].request_end_ns = moved_ns;
                    }
                }
                MessageEvent::End {
                    direction: Direction::Response,
                } => {
                    if let Some(i) = session.reading.take() {
                        let call = session.open.remove(i).expect("index in range");
                        // A response can end before its request did (a server refusing an
                        // upload early): that request is no longer being written.
                        session.writing = match session.writing {
                            Some(w) if w > i => Some(w - 1),
                            Some(w) if w == i => None,
                            other => other,
                        };
                        counters.calls += 1;
                        emit(session, protocol, call, sink);
                    }
                }
                MessageEvent::StreamUpgrade {
                    stream,
                    protocol: next,
                } => {
                    // The request waiting for its response is that stream's from now on.
                    if let Some(call) = session
                        .open
                        .iter_mut()
                        .find(|c| c.stream.is_none() && c.response.is_none())
                    {
                        call.stream = Some((stream, next));
                    }
                    session.writing = None;
                    session.reading = None;
                    upgraded = Some(next);
                }
                // Streams of a multiplexed connection pair by id, and count their own bytes.
                MessageEvent::StreamRequest {
                    stream,
                    protocol: call_protocol,
                    info,
                } => {
                    if make_room(session) {
                        counters.unmatched += 1;
                    }
                    started = true;
                    session.open.push_back(OpenCall {
                        request: info,
                        stream: Some((stream, call_protocol)),
                        tid,
                        start_ns: moved_ns,
                        request_end_ns: moved_ns,
                        request_bytes: 0,
                        response: None,
                        first_byte_ns: 0,
                        last_byte_ns: 0,
                        response_bytes: 0,
                        request_payload: None,
                        response_payload: None,
                    });
                }
                MessageEvent::StreamResponse { stream, info } => {
                    match stream_call(session, stream).map(|i| &mut session.open[i]) {
                        Some(call) if call.response.is_none() => {
                            call.response = Some(info);
                            call.first_byte_ns = moved_ns;
                            call.last_byte_ns = moved_ns;
                        }
                        _ => counters.unmatched += 1,
                    }
                    started = true;
                }
                MessageEvent::StreamEnd {
                    direction,
                    stream,
                    bytes,
                    response,
                    protocol: call_protocol,
                } => {
                    let Some(i) = stream_call(session, stream) else {
                        continue;
                    };
                    let call = &mut session.open[i];
                    if direction == Direction::Request {
                        call.request_end_ns = moved_ns;
                        call.request_bytes = bytes;
                        continue;
                    }
                    call.last_byte_ns = moved_ns;
                    call.response_bytes = bytes;
                    if response.is_some() {
                        call.response = response;
                    }
                    if let Some(p) = call_protocol {
                        call.stream = Some((stream, p));
                    }
                    if call.response.is_some() {
                        let call = session.open.remove(i).expect("index in range");
                        counters.calls += 1;
                        emit(session, protocol, call, sink);
                    }
                }
            }
        }
        if let Some(next) = upgraded
            && let Detection::Known(protocol, _) = &mut session.detection
        {
            *protocol = next;
        }
        let carry = &mut session.carry[dir_index];
        if started {
            *carry = (0, 0);
        }
        if bytes_left > 0 && outcome.unparsed == 0 {
            if carry.0 == 0 {
                carry.1 = moved_ns;
            }
            carry.0 += bytes_left;
        }
    }

    /// Ends every session of a closed socket: unanswered requests are counted as unmatched
    /// (DNS queries wait for their timeout instead).
    fn close_socket(&mut self, sk: u64, sink: &mut impl CallSink) {
        let peers = self.udp_peers.remove(&sk).unwrap_or_default();
        let keys = peers
            .into_iter()
            .map(Some)
            .chain([None])
            .map(|peer| SessionKey { sk, peer });
        for key in keys {
            if let Some(session) = self.sessions.remove(&key) {
                self.retire(session, sink);
            }
        }
    }
    fn retire(&mut self, mut session: Session, sink: &mut impl CallSink) {
        let Detection::Known(protocol, _) = session.detection else {
            return;
        };
        let counters = self.stats.per_protocol.of(protocol);
        while let Some(call) = session.open.pop_front() {
            if protocol == Protocol::Dns && call.response.is_none() {
                timeout_dns(&session, call, sink);
                counters.calls += 1;
            } else {
                counters.unmatched += 1;
            }
        }
    }

    /// The connection tracker saw TCP connection `conn_id` on socket `sk` close: its session
    /// is retired after a grace period (see [`Sessionizer::sweep`]).
    pub fn on_tcp_closed(&mut self, sk: u64, conn_id: u64) {
        self.closing.push_back((self.clock.wall_now(), sk, conn_id));
    }

    /// The calls in flight since `min_age_ns` or longer at `now_ns` (wall clock), at most `max`,
    /// as rows timed up to `now_ns`: request sent as far as it went, then waiting (no response
    /// yet) or download (the response is arriving). A response not started leaves `status`
    /// empty.
    pub fn open_calls(&self, now_ns: i64, min_age_ns: i64, max: usize) -> Vec<CallRecord> {
        let mut rows = Vec::new();
        for session in self.sessions.values() {
            let Detection::Known(protocol, _) = session.detection else {
                continue;
            };
            for call in &session.open {
                if rows.len() == max {
                    return rows;
                }
                if now_ns - call.start_ns < min_age_ns {
                    continue;
                }
                rows.push(in_flight(session, protocol, call, now_ns));
            }
        }
        rows
    }

    /// Retires sessions of closed connections after their grace period and untracked TCP
    /// sessions idle too long, emits TIMEOUT rows for DNS queries older than the timeout,
    /// and forgets idle UDP sessions. Call periodically.
    pub fn sweep(&mut self, sink: &mut impl CallSink) {
        let now = self.clock.wall_now();
        while let Some(&(at, sk, conn_id)) = self.closing.front() {
            if now - at < CLOSE_GRACE_NS {
                break;
            }
            self.closing.pop_front();
            let key = SessionKey { sk, peer: None };
            if self
                .sessions
                .get(&key)
                .is_some_and(|s| s.conn_id == conn_id)
            {
                let session = self.sessions.remove(&key).expect("checked above");
                self.retire(session, sink);
            }
        }
        let untracked: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.transport == Transport::Tcp
                    && s.conn_id == 0
                    && now - s.last_seen_ns >= UNTRACKED_IDLE_NS
            })
            .map(|(k, _)| *k)
            .collect();
        for key in untracked {
            let session = self.sessions.remove(&key).expect("listed above");
            self.retire(session, sink);
        }
        let timeout = self.dns_timeout_ns;
        let mut idle = Vec::new();
        for (key, session) in self.sessions.iter_mut() {
            let Detection::Known(Protocol::Dns, _) = session.detection else {
                continue;
            };
            let mut kept = VecDeque::new();
            while let Some(call) = session.open.pop_front() {
                if call.response.is_none() && now - call.start_ns >= timeout {
                    timeout_dns(session, call, sink);
                    self.stats.per_protocol.of(Protocol::Dns).calls += 1;
                } else {
                    kept.push_back(call);
                }
            }
            session.open = kept;
            session.writing = None;
            session.reading = None;
            if session.transport == Transport::Udp
                && session.open.is_empty()
                && now - session.last_seen_ns >= timeout
            {
                idle.push(*key);
            }
        }
        for key in idle {
            self.sessions.remove(&key);
            if let Some(peer) = key.peer
                && let Some(peers) = self.udp_peers.get_mut(&key.sk)
            {
                peers.retain(|p| *p != peer);
                if peers.is_empty() {
                    self.udp_peers.remove(&key.sk);
                }
            }
        }
    }
}

fn payload_text(protocol: Protocol, captured: &[u8]) -> String {
    let bytes = match protocol {
        Protocol::Http => kindling_protocols::http::redact_credentials(captured),
        _ => captured.to_vec(),
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Where in `open` the call on `stream` of a multiplexed session is.
fn stream_call(session: &Session, stream: u32) -> Option<usize> {
    session
        .open
        .iter()
        .position(|c| c.stream.is_some_and(|(id, _)| id == stream))
}

/// Drops the oldest open call when the session has [`MAX_PENDING`] (keeping the indices of the
/// calls being written and read right); whether it did.
fn make_room(session: &mut Session) -> bool {
    if session.open.len() < MAX_PENDING {
        return false;
    }
    session.open.pop_front();
    session.writing = session.writing.and_then(|i| i.checked_sub(1));
    session.reading = session.reading.and_then(|i| i.checked_sub(1));
    true
}

/// Follows the cleartext start of a TLS connection: a ClientHello in the first request bytes
/// opens it (its server name), a ServerHello gives the version, and the client's first
/// encrypted record (application data; in TLS 1.3 its Finished) or the first plaintext the
/// uprobes read ends it. Returns what was read when it changed.
fn follow_handshake(
    session: &mut Session,
    direction: Direction,
    plaintext: bool,
    bytes: &[u8],
    at_ns: i64,
) -> Option<TlsInfo> {
    use kindling_protocols::tls;
    let d = usize::from(direction == Direction::Response);
    match &mut session.handshake {
        Handshake::Unseen if plaintext => session.handshake = Handshake::Done,
        // A server that speaks first (MySQL's greeting) leaves it unseen until the client's.
        Handshake::Unseen if direction == Direction::Response => {}
        Handshake::Unseen if !tls::is_record(bytes, tls::HANDSHAKE) => {
            session.handshake = Handshake::Done;
        }
        Handshake::Unseen => {
            session.handshake = Handshake::Open {
                at_ns,
                info: TlsInfo::default(),
                header: [None; 2],
            };
            return follow_handshake(session, direction, plaintext, bytes, at_ns);
        }
        Handshake::Open {
            at_ns: start,
            info,
            header,
        } => {
            if plaintext
                || (direction == Direction::Request
                    && tls::has_record(bytes, tls::APPLICATION_DATA))
            {
                info.handshake_ns = Some(at_ns.saturating_sub(*start).max(0) as u64);
                let info = std::mem::take(info);
                session.handshake = Handshake::Done;
                return Some(info);
            }
            if let Ok(alone) = <[u8; 5]>::try_from(bytes)
                && tls::is_record(bytes, tls::HANDSHAKE)
            {
                header[d] = Some(alone);
                return None;
            }
            let joined;
            let record = match header[d].take() {
                Some(h) => {
                    joined = [&h[..], bytes].concat();
                    &joined[..]
                }
                None => bytes,
            };
            let changed = match direction {
                Direction::Request if info.sni.is_none() => {
                    info.sni = tls::client_hello_sni(record);
                    info.sni.is_some()
                }
                Direction::Response if info.version.is_none() => {
                    info.version = tls::server_hello_version(record);
                    info.version.is_some()
                }
                _ => false,
            };
            return changed.then(|| info.clone());
        }
        Handshake::Done => {}
    }
    None
}

/// Whether bytes of `direction` were lost before `ev`: its bytes do not start where the last
/// event's ended (`stream_end` 0 is unknown and never checked). Moves the expectation on.
fn stream_gap(session: &mut Session, direction: Direction, send: bool, ev: &DataEvent) -> bool {
    if ev.stream_end == 0 || ev.len == 0 {
        return false;
    }
    let d = usize::from(direction == Direction::Response);
    let start = ev.stream_end.wrapping_sub(ev.len as u32);
    let expected = session.stream_next[d].replace(ev.stream_end);
    // A receive that reached the peer's FIN counts it in `copied_seq` (one sequence number
    // past its last byte): its start then looks one ahead, and that is no loss.
    let fin = u32::from(!send);
    // A start behind the expectation (bytes reported twice: a recvmmsg with MSG_PEEK moves no
    // position) is no loss.
    expected.is_some_and(|next| {
        let ahead = start.wrapping_sub(next) as i32;
        ahead > 0 && ahead as u32 > fin
    })
}

/// After lost events in `direction`: the parser starts afresh (it cannot know where the
/// next message begins otherwise) and, when responses were lost, every open call but the
/// newest is dropped as unmatched: their responses were among the lost bytes, and the next
/// response is the newest request's (a client that does not pipeline waits for each
/// response before its next request). Without this, each later response would pair with the
/// request before its own.
fn resync(session: &mut Session, direction: Direction, stats: &mut SessionStats) {
    let Detection::Known(protocol, parser) = &mut session.detection else {
        return;
    };
    *parser = kindling_protocols::parser(*protocol, session.transport);
    session.carry = [(0, 0); 2];
    let counters = stats.per_protocol.of(*protocol);
    counters.resynced += 1;
    if direction == Direction::Response {
        let lost = session.open.len().saturating_sub(1);
        counters.unmatched += lost as u64;
        session.open.drain(..lost);
        session.reading = None;
        session.writing = session.writing.and_then(|w| w.checked_sub(lost));
    } else {
        session.writing = None;
    }
}

fn timeout_dns(session: &Session, call: OpenCall, sink: &mut impl CallSink) {
    sink.dns(DnsRecord {
        ts_ns: call.start_ns,
        domain: call.request.resource.clone(),
        qtype: call.request.method.to_string(),
        rcode: "TIMEOUT".to_owned(),
        latency_ns: None,
        answers: String::new(),
        server_ip: session.endpoints.dst_ip,
        transport: transport_name(session.transport),
        owner: Owner {
            tid: call.tid,
            ..session.owner.clone()
        },
        client_ip: session.endpoints.src_ip,
        search_expansion: false,
        search_misses: 0,
    });
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    }
}

/// The row of a call still in flight at `now`.
fn in_flight(session: &Session, protocol: Protocol, call: &OpenCall, now: i64) -> CallRecord {
    let start = call.start_ns.min(now);
    let request_end = call.request_end_ns.clamp(start, now);
    let (first_byte, response) = match &call.response {
        Some(r) => (call.first_byte_ns.clamp(request_end, now), r.clone()),
        None => (now, ResponseInfo::default()),
    };
    let times = [start, request_end, first_byte, now];
    call_record(
        session,
        protocol,
        call,
        call.request.clone(),
        response,
        times,
    )
}

/// The `calls` row of `call`, with its request and response, timed by `times`: its start, the
/// request's last byte, the response's first and last (in that order).
fn call_record(
    session: &Session,
    protocol: Protocol,
    call: &OpenCall,
    request: RequestInfo,
    response: ResponseInfo,
    times: [i64; 4],
) -> CallRecord {
    let [start, request_end, first_byte, end] = times;
    CallRecord {
        ts_ns: start,
        protocol: call.stream.map_or(protocol, |(_, p)| p).as_str(),
        role: session.role,
        method: request.method,
        resource: request.resource,
        status: response.status,
        is_error: response.is_error,
        error_message: response.error_message,
        request_sent_ns: (request_end - start) as u64,
        waiting_ttfb_ns: (first_byte - request_end) as u64,
        content_download_ns: (end - first_byte) as u64,
        request_bytes: call.request_bytes,
        response_bytes: call.response_bytes,
        endpoints: session.endpoints,
        owner: Owner {
            tid: call.tid,
            ..session.owner.clone()
        },
        conn_id: session.conn_id,
        tls: session.tls.unwrap_or("none"),
        trace_id: request.trace_id,
        request_payload: None,
        response_payload: None,
    }
}

fn emit(session: &Session, protocol: Protocol, mut call: OpenCall, sink: &mut impl CallSink) {
    let response = call
        .response
        .take()
        .expect("completed calls have a response");
    let request = std::mem::take(&mut call.request);
    // Clamp so the three parts are ordered and add up to the duration.
    let start = call.start_ns;
    let request_end = call.request_end_ns.max(start);
    let first_byte = call.first_byte_ns.max(request_end);
    let end = call.last_byte_ns.max(first_byte);
    if protocol == Protocol::Dns && session.role == Role::Client {
        sink.dns(DnsRecord {
            ts_ns: start,
            domain: request.resource.clone(),
            qtype: request.method.to_string(),
            rcode: response.status.to_string(),
            latency_ns: Some((end - start) as u64),
            answers: response.dns_answers.join(","),
            server_ip: session.endpoints.dst_ip,
            transport: transport_name(session.transport),
            owner: Owner {
                tid: call.tid,
                ..session.owner.clone()
            },
            client_ip: session.endpoints.src_ip,
            search_expansion: false,
            search_misses: 0,
        });
    }
    let times = [start, request_end, first_byte, end];
    sink.call(CallRecord {
        request_payload: call.request_payload.take(),
        response_payload: call.response_payload.take(),
        ..call_record(session, protocol, &call, request, response, times)
    });
}

#[cfg(test)]
mod tests;
