//! Talking to agents over Arrow Flight: resolving the configured addresses (a DNS name may
//! stand for many agents), connecting with a bound on time, sending the bearer token, and
//! running one fragment on one agent.
//!
//! Failures are sorted by what the coordinator should do with them ([`FailureKind`]): an agent
//! that cannot answer is left out of a partial result; an answer that says the query itself is
//! wrong or too big fails the query.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arrow_flight::{
    Ticket, decode::FlightRecordBatchStream, error::FlightError,
    flight_service_client::FlightServiceClient,
};
use datafusion::{arrow::record_batch::RecordBatch, execution::memory_pool::MemoryReservation};
use futures::{Stream, StreamExt, TryStreamExt};
use kindling_wire::{FragmentTicket, auth};
use tonic::{
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use crate::error::{AgentError, FailureKind};

/// How the coordinator reaches agents: one or more clusters of them, each with its own
/// addresses, token and TLS settings, and bounds common to all.
#[derive(Debug, Clone)]
pub struct AgentSet {
    /// The clusters; an unnamed one (name "") when the agents were given as one list.
    pub clusters: Vec<ClusterAgents>,
    /// Bound of name resolution and connection set-up per agent.
    pub connect_timeout: Duration,
    /// Bound of one agent's whole answer; an agent slower than this is left out of the result
    /// and named.
    pub agent_timeout: Duration,
    /// Most agents queried at once, over all clusters (0 counts as 1).
    pub fanout: usize,
}

/// The agents of one cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterAgents {
    /// The cluster's name ("" for the one unnamed cluster); its agents are named
    /// `NAME/ADDRESS` in messages.
    pub name: String,
    /// Agent addresses as configured, `HOST:PORT`; a host that is a DNS name resolving to many
    /// addresses (a Kubernetes headless Service) stands for one agent per address.
    pub addrs: Vec<String>,
    /// Bearer token sent to the cluster's agents (`authorization: Bearer ...`).
    pub token: Option<String>,
    /// TLS to the cluster's agents, when they serve it.
    pub tls: Option<TlsSettings>,
}

impl ClusterAgents {
    /// The cluster `name` of the agents at `addrs`, without token or TLS.
    pub fn new(name: &str, addrs: Vec<String>) -> Self {
        Self {
            name: name.to_owned(),
            addrs,
            ..Self::default()
        }
    }

    /// How messages name the agent `agent` (an address) of this cluster.
    fn qualify(&self, agent: String) -> String {
        if self.name.is_empty() {
            agent
        } else {
            format!("{}/{agent}", self.name)
        }
    }
}

/// How to check agents' TLS certificates.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM of the certificate authority the agents' certificates chain to.
    pub ca_pem: String,
    /// Name the certificates are checked against; default: each agent's configured host (a
    /// DNS name or an IP address).
    pub server_name: Option<String>,
}

impl AgentSet {
    /// Agents at `addrs`, one unnamed cluster, with the default bounds: 5 s to connect, 10 s
    /// per answer, 32 agents at once, no token.
    pub fn new(addrs: Vec<String>) -> Self {
        Self::of_clusters(vec![ClusterAgents::new("", addrs)])
    }

    /// The agents of `clusters`, with the default bounds.
    pub fn of_clusters(clusters: Vec<ClusterAgents>) -> Self {
        Self {
            clusters,
            connect_timeout: Duration::from_secs(5),
            agent_timeout: Duration::from_secs(10),
            fanout: 32,
        }
    }

    /// A per-agent timeout of `seconds`, which must be a positive number.
    pub fn timeout_secs(seconds: f64) -> Result<Duration, String> {
        if seconds.is_finite() && seconds > 0.0 {
            Ok(Duration::from_secs_f64(seconds))
        } else {
            Err(format!("{seconds} is not a positive number of seconds"))
        }
    }

