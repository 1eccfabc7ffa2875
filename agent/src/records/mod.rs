//! Typed rows of the agent's tables, and the vocabulary they share (roles, endpoints, owners,
//! the ends' identities). [`builders`] turns rows into Arrow batches of exactly the schemas in
//! `kindling_wire::schema`; [`pending`] holds the rows of a capture round until they are
//! flushed into the store.

pub mod builders;
pub mod pending;

use std::{
    borrow::Cow,
    net::IpAddr,
    sync::{Arc, LazyLock},
};

/// Which end of a connection this node observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The initiator (connect).
    Client,
    /// The acceptor (accept).
    Server,
}

impl Role {
    /// The name stored in `role` columns.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }
}

/// The `event` column of `tcp_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpEventType {
    /// A connect(2) returned.
    Connect,
    /// An accept(2) returned this connection.
    Accept,
    /// The kernel moved the socket to another state (other than CLOSE).
    StateChange,
    /// The kernel moved the socket to CLOSE.
    Close,
    /// A connection attempt ended without being established.
    ConnectFailed,
    /// A segment was retransmitted.
    Retransmit,
    /// This end sent a RST.
    ResetSent,
    /// A RST arrived.
    ResetReceived,
    /// The kernel dropped a packet of the connection (or any TCP/UDP packet).
    Drop,
    /// An RTT sample.
    Rtt,
}

impl TcpEventType {
    /// The name stored in the `event` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Accept => "accept",
            Self::StateChange => "state_change",
            Self::Close => "close",
            Self::ConnectFailed => "connect_failed",
            Self::Retransmit => "retransmit",
            Self::ResetSent => "reset_sent",
            Self::ResetReceived => "reset_received",
            Self::Drop => "drop",
            Self::Rtt => "rtt",
        }
    }
}

/// The two ends of a connection: `src` the client, `dst` the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoints {
    /// Client address.
    pub src_ip: IpAddr,
    /// Client port.
    pub src_port: u16,
    /// Server address.
    pub dst_ip: IpAddr,
    /// Server port.
    pub dst_port: u16,
}

/// The process a connection belongs to on this node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owner {
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Command name.
    pub comm: Arc<str>,
    /// cgroup v2 id of the process (0 when not known): the key to its container and pod.
    pub cgroup_id: u64,
}

/// The Kubernetes identity of one end of a row; "" where it is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndMeta {
    /// Pod name.
    pub pod: Arc<str>,
    /// The pod's (or the dialled Service's) namespace.
    pub namespace: Arc<str>,
    /// The pod's workload: its top owner (Deployment, StatefulSet, ...), or the pod itself.
    pub workload: Arc<str>,
    /// Kind of `workload`.
    pub workload_kind: Arc<str>,
    /// The Service dialled, or a Service whose endpoints hold the pod.
    pub service: Arc<str>,
}

static EMPTY: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));
static NO_ENDS: LazyLock<Ends> = LazyLock::new(Ends::default);

impl Default for EndMeta {
    fn default() -> Self {
        let empty = || Arc::clone(&EMPTY);
        Self {
            pod: empty(),
            namespace: empty(),
            workload: empty(),
            workload_kind: empty(),
            service: empty(),
        }
    }
}

impl EndMeta {
    /// Whether nothing is known about this end.
    pub fn is_empty(&self) -> bool {
        self.pod.is_empty() && self.workload.is_empty() && self.service.is_empty()
    }
}

/// Who a row's ends are: the local process's cgroup, and the Kubernetes identity of the
/// client (`src`) and the server (`dst`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ends {
    /// The local process's cgroup path ("" when not known).
    pub cgroup: Arc<str>,
    /// The client end.
    pub src: EndMeta,
    /// The server end.
    pub dst: EndMeta,
}

impl Default for Ends {
    fn default() -> Self {
        Self {
            cgroup: Arc::clone(&EMPTY),
            src: EndMeta::default(),
            dst: EndMeta::default(),
        }
    }
}

impl Ends {
    /// Both ends unknown (host mode), without allocating.
    pub fn none() -> &'static Ends {
        &NO_ENDS
    }
}

/// One row of `tcp_events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpEventRecord {
    /// Wall-clock time, ns since the epoch.
    pub ts_ns: i64,
    /// What happened.
    pub event: TcpEventType,
    /// Agent-local connection id, shared with `flows.conn_id`.
    pub conn_id: u64,
    /// This node's end.
    pub role: Role,
    /// Owning process (as known when the event was recorded).
    pub owner: Owner,
    /// Client and server.
    pub endpoints: Endpoints,
    /// Previous state name ("" for syscalls).
    pub old_state: &'static str,
    /// New state name ("" for syscalls).
    pub new_state: &'static str,
    /// Syscall result, for connect and accept.
    pub syscall_ret: Option<i32>,
    /// Why: connect failure, drop or reset reason, close reason.
    pub reason: Option<String>,
    /// Smoothed RTT (rtt samples, close).
    pub srtt_us: Option<u32>,
    /// `tcp`, or `udp` for drops of UDP packets.
    pub transport: &'static str,
}

impl TcpEventRecord {
    /// A row with no reason, RTT or syscall result, over TCP.
    pub fn new(
        ts_ns: i64,
        event: TcpEventType,
        conn_id: u64,
        role: Role,
        owner: Owner,
        endpoints: Endpoints,
    ) -> Self {
        Self {
            ts_ns,
            event,
            conn_id,
            role,
            owner,
            endpoints,
            old_state: "",
            new_state: "",
            syscall_ret: None,
            reason: None,
            srtt_us: None,
            transport: "tcp",
        }
    }
}

