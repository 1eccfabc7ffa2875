//! Table schemas. Timestamps are nanoseconds in UTC; in every table `src_*` is the connection's
//! initiator (the client) and `dst_*` its acceptor (the server), whichever end the agent saw.

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Table of TCP lifecycle events.
pub const TCP_EVENTS: &str = "tcp_events";
/// Table of TCP connections, one row when each closes (and periodically while open).
pub const FLOWS: &str = "flows";
/// Table of the agent's own counters, computed when queried.
pub const AGENT_STATS: &str = "agent_stats";
/// Table of L7 calls: one row per request/response, per end observed.
pub const CALLS: &str = "calls";
/// Table of DNS lookups.
pub const DNS: &str = "dns";

/// Calls in flight for at least a second (a long-lived gRPC stream, a request still waiting
/// for its answer): `calls`' columns, timed up to when they were listed, refreshed every half
/// second and served as they were then.
pub const OPEN_CALLS: &str = "open_calls";

/// Table of the L7 parsers' counters, one row per protocol, computed when queried.
pub const PROTOCOL_STATS: &str = "protocol_stats";

/// The column every table has right after `node`: the cluster the agent serves in (its
/// `--cluster-name`; "" when it was given none). A property of the agent, not of a row: the
/// agent does not store it, it adds it to the rows it serves (see [`stored`]), so rows kept on
/// disk or dumped and replayed by another agent are served as that agent's cluster.
pub const CLUSTER: &str = "cluster";

/// Every table an agent serves, in the order listings show them.
pub const TABLES: [&str; 7] = [
    AGENT_STATS,
    CALLS,
    DNS,
    FLOWS,
    OPEN_CALLS,
    PROTOCOL_STATS,
    TCP_EVENTS,
];

/// The tables the agent stores (all but the computed `agent_stats`, `open_calls` and
/// `protocol_stats`).
pub const STORED_TABLES: [&str; 4] = [CALLS, DNS, FLOWS, TCP_EVENTS];

/// The Arrow type of every timestamp column.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn ts(name: &str) -> Field {
    Field::new(name, timestamp_type(), false)
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn endpoints() -> [Field; 4] {
    [
        text("src_ip"),
        Field::new("src_port", DataType::UInt16, false),
        text("dst_ip"),
        Field::new("dst_port", DataType::UInt16, false),
    ]
}

/// Kubernetes identity of both ends, last in every captured table: "" where an end is not
/// known (host mode, an address outside the cluster). `workload_kind` is the owner's kind
/// (Deployment, StatefulSet, DaemonSet, CronJob, Job, ReplicaSet, Pod for a pod without
/// owner, Node for a node's own address); `service` the Service dialled (its ClusterIP) or
/// else a Service whose endpoints hold the pod.
pub const KUBERNETES_COLUMNS: [&str; 10] = [
    "src_pod",
    "src_namespace",
    "src_workload",
    "src_workload_kind",
    "src_service",
    "dst_pod",
    "dst_namespace",
    "dst_workload",
    "dst_workload_kind",
    "dst_service",
];

/// Whether `column` is one of the identity columns every captured table ends with (`cgroup`
/// and [`KUBERNETES_COLUMNS`]): text that is "" when not known, which is what rows of an agent
/// older than them hold.
pub fn is_identity_column(column: &str) -> bool {
    column == "cgroup" || KUBERNETES_COLUMNS.contains(&column)
}

/// The local process's cgroup (its path in the cgroup v2 tree, `/system.slice/x.service` or a
/// container's scope; "" when not known), then the [`KUBERNETES_COLUMNS`].
fn identity() -> impl Iterator<Item = Field> {
    std::iter::once("cgroup")
        .chain(KUBERNETES_COLUMNS)
        .map(text)
}

