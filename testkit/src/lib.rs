//! Test support shared by the coordinator's tests (`plugin-backend/tests`) and the agent's
//! end-to-end tests (`e2e/tests`): agents served in-process from fixture stores, real agent and
//! plugin processes ([`host`]), network namespaces and faults ([`netlab`]), and text rendering
//! of batches. Not part of any shipped binary.
#![allow(missing_debug_implementations)]

pub mod host;
pub mod netlab;

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use datafusion::arrow::{
    array::{Array, RecordBatch},
    util::display::{ArrayFormatter, FormatOptions},
};
use kindling_agent::{
    counters::PipelineCounters,
    query::{AgentInfo, LocalQueries, QueryLimits},
    records::{
        CallRecord, DnsRecord, Endpoints, FlowHealth, FlowRecord, Owner, Role, TcpEventRecord,
        TcpEventType,
        builders::{CallsBuilder, DnsBuilder, FlowsBuilder, TcpEventsBuilder},
    },
    serve::AgentFlightService,
    store::{Store, StoreConfig},
};
use kindling_wire::schema;

/// An agent serving a fixture store on a loopback port until dropped.
pub struct InProcessAgent {
    pub addr: String,
    pub store: Arc<Store>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for InProcessAgent {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// An empty store with the agent's tables and small chunks.
pub fn empty_store() -> Arc<Store> {
    Arc::new(Store::new(
        StoreConfig {
            budget_bytes: 64 << 20,
            chunk_rows: 4,
            chunk_duration: Duration::from_secs(3600),
            ..StoreConfig::default()
        },
        schema::STORED_TABLES.map(|t| (t.to_owned(), schema::stored(t).unwrap())),
    ))
}

/// Serves `store` as agent `node` on 127.0.0.1 (a random port).
pub async fn serve(store: Arc<Store>, node: &str) -> InProcessAgent {
    serve_with(store, node, ServeOptions::default()).await
}

/// Where and how an in-process agent serves.
pub struct ServeOptions<'a> {
    /// Listening address (`127.0.0.1:0` by default).
    pub addr: &'a str,
    /// Token every call must present.
    pub token: Option<&'a str>,
    /// The agent's query limits.
    pub limits: QueryLimits,
    /// PEM certificate and key to serve TLS with.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
    /// The agent's `--cluster-name` ("" by default).
    pub cluster: &'a str,
    /// The counters its `agent_stats` reports (all zero by default).
    pub counters: Arc<PipelineCounters>,
}

impl Default for ServeOptions<'_> {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:0",
            token: None,
            limits: QueryLimits::default(),
            tls: None,
            cluster: "",
            counters: Arc::default(),
        }
    }
}

/// Serves `store` as agent `node` with `options`.
pub async fn serve_with(
    store: Arc<Store>,
    node: &str,
    options: ServeOptions<'_>,
) -> InProcessAgent {
    let token = options.token;
    let mut server = tonic::transport::Server::builder();
    if let Some((cert, key)) = options.tls {
        server = server
            .tls_config(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(cert, key)),
            )
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind(options.addr).await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let info = AgentInfo::new(node, options.counters).with_cluster(options.cluster);
    let queries = LocalQueries::new(Arc::clone(&store), Arc::new(info), options.limits);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        server
            .add_service(AgentFlightService::new(queries).into_server(token.map(str::to_owned)))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = rx.await;
                },
            ),
    );
    InProcessAgent {
        addr,
        store,
        shutdown: Some(tx),
    }
}

/// 2023-11-14T22:13:20Z
pub const EPOCH_S: i64 = 1_700_000_000;

const COMMS: [&str; 3] = ["redis", "nginx", "curl"];
const PORTS: [u16; 3] = [6379, 443, 80];