/// Network health of one connection, as of its `flows` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowHealth {
    /// Last smoothed RTT.
    pub srtt_us: Option<u32>,
    /// Smallest smoothed RTT.
    pub srtt_min_us: Option<u32>,
    /// Largest smoothed RTT.
    pub srtt_max_us: Option<u32>,
    /// Segments retransmitted.
    pub retransmits: u32,
    /// RSTs sent or received.
    pub resets: u32,
    /// SYN_SENT to ESTABLISHED, client side.
    pub connect_latency_ns: Option<u64>,
    /// fin | rst | timeout | unreachable | aborted | errno N; "" while open.
    pub close_reason: &'static str,
}

/// One row of `flows`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    /// When the connection started (first state change seen), ns since the epoch.
    pub start_ts_ns: i64,
    /// When it closed (or when this periodic report was made), ns since the epoch.
    pub end_ts_ns: i64,
    /// Agent-local connection id.
    pub conn_id: u64,
    /// Owning process.
    pub owner: Owner,
    /// This node's end.
    pub role: Role,
    /// Client and server.
    pub endpoints: Endpoints,
    /// Bytes this end sent and the peer acknowledged.
    pub bytes_sent: u64,
    /// Bytes this end received.
    pub bytes_received: u64,
    /// True for a periodic report of a connection that is still open.
    pub open: bool,
    /// RTT, retransmissions, resets, connect latency, close reason.
    pub health: FlowHealth,
    /// What the cleartext start of a TLS connection said.
    pub tls: TlsInfo,
}

/// The cleartext start of a TLS connection (`flows.tls_*`): read from its first bytes each way
/// by the sessionizer, kept with the connection by the tracker; and whether its plaintext was
/// read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsInfo {
    /// The server name of the ClientHello.
    pub sni: Option<String>,
    /// The version the ServerHello chose.
    pub version: Option<&'static str>,
    /// ClientHello to the client's first encrypted record (or the first plaintext read).
    pub handshake_ns: Option<u64>,
    /// The library whose plaintext the TLS uprobes read (`openssl`, `go`), if they did.
    pub library: Option<&'static str>,
}

impl TlsInfo {
    /// Takes what `newer` knows (its fields that are set).
    pub fn update(&mut self, newer: TlsInfo) {
        self.sni = newer.sni.or(self.sni.take());
        self.version = newer.version.or(self.version);
        self.handshake_ns = newer.handshake_ns.or(self.handshake_ns);
        self.library = newer.library.or(self.library);
    }

    /// How the connection's bytes were read (`flows.tls`): its TLS library's plaintext,
    /// `sni-only` for a TLS handshake seen whose plaintext was not read, else `none`.
    pub fn kind(&self) -> &'static str {
        match self.library {
            Some(library) => library,
            None if self.sni.is_some() || self.version.is_some() => "sni-only",
            None => "none",
        }
    }
}

/// One row of `calls`: a request and its response, as one end of the connection saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// When the request's first byte moved, ns since the epoch.
    pub ts_ns: i64,
    /// `http`, `dns`, `mysql`, `redis` or `postgresql`.
    pub protocol: &'static str,
    /// This node's end.
    pub role: Role,
    /// HTTP method, SQL verb, Redis command, DNS qtype.
    pub method: Cow<'static, str>,
    /// URL path, normalized SQL, Redis command, DNS domain.
    pub resource: String,
    /// HTTP status, SQL error code, Redis error prefix, DNS rcode.
    pub status: Cow<'static, str>,
    /// Whether the response is an error.
    pub is_error: bool,
    /// Error text of SQL and Redis errors.
    pub error_message: Option<String>,
    /// From request start to the request's last byte.
    pub request_sent_ns: u64,
    /// From the request's last byte to the response's first.
    pub waiting_ttfb_ns: u64,
    /// From the response's first byte to its last.
    pub content_download_ns: u64,
    /// Request size in bytes.
    pub request_bytes: u64,
    /// Response size in bytes.
    pub response_bytes: u64,
    /// Client and server.
    pub endpoints: Endpoints,
    /// The process and thread that made the request (client) or served it (server).
    pub owner: Owner,
    /// `flows.conn_id`, 0 for UDP.
    pub conn_id: u64,
    /// How the bytes were read: `none` (the socket's own, cleartext) or `openssl` (TLS
    /// plaintext at OpenSSL's calls).
    pub tls: &'static str,
    /// W3C trace id, when the request carried a traceparent header.
    pub trace_id: Option<String>,
    /// Captured first bytes of the request, with `--store-payloads` only.
    pub request_payload: Option<String>,
    /// Captured first bytes of the response, with `--store-payloads` only.
    pub response_payload: Option<String>,
}

/// One row of `dns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// When the query was sent, ns since the epoch.
    pub ts_ns: i64,
    /// Queried name.
    pub domain: String,
    /// Query type name.
    pub qtype: String,
    /// Response code name, or `TIMEOUT`.
    pub rcode: String,
    /// From query to answer; None for a timeout.
    pub latency_ns: Option<u64>,
    /// Answers as text, comma-separated.
    pub answers: String,
    /// The DNS server's address.
    pub server_ip: IpAddr,
    /// `udp` or `tcp`.
    pub transport: &'static str,
    /// The querying process.
    pub owner: Owner,
    /// The querying end's address.
    pub client_ip: IpAddr,
    /// An NXDOMAIN for a search-list expansion of a name the process then resolved.
    pub search_expansion: bool,
    /// On the answer that resolved: search-list NXDOMAINs before it.
    pub search_misses: u32,
}