static TCP_EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        ts("ts"),
        // connect | accept | state_change | close | connect_failed | retransmit | reset_sent |
        // reset_received | drop | rtt
        text("event"),
        Field::new("conn_id", DataType::UInt64, false),
        // client | server
        text("role"),
        Field::new("pid", DataType::UInt32, false),
        Field::new("tid", DataType::UInt32, false),
        text("comm"),
    ];
    fields.extend(endpoints());
    fields.extend([
        // Kernel TCP state names without the TCP_ prefix (SYN_SENT, ESTABLISHED, ...); empty
        // for connect and accept.
        text("old_state"),
        text("new_state"),
        // Result of the connect/accept syscall (0 or -errno); null for state changes.
        Field::new("syscall_ret", DataType::Int32, true),
        text("node"),
        // connect_failed: refused | timeout | unreachable | aborted | error ...; drop: the
        // kernel's skb_drop_reason (NETFILTER_DROP, NO_SOCKET, ...); reset_sent: the kernel's
        // sk_rst_reason; close: the flow's close_reason; else null.
        Field::new("reason", DataType::Utf8, true),
        // rtt: the smoothed RTT sample; close: the last smoothed RTT; else null.
        Field::new("srtt_us", DataType::UInt32, true),
        // tcp, or udp for drops of UDP packets.
        text("transport"),
    ]);
    fields.extend(identity());
    Arc::new(Schema::new(fields))
});

static FLOWS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        ts("start_ts"),
        ts("end_ts"),
        Field::new("duration_ns", DataType::UInt64, false),
        Field::new("conn_id", DataType::UInt64, false),
        Field::new("pid", DataType::UInt32, false),
        text("comm"),
        text("role"),
    ];
    fields.extend(endpoints());
    fields.extend([
        Field::new("bytes_sent", DataType::UInt64, false),
        Field::new("bytes_received", DataType::UInt64, false),
        // closed: the connection ended at end_ts; open: a periodic report of a live one.
        text("status"),
        text("node"),
        // Smoothed RTT: the last, smallest and largest value the kernel reported (null when
        // the connection never had an RTT sample).
        Field::new("srtt_us", DataType::UInt32, true),
        Field::new("srtt_min_us", DataType::UInt32, true),
        Field::new("srtt_max_us", DataType::UInt32, true),
        // Segments retransmitted (the kernel's total_retrans at close; retransmit events seen
        // so far for open rows).
        Field::new("retransmits", DataType::UInt32, false),
        // RSTs sent or received on the connection.
        Field::new("resets", DataType::UInt32, false),
        // Client side: SYN sent to ESTABLISHED; null on the server side and for failed
        // connects.
        Field::new("connect_latency_ns", DataType::UInt64, true),
        // fin | rst (a RST ended it, refused connects too) | timeout | unreachable | aborted
        // (a connect the process gave up) | error ...; "" for open rows.
        text("close_reason"),
        // A TLS connection's cleartext start, seen in its first bytes each way: the server
        // name its ClientHello asked for, the version the ServerHello chose ("TLS 1.3"), and
        // the handshake's duration, from the ClientHello to the client's first encrypted
        // record (or the first plaintext the TLS uprobes read). Null when not seen.
        Field::new("tls_sni", DataType::Utf8, true),
        Field::new("tls_version", DataType::Utf8, true),
        Field::new("tls_handshake_ns", DataType::UInt64, true),
        // How the connection's bytes were read: none (cleartext, or nothing the agent knows as
        // TLS), openssl | go (TLS plaintext from the uprobes), sni-only (a TLS handshake seen,
        // the plaintext not read). Null in dumps of older agents.
        Field::new("tls", DataType::Utf8, true),
    ]);
    fields.extend(identity());
    Arc::new(Schema::new(fields))
});