    /// The same agents with `token`, in every cluster.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        for c in &mut self.clusters {
            c.token.clone_from(&token);
        }
        self
    }

    /// The same agents with `tls`, in every cluster.
    pub fn with_tls(mut self, tls: Option<TlsSettings>) -> Self {
        for c in &mut self.clusters {
            c.tls.clone_from(&tls);
        }
        self
    }

    /// Every agent the configured addresses stand for, and the addresses that did not resolve
    /// (with their cluster's index).
    ///
    /// An address that is an IP literal is one agent named by itself. A DNS name is looked up
    /// (within the connect timeout); each address it resolves to is one agent, named
    /// `IP:PORT (NAME:PORT)` when the name stands for several. Duplicates are queried once.
    pub async fn resolve(&self) -> (Vec<Agent>, Vec<(AgentError, usize)>) {
        let mut agents = Vec::new();
        let mut failed = Vec::new();
        let mut seen = BTreeSet::new();
        for (cluster, c) in self.clusters.iter().enumerate() {
            for configured in &c.addrs {
                if let Ok(addr) = configured.parse::<SocketAddr>() {
                    if seen.insert(addr) {
                        agents.push(Agent {
                            name: c.qualify(configured.clone()),
                            addr: addr.to_string(),
                            host: addr.ip().to_string(),
                            cluster,
                        });
                    }
                    continue;
                }
                let lookup = tokio::time::timeout(
                    self.connect_timeout,
                    tokio::net::lookup_host(configured.as_str()),
                )
                .await;
                let resolved = match lookup {
                    Ok(Ok(addrs)) => Ok(addrs.collect::<Vec<SocketAddr>>()),
                    Ok(Err(e)) => Err(format!("cannot resolve: {e}")),
                    Err(_) => Err(format!("cannot resolve within {:?}", self.connect_timeout)),
                };
                let addrs = match resolved {
                    Ok(addrs) => addrs,
                    Err(why) => {
                        let name = c.qualify(configured.clone());
                        failed.push((AgentError::unavailable(&name, why), cluster));
                        continue;
                    }
                };
                let unique: Vec<SocketAddr> =
                    addrs.into_iter().filter(|a| seen.insert(*a)).collect();
                let host = host_of(configured).to_owned();
                let many = unique.len() > 1;
                for addr in unique {
                    let name = if many {
                        format!("{addr} ({configured})")
                    } else {
                        configured.clone()
                    };
                    agents.push(Agent {
                        name: c.qualify(name),
                        addr: addr.to_string(),
                        host: host.clone(),
                        cluster,
                    });
                }
            }
        }
        (agents, failed)
    }
}

/// The host of a `HOST:PORT` address, without the brackets of an IPv6 address.
fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':')
        .map_or(addr, |(host, _)| host)
        .trim_matches(['[', ']'])
}

/// One agent to query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// How messages name it: the configured address, or the resolved one with its DNS name,
    /// after `CLUSTER/` when its cluster is named.
    pub name: String,
    /// Where to connect, `HOST:PORT`.
    pub addr: String,
    /// The host as configured (a DNS name or an IP address): the name its TLS certificate is
    /// checked against.
    pub host: String,
    /// Index of its cluster in [`AgentSet::clusters`], whose token and TLS settings it takes.
    pub cluster: usize,
}

impl Agent {
    /// An agent of the first cluster, named by its address.
    pub fn at(addr: &str) -> Self {
        Self {
            name: addr.to_owned(),
            addr: addr.to_owned(),
            host: host_of(addr).to_owned(),
            cluster: 0,
        }
    }
}

/// What a gRPC status from an agent means for the query.
fn status_error(agent: &Agent, status: &tonic::Status) -> AgentError {
    use tonic::Code;
    let (kind, message) = match status.code() {
        Code::Unavailable => (
            FailureKind::Unavailable,
            format!("unreachable: {}", status.message()),
        ),
        Code::DeadlineExceeded => (FailureKind::Unavailable, "timed out".to_owned()),
        Code::Unauthenticated | Code::PermissionDenied => (
            FailureKind::Unavailable,
            format!("refused the token: {}", status.message()),
        ),
        Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition | Code::Unimplemented => {
            (FailureKind::Query, status.message().to_owned())
        }
        Code::ResourceExhausted => (FailureKind::Limit, status.message().to_owned()),
        // tonic's codes for a connection that broke (its cause is in the source chain).
        Code::Unknown | Code::Cancelled => (
            FailureKind::Unavailable,
            match std::error::Error::source(status) {
                Some(_) => format!("unreachable: {}: {}", status.message(), causes(status)),
                None => format!("unreachable: {}", status.message()),
            },
        ),
        code => (
            FailureKind::Unavailable,
            format!("{code:?}: {}", status.message()),
        ),
    };
    AgentError {
        agent: agent.name.clone(),
        kind,
        message,
    }
}

