//! Typed rows of the agent's tables and the Arrow builders that turn them into batches of
//! exactly the schemas in `kindling_wire::schema`.

use std::{
    net::IpAddr,
    sync::{Arc, LazyLock},
};

use datafusion::arrow::{
    array::{
        ArrayRef, BooleanBuilder, Int32Builder, StringBuilder, TimestampNanosecondBuilder,
        UInt16Builder, UInt32Builder, UInt64Builder,
    },
    error::ArrowError,
    record_batch::RecordBatch,
};
use kindling_wire::schema;

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
    pub comm: String,
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

/// The `cgroup`, `src_pod` ... `dst_service` columns.
#[derive(Debug, Default)]
struct KubernetesBuilder {
    columns: [StringBuilder; 11],
}

impl KubernetesBuilder {
    fn append(&mut self, e: &Ends) {
        let values = [
            &e.cgroup,
            &e.src.pod,
            &e.src.namespace,
            &e.src.workload,
            &e.src.workload_kind,
            &e.src.service,
            &e.dst.pod,
            &e.dst.namespace,
            &e.dst.workload,
            &e.dst.workload_kind,
            &e.dst.service,
        ];
        for (b, v) in self.columns.iter_mut().zip(values) {
            b.append_value(&**v);
        }
    }

    fn finish(&mut self) -> impl Iterator<Item = ArrayRef> + '_ {
        self.columns
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
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
    pub method: String,
    /// URL path, normalized SQL, Redis command, DNS domain.
    pub resource: String,
    /// HTTP status, SQL error code, Redis error prefix, DNS rcode.
    pub status: String,
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

/// Builds `calls` batches.
#[derive(Debug)]
pub struct CallsBuilder {
    node: String,
    ts: TimestampNanosecondBuilder,
    protocol: StringBuilder,
    role: StringBuilder,
    method: StringBuilder,
    resource: StringBuilder,
    status: StringBuilder,
    is_error: BooleanBuilder,
    error_message: StringBuilder,
    duration_ns: UInt64Builder,
    request_sent_ns: UInt64Builder,
    waiting_ttfb_ns: UInt64Builder,
    content_download_ns: UInt64Builder,
    request_bytes: UInt64Builder,
    response_bytes: UInt64Builder,
    ends: EndpointsBuilder,
    pid: UInt32Builder,
    tid: UInt32Builder,
    comm: StringBuilder,
    conn_id: UInt64Builder,
    trace_id: StringBuilder,
    request_payload: StringBuilder,
    response_payload: StringBuilder,
    k8s: KubernetesBuilder,
    len: usize,
}

impl CallsBuilder {
    /// An empty builder; `node` fills the `node` column.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            ts: utc(TimestampNanosecondBuilder::new()),
            protocol: StringBuilder::new(),
            role: StringBuilder::new(),
            method: StringBuilder::new(),
            resource: StringBuilder::new(),
            status: StringBuilder::new(),
            is_error: BooleanBuilder::new(),
            error_message: StringBuilder::new(),
            duration_ns: UInt64Builder::new(),
            request_sent_ns: UInt64Builder::new(),
            waiting_ttfb_ns: UInt64Builder::new(),
            content_download_ns: UInt64Builder::new(),
            request_bytes: UInt64Builder::new(),
            response_bytes: UInt64Builder::new(),
            ends: EndpointsBuilder::default(),
            pid: UInt32Builder::new(),
            tid: UInt32Builder::new(),
            comm: StringBuilder::new(),
            conn_id: UInt64Builder::new(),
            trace_id: StringBuilder::new(),
            request_payload: StringBuilder::new(),
            response_payload: StringBuilder::new(),
            k8s: KubernetesBuilder::default(),
            len: 0,
        }
    }

    /// Rows appended since the last finish.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no row is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one row without Kubernetes metadata.
    pub fn append(&mut self, r: &CallRecord) {
        self.append_with(r, Ends::none());
    }

    /// Appends one row with the Kubernetes identity of its ends.
    pub fn append_with(&mut self, r: &CallRecord, ends: &Ends) {
        self.k8s.append(ends);
        self.ts.append_value(r.ts_ns);
        self.protocol.append_value(r.protocol);
        self.role.append_value(r.role.as_str());
        self.method.append_value(&r.method);
        self.resource.append_value(&r.resource);
        self.status.append_value(&r.status);
        self.is_error.append_value(r.is_error);
        self.error_message.append_option(r.error_message.as_deref());
        self.duration_ns
            .append_value(r.request_sent_ns + r.waiting_ttfb_ns + r.content_download_ns);
        self.request_sent_ns.append_value(r.request_sent_ns);
        self.waiting_ttfb_ns.append_value(r.waiting_ttfb_ns);
        self.content_download_ns.append_value(r.content_download_ns);
        self.request_bytes.append_value(r.request_bytes);
        self.response_bytes.append_value(r.response_bytes);
        self.ends.append(&r.endpoints);
        self.pid.append_value(r.owner.pid);
        self.tid.append_value(r.owner.tid);
        self.comm.append_value(&r.owner.comm);
        self.conn_id.append_value(r.conn_id);
        self.trace_id.append_option(r.trace_id.as_deref());
        self.request_payload
            .append_option(r.request_payload.as_deref());
        self.response_payload
            .append_option(r.response_payload.as_deref());
        self.len += 1;
    }

    /// The rows so far as a batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let len = std::mem::take(&mut self.len);
        let [src_ip, src_port, dst_ip, dst_port] = self.ends.finish();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.ts.finish()),
            Arc::new(self.protocol.finish()),
            Arc::new(self.role.finish()),
            Arc::new(self.method.finish()),
            Arc::new(self.resource.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.is_error.finish()),
            Arc::new(self.error_message.finish()),
            Arc::new(self.duration_ns.finish()),
            Arc::new(self.request_sent_ns.finish()),
            Arc::new(self.waiting_ttfb_ns.finish()),
            Arc::new(self.content_download_ns.finish()),
            Arc::new(self.request_bytes.finish()),
            Arc::new(self.response_bytes.finish()),
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            Arc::new(self.pid.finish()),
            Arc::new(self.tid.finish()),
            Arc::new(self.comm.finish()),
            Arc::new(self.conn_id.finish()),
            node_column(&self.node, len),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.request_payload.finish()),
            Arc::new(self.response_payload.finish()),
        ];
        columns.extend(self.k8s.finish());
        RecordBatch::try_new(schema::calls(), columns)
    }
}