/// The fixture connection `id` as seen by `node`: start at EPOCH_S + 10*id seconds, lasting
/// id ms; comm and dst_port cycle with id % 3; bytes_sent = 100*id, received = 1000*id.
pub fn fixture_flow(id: u64) -> FlowRecord {
    let start = (EPOCH_S + 10 * id as i64) * 1_000_000_000;
    FlowRecord {
        start_ts_ns: start,
        end_ts_ns: start + id as i64 * 1_000_000,
        conn_id: id,
        owner: Owner {
            pid: 100 + (id % 3) as u32,
            tid: 100 + (id % 3) as u32,
            comm: COMMS[(id % 3) as usize].into(),
            cgroup_id: 0,
        },
        role: if id.is_multiple_of(2) {
            Role::Client
        } else {
            Role::Server
        },
        endpoints: Endpoints {
            src_ip: Ipv4Addr::new(10, 0, 0, id as u8).into(),
            src_port: 40_000 + id as u16,
            dst_ip: Ipv4Addr::new(10, 0, 1, 1).into(),
            dst_port: PORTS[(id % 3) as usize],
        },
        bytes_sent: 100 * id,
        bytes_received: 1000 * id,
        open: false,
        health: FlowHealth {
            srtt_us: Some(100 * id as u32),
            srtt_min_us: Some(50 * id as u32),
            srtt_max_us: Some(200 * id as u32),
            retransmits: (id % 3) as u32,
            resets: 0,
            connect_latency_ns: id.is_multiple_of(2).then_some(1_000 * id),
            close_reason: "fin",
        },
        tls: Default::default(),
    }
}

/// The one call made on fixture connection `id`: HTTP `GET /api/v{id % 2}` (status 500 when
/// `id % 4 == 0`, else 200) or, on the Redis port, a Redis `GET`; its three timing parts are
/// `id` µs, `id` ms and `10 * id` µs.
pub fn fixture_call(id: u64) -> CallRecord {
    let f = fixture_flow(id);
    let redis = f.endpoints.dst_port == 6379;
    let status = match (redis, id.is_multiple_of(4)) {
        (true, _) => "",
        (false, true) => "500",
        (false, false) => "200",
    };
    CallRecord {
        ts_ns: f.start_ts_ns,
        protocol: if redis { "redis" } else { "http" },
        role: f.role,
        method: "GET".into(),
        resource: if redis {
            "GET".to_owned()
        } else {
            format!("/api/v{}", id % 2)
        },
        status: status.into(),
        is_error: status == "500",
        error_message: None,
        request_sent_ns: 1_000 * id,
        waiting_ttfb_ns: 1_000_000 * id,
        content_download_ns: 10_000 * id,
        request_bytes: 100 + id,
        response_bytes: 1_000 * id,
        endpoints: f.endpoints,
        owner: f.owner,
        conn_id: id,
        tls: "none",
        trace_id: None,
        request_payload: None,
        response_payload: None,
    }
}

/// The DNS lookups of fixture client `id` (client 10.0.0.`id`, process `COMMS[id % 3]`, server
/// 10.0.2.53 for odd ids and 10.0.2.54 for even ones), at the start of its connection:
/// a ClusterFirst search-list NXDOMAIN for `api.example.com.default.svc.cluster.local`
/// (`id` ms) and the answer for `api.example.com` (2*`id` ms, one search miss); when
/// `id % 4 == 0` a SERVFAIL for `down.example.com` (50 ms); when `id % 5 == 0` a TIMEOUT for
/// `slow.example.com`.
pub fn fixture_dns(id: u64) -> Vec<DnsRecord> {
    let f = fixture_flow(id);
    let row = |offset_ms: i64, domain: &str, rcode: &str, latency_ms: Option<u64>| DnsRecord {
        ts_ns: f.start_ts_ns + offset_ms * 1_000_000,
        domain: domain.to_owned(),
        qtype: "A".to_owned(),
        rcode: rcode.to_owned(),
        latency_ns: latency_ms.map(|ms| ms * 1_000_000),
        answers: if rcode == "NOERROR" {
            "93.184.216.34".to_owned()
        } else {
            String::new()
        },
        server_ip: Ipv4Addr::new(10, 0, 2, if id % 2 == 1 { 53 } else { 54 }).into(),
        transport: "udp",
        owner: f.owner.clone(),
        client_ip: Ipv4Addr::new(10, 0, 0, id as u8).into(),
        search_expansion: false,
        search_misses: 0,
    };
    let mut out = vec![
        DnsRecord {
            search_expansion: true,
            ..row(
                0,
                "api.example.com.default.svc.cluster.local",
                "NXDOMAIN",
                Some(id),
            )
        },
        DnsRecord {
            search_misses: 1,
            ..row(1, "api.example.com", "NOERROR", Some(2 * id))
        },
    ];
    if id.is_multiple_of(4) {
        out.push(row(2, "down.example.com", "SERVFAIL", Some(50)));
    }
    if id.is_multiple_of(5) {
        out.push(row(3, "slow.example.com", "TIMEOUT", None));
    }
    out
}