fn flight_error(agent: &Agent, e: &FlightError) -> AgentError {
    match e {
        FlightError::Tonic(status) => status_error(agent, status),
        other => AgentError::unavailable(&agent.name, other.to_string()),
    }
}

/// The innermost causes of `e`, outermost first, without tonic's generic "transport error".
fn causes(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        // Wrappers often repeat their source's message.
        if !parts.iter().any(|p: &String| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// Opens a Flight client to `agent`, over TLS when `tls` is given.
pub async fn connect(
    agent: &Agent,
    connect_timeout: Duration,
    tls: Option<&TlsSettings>,
) -> Result<FlightServiceClient<Channel>, AgentError> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", agent.addr))
        .map_err(|e| {
            AgentError::unavailable(&agent.name, format!("not a valid HOST:PORT address: {e}"))
        })?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        let name = tls
            .server_name
            .clone()
            .unwrap_or_else(|| agent.host.clone());
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&tls.ca_pem))
            .domain_name(name);
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| AgentError::unavailable(&agent.name, format!("TLS settings: {e}")))?;
    }
    let channel = tokio::time::timeout(connect_timeout, endpoint.connect())
        .await
        .map_err(|_| {
            AgentError::unavailable(
                &agent.name,
                format!("unreachable: no connection within {connect_timeout:?}"),
            )
        })?
        .map_err(|e| {
            AgentError::unavailable(&agent.name, format!("unreachable: {}", causes(&e)))
        })?;
    Ok(FlightServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(16 << 20))
}

/// Runs the fragment `sql` on `agent`; batches stream as the agent sends them. The bytes of
/// Flight messages received are added to `received`.
pub async fn fetch(
    agent: &Agent,
    set: &AgentSet,
    sql: String,
    received: Arc<AtomicU64>,
) -> Result<impl Stream<Item = Result<RecordBatch, AgentError>> + Send + use<>, AgentError> {
    let cluster = set.clusters.get(agent.cluster);
    let tls = cluster.and_then(|c| c.tls.as_ref());
    let mut client = connect(agent, set.connect_timeout, tls).await?;
    let mut request = tonic::Request::new(Ticket::new(FragmentTicket::new(sql).encode()));
    if let Some(token) = cluster.and_then(|c| c.token.as_ref()) {
        let value = MetadataValue::try_from(auth::header_value(token)).map_err(|_| {
            AgentError::unavailable(&agent.name, "the token is not a valid header value")
        })?;
        request.metadata_mut().insert(auth::HEADER, value);
    }
    let response = client
        .do_get(request)
        .await
        .map_err(|s| status_error(agent, &s))?;
    let agent = agent.clone();
    let stream = FlightRecordBatchStream::new_from_flight_data(
        response
            .into_inner()
            .inspect_ok(move |data| {
                let bytes = data.data_header.len() + data.data_body.len();
                received.fetch_add(bytes as u64, Ordering::Relaxed);
            })
            .map_err(|s| FlightError::Tonic(Box::new(s))),
    )
    .map_err(move |e| flight_error(&agent, &e));
    Ok(stream)
}