/// Builds `dns` batches.
#[derive(Debug)]
pub struct DnsBuilder {
    node: String,
    ts: TimestampNanosecondBuilder,
    domain: StringBuilder,
    qtype: StringBuilder,
    rcode: StringBuilder,
    latency_ns: UInt64Builder,
    answers: StringBuilder,
    server_ip: StringBuilder,
    transport: StringBuilder,
    pid: UInt32Builder,
    comm: StringBuilder,
    client_ip: StringBuilder,
    search_expansion: BooleanBuilder,
    search_misses: UInt32Builder,
    k8s: KubernetesBuilder,
    len: usize,
}

impl DnsBuilder {
    /// An empty builder; `node` fills the `node` column.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            ts: utc(TimestampNanosecondBuilder::new()),
            domain: StringBuilder::new(),
            qtype: StringBuilder::new(),
            rcode: StringBuilder::new(),
            latency_ns: UInt64Builder::new(),
            answers: StringBuilder::new(),
            server_ip: StringBuilder::new(),
            transport: StringBuilder::new(),
            pid: UInt32Builder::new(),
            comm: StringBuilder::new(),
            client_ip: StringBuilder::new(),
            search_expansion: BooleanBuilder::new(),
            search_misses: UInt32Builder::new(),
            k8s: KubernetesBuilder::default(),
            len: 0,
        }
    }

    /// Rows appended since the last finish.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no row is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one row without Kubernetes metadata.
    pub fn append(&mut self, r: &DnsRecord) {
        self.append_with(r, Ends::none());
    }

    /// Appends one row with the Kubernetes identity of its ends.
    pub fn append_with(&mut self, r: &DnsRecord, ends: &Ends) {
        self.k8s.append(ends);
        self.client_ip.append_value(r.client_ip.to_string());
        self.search_expansion.append_value(r.search_expansion);
        self.search_misses.append_value(r.search_misses);
        self.ts.append_value(r.ts_ns);
        self.domain.append_value(&r.domain);
        self.qtype.append_value(&r.qtype);
        self.rcode.append_value(&r.rcode);
        self.latency_ns.append_option(r.latency_ns);
        self.answers.append_value(&r.answers);
        self.server_ip.append_value(r.server_ip.to_string());
        self.transport.append_value(r.transport);
        self.pid.append_value(r.owner.pid);
        self.comm.append_value(&r.owner.comm);
        self.len += 1;
    }

    /// The rows so far as a batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let len = std::mem::take(&mut self.len);
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.ts.finish()),
            Arc::new(self.domain.finish()),
            Arc::new(self.qtype.finish()),
            Arc::new(self.rcode.finish()),
            Arc::new(self.latency_ns.finish()),
            Arc::new(self.answers.finish()),
            Arc::new(self.server_ip.finish()),
            Arc::new(self.transport.finish()),
            Arc::new(self.pid.finish()),
            Arc::new(self.comm.finish()),
            node_column(&self.node, len),
            Arc::new(self.client_ip.finish()),
            Arc::new(self.search_expansion.finish()),
            Arc::new(self.search_misses.finish()),
        ];
        columns.extend(self.k8s.finish());
        RecordBatch::try_new(schema::dns(), columns)
    }
}