static AGENT_STATS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let count = |name: &str| Field::new(name, DataType::UInt64, false);
    Arc::new(Schema::new(vec![
        ts("ts"),
        text("node"),
        text(CLUSTER),
        text("version"),
        Field::new("uptime_ns", DataType::UInt64, false),
        count("events_received"),
        count("events_dropped"),
        count("events_dropped_kernel"),
        count("events_dropped_user"),
        // events_dropped_kernel by cause: the lifecycle ring full, the data ring full (the
        // agent did not drain fast enough), failed reads of kernel memory, and program runs
        // the kernel skipped (another program was running on that CPU).
        count("kernel_events_ring_full"),
        count("kernel_data_ring_full"),
        count("kernel_read_failed"),
        count("kernel_program_misses"),
        // OpenSSL calls whose plaintext was not captured (also in events_dropped_kernel).
        count("kernel_tls_untracked"),
        // OpenSSL libraries (libssl files) found, probed by the TLS uprobes, failed to probe.
        count("tls_libraries_found"),
        count("tls_libraries_probed"),
        count("tls_libraries_failed"),
        // Go executables with crypto/tls in their symbol table found, probed, failed to probe.
        count("tls_go_binaries_found"),
        count("tls_go_binaries_probed"),
        count("tls_go_binaries_failed"),
        count("memory_budget_bytes"),
        // One row per table; the counters above repeat on every row.
        text("table_name"),
        count("rows_held"),
        count("bytes_held"),
        count("chunks_held"),
        count("rows_evicted"),
        count("bytes_evicted"),
        // Sealed chunks held compressed (--chunk-compression).
        count("chunks_compressed"),
        // Kubernetes enrichment: off (host mode) | listing | synced | unreachable: <error>
        // (the last-known metadata is kept meanwhile).
        text("kubernetes_status"),
        // Objects held (pods, services, endpoints, owners, nodes), of which pods.
        count("kubernetes_objects"),
        count("kubernetes_pods"),
        // New objects not held because of the agent's bound (--kube-max-objects).
        count("kubernetes_objects_dropped"),
        // Watch events applied since the agent started.
        count("kubernetes_updates"),
        // Containers whose payload is not captured (--no-payload-namespace).
        count("kubernetes_payload_excluded"),
        // History files (--history-dir): the budget (0: no history), then per table the rows,
        // bytes and files on disk (rows still in memory too included) and the oldest time in
        // them, what the budget expired since start, and rows that left memory without
        // reaching a file (writes failing or far behind).
        count("history_budget_bytes"),
        count("history_rows"),
        count("history_bytes"),
        count("history_files"),
        Field::new(
            "history_oldest",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            true,
        ),
        count("history_rows_evicted"),
        count("history_bytes_evicted"),
        count("history_rows_lost"),
        // Failed writes since start, files found at start and skipped (torn, foreign), and the
        // last write error ("" once writes succeed again).
        count("history_write_errors"),
        count("history_files_skipped"),
        text("history_error"),
    ]))
});

static PROTOCOL_STATS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let count = |name: &str| Field::new(name, DataType::UInt64, false);
    Arc::new(Schema::new(vec![
        ts("ts"),
        text("node"),
        text(CLUSTER),
        // http | http2 (its gRPC calls included) | dns | mysql | redis | postgresql: every protocol
        // has a row, zeros included.
        text("protocol"),
        // Rows written to `calls`.
        count("calls"),
        // Stretches of bytes the parser could not frame and skipped.
        count("unparsed"),
        // Messages whose header or framing ran past the captured bytes.
        count("truncated"),
        // Messages whose header fields index compression table entries the agent never saw
        // (HTTP/2 connections it joined late): calls with those fields empty.
        count("unknown_headers"),
        // Responses without a request, and requests never answered.
        count("unmatched"),
        // Times a session's parser started afresh because events of one direction were lost
        // (seen as a gap in the TCP byte stream); the calls that lost their response are in
        // `unmatched`.
        count("resynced"),
        // Agent-wide, repeated on every row: sessions never detected as any protocol and
        // sessions not followed because the session table was full.
        count("sessions_undetected"),
        count("sessions_dropped"),
    ]))
});