/// Bytes of `batch`'s own rows. The arrays of a batch decoded from one Flight message are
/// slices of that message's body, and `get_array_memory_size` would charge the whole body once
/// per buffer (a 26-column `calls` batch some 60 times over).
fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// Runs the fragment `sql` on `agent` and collects its whole answer within the per-agent
/// timeout, charging the batches to `reservation` (the query's memory limit), if given.
///
/// All or nothing: an agent that fails midway contributes no rows, so a partial result is
/// exactly the answer of the agents that it does not name as missing.
pub async fn fetch_all(
    agent: &Agent,
    set: &AgentSet,
    sql: String,
    mut reservation: Option<&mut MemoryReservation>,
    received: Arc<AtomicU64>,
) -> Result<Vec<RecordBatch>, AgentError> {
    let collect = async {
        let mut stream = std::pin::pin!(fetch(agent, set, sql, received).await?);
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            if let Some(reservation) = reservation.as_deref_mut() {
                reservation
                    .try_grow(batch_bytes(&batch))
                    .map_err(|e| AgentError {
                        agent: agent.name.clone(),
                        kind: FailureKind::Limit,
                        message: e.strip_backtrace(),
                    })?;
            }
            batches.push(batch);
        }
        Ok(batches)
    };
    tokio::time::timeout(set.agent_timeout, collect)
        .await
        .unwrap_or_else(|_| {
            Err(AgentError::unavailable(
                &agent.name,
                format!("no answer within {:?}", set.agent_timeout),
            ))
        })
}

/// The agents of one query: resolved once, queried at most [`AgentSet::fanout`] at a time,
/// and the ones that did not answer.
#[derive(Debug)]
pub struct QueryAgents {
    /// How to reach them.
    pub set: Arc<AgentSet>,
    /// Every agent queried.
    pub agents: Vec<Agent>,
    /// Configured names that did not resolve, with their cluster's index.
    unresolved: Vec<(String, usize)>,
    permits: Arc<tokio::sync::Semaphore>,
    missing: Mutex<Vec<AgentError>>,
    /// Bytes of Flight messages received from agents.
    pub received: Arc<AtomicU64>,
}

impl QueryAgents {
    /// Resolves `set`'s addresses; those that do not resolve start out missing.
    pub async fn resolve(set: Arc<AgentSet>) -> Self {
        let (agents, failed) = set.resolve().await;
        let unresolved = failed.iter().map(|(e, c)| (e.agent.clone(), *c)).collect();
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(set.fanout.max(1))),
            set,
            agents,
            unresolved,
            missing: Mutex::new(failed.into_iter().map(|(e, _)| e).collect()),
            received: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Waits for a turn to query an agent; the turn ends when the permit is dropped.
    pub async fn turn(&self) -> tokio::sync::OwnedSemaphorePermit {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Notes that an agent did not answer (once per agent, however many scans it had).
    pub fn record_missing(&self, failure: AgentError) {
        let mut missing = self.missing.lock().unwrap_or_else(PoisonError::into_inner);
        if !missing.iter().any(|m| m.agent == failure.agent) {
            tracing::warn!(agent = %failure.agent, error = %failure.message, "Agent left out of the result");
            missing.push(failure);
        }
    }

    /// The agents that did not answer, by name.
    pub fn missing(&self) -> Vec<AgentError> {
        let mut missing = self
            .missing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        missing.sort_by(|a, b| a.agent.cmp(&b.agent));
        missing
    }

    /// Agents configured: those resolved and the names that did not resolve.
    pub fn configured(&self) -> usize {
        self.agents.len() + self.unresolved.len()
    }

    /// The named clusters none of whose agents answered, with how many agents each has.
    pub fn clusters_down(&self) -> Vec<(String, usize)> {
        let missing = self.missing();
        let names = self
            .agents
            .iter()
            .map(|a| (&a.name, a.cluster))
            .chain(self.unresolved.iter().map(|(n, c)| (n, *c)));
        let mut per_cluster = vec![(0usize, 0usize); self.set.clusters.len()];
        for (name, cluster) in names {
            per_cluster[cluster].0 += 1;
            if missing.iter().any(|m| &m.agent == name) {
                per_cluster[cluster].1 += 1;
            }
        }
        self.set
            .clusters
            .iter()
            .zip(per_cluster)
            .filter(|(c, (all, down))| !c.name.is_empty() && *all > 0 && down == all)
            .map(|(c, (all, _))| (c.name.clone(), all))
            .collect()
    }
}