/// Builds `tcp_events` batches.
#[derive(Debug)]
pub struct TcpEventsBuilder {
    node: String,
    ts: TimestampNanosecondBuilder,
    event: StringBuilder,
    conn_id: UInt64Builder,
    role: StringBuilder,
    pid: UInt32Builder,
    tid: UInt32Builder,
    comm: StringBuilder,
    ends: EndpointsBuilder,
    old_state: StringBuilder,
    new_state: StringBuilder,
    syscall_ret: Int32Builder,
    reason: StringBuilder,
    srtt_us: UInt32Builder,
    transport: StringBuilder,
    k8s: KubernetesBuilder,
    len: usize,
}

#[derive(Debug, Default)]
struct EndpointsBuilder {
    src_ip: StringBuilder,
    src_port: UInt16Builder,
    dst_ip: StringBuilder,
    dst_port: UInt16Builder,
}

impl EndpointsBuilder {
    fn append(&mut self, e: &Endpoints) {
        self.src_ip.append_value(e.src_ip.to_string());
        self.src_port.append_value(e.src_port);
        self.dst_ip.append_value(e.dst_ip.to_string());
        self.dst_port.append_value(e.dst_port);
    }

    fn finish(&mut self) -> [ArrayRef; 4] {
        [
            Arc::new(self.src_ip.finish()),
            Arc::new(self.src_port.finish()),
            Arc::new(self.dst_ip.finish()),
            Arc::new(self.dst_port.finish()),
        ]
    }
}

fn utc(mut b: TimestampNanosecondBuilder) -> TimestampNanosecondBuilder {
    b = b.with_timezone("UTC");
    b
}

/// A column of `len` copies of `node`.
fn node_column(node: &str, len: usize) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(len, node.len() * len);
    for _ in 0..len {
        b.append_value(node);
    }
    Arc::new(b.finish())
}