static CALLS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let duration = |name: &str| Field::new(name, DataType::UInt64, false);
    let mut fields = vec![
        // When the request started (its first byte moved).
        ts("ts"),
        // http | http2 | grpc | dns | mysql | redis | postgresql
        text("protocol"),
        text("role"),
        // HTTP method, SQL verb, Redis command, DNS qtype.
        text("method"),
        // URL path without query string, normalized SQL, Redis command, DNS domain.
        text("resource"),
        // HTTP status, SQL error code, Redis error prefix, DNS rcode; "" when there is none.
        text("status"),
        Field::new("is_error", DataType::Boolean, false),
        Field::new("error_message", DataType::Utf8, true),
        // duration_ns = request_sent_ns + waiting_ttfb_ns + content_download_ns
        duration("duration_ns"),
        duration("request_sent_ns"),
        duration("waiting_ttfb_ns"),
        duration("content_download_ns"),
        Field::new("request_bytes", DataType::UInt64, false),
        Field::new("response_bytes", DataType::UInt64, false),
    ];
    fields.extend(endpoints());
    fields.extend([
        Field::new("pid", DataType::UInt32, false),
        Field::new("tid", DataType::UInt32, false),
        text("comm"),
        // flows.conn_id of the TCP connection; 0 for UDP.
        Field::new("conn_id", DataType::UInt64, false),
        text("node"),
        // How the bytes were read: none (the socket's own, cleartext) | openssl | go (TLS
        // plaintext at OpenSSL's SSL_read/SSL_write, at Go's crypto/tls Conn.Read/Write); null
        // in rows of an agent before this column.
        Field::new("tls", DataType::Utf8, true),
        // From a W3C traceparent header.
        Field::new("trace_id", DataType::Utf8, true),
        // The captured first bytes of the request and the response (lossy UTF-8), only with
        // the agent's --store-payloads; credential header values are masked even then.
        Field::new("request_payload", DataType::Utf8, true),
        Field::new("response_payload", DataType::Utf8, true),
    ]);
    fields.extend(identity());
    Arc::new(Schema::new(fields))
});

static DNS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    // src: the querying end, dst: the DNS server.
    let mut fields = vec![
        ts("ts"),
        text("domain"),
        text("qtype"),
        // NOERROR, NXDOMAIN, SERVFAIL, ... or TIMEOUT when no answer came in --dns-timeout.
        text("rcode"),
        // Null for TIMEOUT.
        Field::new("latency_ns", DataType::UInt64, true),
        // Answer records as text (addresses, CNAME targets), comma-separated in answer order.
        text("answers"),
        text("server_ip"),
        // udp | tcp
        text("transport"),
        Field::new("pid", DataType::UInt32, false),
        text("comm"),
        text("node"),
        // The querying end's address.
        text("client_ip"),
        // An NXDOMAIN for a search-list expansion of a name the same process then resolved
        // (Kubernetes ClusterFirst: name.ns.svc.cluster.local, ...): not an error.
        Field::new("search_expansion", DataType::Boolean, false),
        // On the answer that resolved: how many search-list NXDOMAINs came before it.
        Field::new("search_misses", DataType::UInt32, false),
    ];
    fields.extend(identity());
    Arc::new(Schema::new(fields))
});

/// Schema of [`CALLS`] as the agent stores its rows: without [`CLUSTER`].
pub fn calls() -> SchemaRef {
    Arc::clone(&CALLS_SCHEMA)
}

/// Schema of [`DNS`] as the agent stores its rows: without [`CLUSTER`].
pub fn dns() -> SchemaRef {
    Arc::clone(&DNS_SCHEMA)
}

/// Schema of [`TCP_EVENTS`] as the agent stores its rows: without [`CLUSTER`].
pub fn tcp_events() -> SchemaRef {
    Arc::clone(&TCP_EVENTS_SCHEMA)
}

/// Schema of [`FLOWS`] as the agent stores its rows: without [`CLUSTER`].
pub fn flows() -> SchemaRef {
    Arc::clone(&FLOWS_SCHEMA)
}