/// Loads fixture connections `ids` (flows, two tcp_events each: SYN_SENT and close, one call
/// each, and their DNS lookups) into `store`, as node `node`.
pub fn load_fixture(store: &Store, node: &str, ids: impl IntoIterator<Item = u64>) {
    let mut flows = FlowsBuilder::new(node);
    let mut events = TcpEventsBuilder::new(node);
    let mut calls = CallsBuilder::new(node);
    let mut dns = DnsBuilder::new(node);
    for id in ids {
        calls.append(&fixture_call(id));
        for r in fixture_dns(id) {
            dns.append(&r);
        }
        let f = fixture_flow(id);
        for (ts, event, old, new) in [
            (
                f.start_ts_ns,
                TcpEventType::StateChange,
                "CLOSE",
                "SYN_SENT",
            ),
            (f.end_ts_ns, TcpEventType::Close, "LAST_ACK", "CLOSE"),
        ] {
            events.append(&TcpEventRecord {
                old_state: old,
                new_state: new,
                ..TcpEventRecord::new(ts, event, id, f.role, f.owner.clone(), f.endpoints)
            });
        }
        flows.append(&f);
        if flows.len() == 3 {
            store
                .append(schema::FLOWS, flows.finish().unwrap())
                .unwrap();
        }
    }
    store
        .append(schema::FLOWS, flows.finish().unwrap())
        .unwrap();
    store
        .append(schema::TCP_EVENTS, events.finish().unwrap())
        .unwrap();
    store
        .append(schema::CALLS, calls.finish().unwrap())
        .unwrap();
    store.append(schema::DNS, dns.finish().unwrap()).unwrap();
}

/// Two agents: n1 holds fixture connections 1..=6, n2 holds 7..=10.
pub async fn two_fixture_agents() -> (InProcessAgent, InProcessAgent) {
    two_fixture_agents_in("", "").await
}

/// [`two_fixture_agents`], n1 in the cluster `c1` and n2 in `c2`.
pub async fn two_fixture_agents_in(c1: &str, c2: &str) -> (InProcessAgent, InProcessAgent) {
    let in_cluster = |cluster| ServeOptions {
        cluster,
        ..ServeOptions::default()
    };
    let s1 = empty_store();
    load_fixture(&s1, "n1", 1..=6);
    let s2 = empty_store();
    load_fixture(&s2, "n2", 7..=10);
    (
        serve_with(s1, "n1", in_cluster(c1)).await,
        serve_with(s2, "n2", in_cluster(c2)).await,
    )
}

/// Every row of `batches` as display strings ("NULL" for nulls).
pub fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                formatters
                    .iter()
                    .zip(b.columns())
                    .map(|(f, c)| {
                        if c.is_null(r) {
                            "NULL".to_owned()
                        } else {
                            f.value(r).to_string()
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}