impl TcpEventsBuilder {
    /// An empty builder; `node` fills the `node` column.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            ts: utc(TimestampNanosecondBuilder::new()),
            event: StringBuilder::new(),
            conn_id: UInt64Builder::new(),
            role: StringBuilder::new(),
            pid: UInt32Builder::new(),
            tid: UInt32Builder::new(),
            comm: StringBuilder::new(),
            ends: EndpointsBuilder::default(),
            old_state: StringBuilder::new(),
            new_state: StringBuilder::new(),
            syscall_ret: Int32Builder::new(),
            reason: StringBuilder::new(),
            srtt_us: UInt32Builder::new(),
            transport: StringBuilder::new(),
            k8s: KubernetesBuilder::default(),
            len: 0,
        }
    }

    /// Rows appended since the last finish.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no row is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one row without Kubernetes metadata.
    pub fn append(&mut self, r: &TcpEventRecord) {
        self.append_with(r, Ends::none());
    }

    /// Appends one row with the Kubernetes identity of its ends.
    pub fn append_with(&mut self, r: &TcpEventRecord, ends: &Ends) {
        self.k8s.append(ends);
        self.ts.append_value(r.ts_ns);
        self.event.append_value(r.event.as_str());
        self.conn_id.append_value(r.conn_id);
        self.role.append_value(r.role.as_str());
        self.pid.append_value(r.owner.pid);
        self.tid.append_value(r.owner.tid);
        self.comm.append_value(&r.owner.comm);
        self.ends.append(&r.endpoints);
        self.old_state.append_value(r.old_state);
        self.new_state.append_value(r.new_state);
        self.syscall_ret.append_option(r.syscall_ret);
        self.reason.append_option(r.reason.as_deref());
        self.srtt_us.append_option(r.srtt_us);
        self.transport.append_value(r.transport);
        self.len += 1;
    }

    /// The rows so far as a batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let len = std::mem::take(&mut self.len);
        let [src_ip, src_port, dst_ip, dst_port] = self.ends.finish();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.ts.finish()),
            Arc::new(self.event.finish()),
            Arc::new(self.conn_id.finish()),
            Arc::new(self.role.finish()),
            Arc::new(self.pid.finish()),
            Arc::new(self.tid.finish()),
            Arc::new(self.comm.finish()),
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            Arc::new(self.old_state.finish()),
            Arc::new(self.new_state.finish()),
            Arc::new(self.syscall_ret.finish()),
            node_column(&self.node, len),
            Arc::new(self.reason.finish()),
            Arc::new(self.srtt_us.finish()),
            Arc::new(self.transport.finish()),
        ];
        columns.extend(self.k8s.finish());
        RecordBatch::try_new(schema::tcp_events(), columns)
    }
}

/// Builds `flows` batches.
#[derive(Debug)]
pub struct FlowsBuilder {
    node: String,
    start_ts: TimestampNanosecondBuilder,
    end_ts: TimestampNanosecondBuilder,
    duration_ns: UInt64Builder,
    conn_id: UInt64Builder,
    pid: UInt32Builder,
    comm: StringBuilder,
    role: StringBuilder,
    ends: EndpointsBuilder,
    bytes_sent: UInt64Builder,
    bytes_received: UInt64Builder,
    status: StringBuilder,
    srtt_us: UInt32Builder,
    srtt_min_us: UInt32Builder,
    srtt_max_us: UInt32Builder,
    retransmits: UInt32Builder,
    resets: UInt32Builder,
    connect_latency_ns: UInt64Builder,
    close_reason: StringBuilder,
    k8s: KubernetesBuilder,
    len: usize,
}