/// Schema of [`PROTOCOL_STATS`].
pub fn protocol_stats() -> SchemaRef {
    Arc::clone(&PROTOCOL_STATS_SCHEMA)
}

/// Schema of [`AGENT_STATS`].
pub fn agent_stats() -> SchemaRef {
    Arc::clone(&AGENT_STATS_SCHEMA)
}

/// `stored` with [`CLUSTER`] right after `node`.
fn with_cluster(stored: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = Vec::with_capacity(stored.fields().len() + 1);
    for f in stored.fields() {
        fields.push(f.as_ref().clone());
        if f.name() == "node" {
            fields.push(text(CLUSTER));
        }
    }
    Arc::new(Schema::new(fields))
}

static SERVED: LazyLock<[SchemaRef; 4]> =
    LazyLock::new(|| [calls(), dns(), flows(), tcp_events()].map(|s| with_cluster(&s)));

/// Schema of the named table as agents serve it and queries see it, if it exists.
pub fn by_name(table: &str) -> Option<SchemaRef> {
    let [calls, dns, flows, tcp_events] = &*SERVED;
    match table {
        TCP_EVENTS => Some(Arc::clone(tcp_events)),
        FLOWS => Some(Arc::clone(flows)),
        AGENT_STATS => Some(agent_stats()),
        CALLS | OPEN_CALLS => Some(Arc::clone(calls)),
        DNS => Some(Arc::clone(dns)),
        PROTOCOL_STATS => Some(protocol_stats()),
        _ => None,
    }
}

/// Schema of the named table's rows as the agent builds and stores them (memory chunks,
/// history files, dumps it replays): [`by_name`]'s without [`CLUSTER`]. None for the tables
/// computed when queried (`agent_stats`, `protocol_stats`), which have no stored form.
pub fn stored(table: &str) -> Option<SchemaRef> {
    match table {
        TCP_EVENTS => Some(tcp_events()),
        FLOWS => Some(flows()),
        CALLS | OPEN_CALLS => Some(calls()),
        DNS => Some(dns()),
        _ => None,
    }
}

/// Name of the column that says when a row happened, used for time pruning and as the
/// default time axis.
pub fn time_column(table: &str) -> Option<&'static str> {
    match table {
        TCP_EVENTS | AGENT_STATS | CALLS | DNS | OPEN_CALLS | PROTOCOL_STATS => Some("ts"),
        FLOWS => Some("end_ts"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The column contract: names, types and nullability of every table. A change here breaks
    /// users' SQL and dashboards; update the snapshot only for additions.
    #[test]
    fn table_schemas() {
        let mut text = String::new();
        for table in TABLES {
            text.push_str(&format!(
                "{table} (time column: {:?})\n",
                time_column(table)
            ));
            for f in by_name(table).unwrap().fields() {
                let null = if f.is_nullable() { " NULL" } else { "" };
                text.push_str(&format!("  {} {}{null}\n", f.name(), f.data_type()));
            }
        }
        insta::assert_snapshot!(text);
    }

    /// A stored table's rows are served with `cluster` inserted after `node`, and nothing else
    /// changed.
    #[test]
    fn served_schemas_are_the_stored_ones_with_the_cluster() {
        for table in TABLES {
            let served = by_name(table).unwrap();
            let node = served.index_of("node").unwrap();
            assert_eq!(served.index_of(CLUSTER).unwrap(), node + 1, "{table}");
            let Some(stored) = stored(table) else {
                assert!([AGENT_STATS, PROTOCOL_STATS].contains(&table));
                continue;
            };
            let mut without: Vec<Field> =
                served.fields().iter().map(|f| f.as_ref().clone()).collect();
            without.remove(node + 1);
            assert_eq!(Schema::new(without), *stored, "{table}");
        }
    }

    #[test]
    fn unknown_table_has_no_schema() {
        assert!(by_name("packets").is_none());
        assert!(stored("packets").is_none());
        assert!(time_column("packets").is_none());
    }
}