impl FlowsBuilder {
    /// An empty builder; `node` fills the `node` column.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            start_ts: utc(TimestampNanosecondBuilder::new()),
            end_ts: utc(TimestampNanosecondBuilder::new()),
            duration_ns: UInt64Builder::new(),
            conn_id: UInt64Builder::new(),
            pid: UInt32Builder::new(),
            comm: StringBuilder::new(),
            role: StringBuilder::new(),
            ends: EndpointsBuilder::default(),
            bytes_sent: UInt64Builder::new(),
            bytes_received: UInt64Builder::new(),
            status: StringBuilder::new(),
            srtt_us: UInt32Builder::new(),
            srtt_min_us: UInt32Builder::new(),
            srtt_max_us: UInt32Builder::new(),
            retransmits: UInt32Builder::new(),
            resets: UInt32Builder::new(),
            connect_latency_ns: UInt64Builder::new(),
            close_reason: StringBuilder::new(),
            k8s: KubernetesBuilder::default(),
            len: 0,
        }
    }

    /// Rows appended since the last finish.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no row is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one row without Kubernetes metadata.
    pub fn append(&mut self, r: &FlowRecord) {
        self.append_with(r, Ends::none());
    }

    /// Appends one row with the Kubernetes identity of its ends.
    pub fn append_with(&mut self, r: &FlowRecord, ends: &Ends) {
        self.k8s.append(ends);
        self.start_ts.append_value(r.start_ts_ns);
        self.end_ts.append_value(r.end_ts_ns);
        self.duration_ns
            .append_value(r.end_ts_ns.saturating_sub(r.start_ts_ns).max(0) as u64);
        self.conn_id.append_value(r.conn_id);
        self.pid.append_value(r.owner.pid);
        self.comm.append_value(&r.owner.comm);
        self.role.append_value(r.role.as_str());
        self.ends.append(&r.endpoints);
        self.bytes_sent.append_value(r.bytes_sent);
        self.bytes_received.append_value(r.bytes_received);
        self.status
            .append_value(if r.open { "open" } else { "closed" });
        let h = &r.health;
        self.srtt_us.append_option(h.srtt_us);
        self.srtt_min_us.append_option(h.srtt_min_us);
        self.srtt_max_us.append_option(h.srtt_max_us);
        self.retransmits.append_value(h.retransmits);
        self.resets.append_value(h.resets);
        self.connect_latency_ns.append_option(h.connect_latency_ns);
        self.close_reason.append_value(h.close_reason);
        self.len += 1;
    }

    /// The rows so far as a batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let len = std::mem::take(&mut self.len);
        let [src_ip, src_port, dst_ip, dst_port] = self.ends.finish();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.start_ts.finish()),
            Arc::new(self.end_ts.finish()),
            Arc::new(self.duration_ns.finish()),
            Arc::new(self.conn_id.finish()),
            Arc::new(self.pid.finish()),
            Arc::new(self.comm.finish()),
            Arc::new(self.role.finish()),
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            Arc::new(self.bytes_sent.finish()),
            Arc::new(self.bytes_received.finish()),
            Arc::new(self.status.finish()),
            node_column(&self.node, len),
            Arc::new(self.srtt_us.finish()),
            Arc::new(self.srtt_min_us.finish()),
            Arc::new(self.srtt_max_us.finish()),
            Arc::new(self.retransmits.finish()),
            Arc::new(self.resets.finish()),
            Arc::new(self.connect_latency_ns.finish()),
            Arc::new(self.close_reason.finish()),
        ];
        columns.extend(self.k8s.finish());
        RecordBatch::try_new(schema::flows(), columns)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use datafusion::arrow::util::pretty::pretty_format_batches;

    use super::*;

    fn ends() -> Endpoints {
        Endpoints {
            src_ip: Ipv4Addr::new(127, 0, 0, 1).into(),
            src_port: 40000,
            dst_ip: "::1".parse().unwrap(),
            dst_port: 8080,
        }
    }

    fn owner() -> Owner {
        Owner {
            pid: 42,
            tid: 43,
            comm: "curl".into(),
            cgroup_id: 0,
        }
    }

    #[test]
    fn tcp_events_batch_matches_wire_schema() {
        let mut b = TcpEventsBuilder::new("node-a");
        b.append(&TcpEventRecord {
            syscall_ret: Some(-111),
            ..TcpEventRecord::new(
                1_700_000_000_000_000_000,
                TcpEventType::Connect,
                7,
                Role::Client,
                owner(),
                ends(),
            )
        });
        assert_eq!(b.len(), 1);
        let batch = b.finish().unwrap();
        assert!(b.is_empty());
        assert_eq!(batch.schema(), schema::tcp_events());
        let text = pretty_format_batches(&[batch]).unwrap().to_string();
        assert!(text.contains("| 2023-11-14T22:13:20Z | connect | 7       | client | 42  | 43  | curl | 127.0.0.1 | 40000    | ::1    | 8080     |           |           | -111        | node-a |        |         | tcp       |"), "{text}");
    }

    #[test]
    fn flows_batch_matches_wire_schema() {
        let mut b = FlowsBuilder::new("node-a");
        b.append(&FlowRecord {
            start_ts_ns: 1_000,
            end_ts_ns: 4_500,
            conn_id: 1,
            owner: owner(),
            role: Role::Server,
            endpoints: ends(),
            bytes_sent: 10,
            bytes_received: 20,
            open: false,
            health: FlowHealth {
                srtt_us: Some(50),
                srtt_min_us: Some(40),
                srtt_max_us: Some(70),
                retransmits: 2,
                resets: 1,
                connect_latency_ns: None,
                close_reason: "rst",
            },
        });
        let batch = b.finish().unwrap();
        assert_eq!(batch.schema(), schema::flows());
        let text = pretty_format_batches(&[batch]).unwrap().to_string();
        assert!(text.contains("| 3500        | 1       | 42  | curl | server | 127.0.0.1 | 40000    | ::1    | 8080     | 10         | 20             | closed | node-a | 50      | 40          | 70          | 2           | 1      |                    | rst          |"), "{text}");
    }
}
