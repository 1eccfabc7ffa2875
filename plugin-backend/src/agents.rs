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

/// How the coordinator reaches agents.
#[derive(Debug, Clone)]
pub struct AgentSet {
    /// Agent addresses as configured, `HOST:PORT`; a host that is a DNS name resolving to many
    /// addresses (a Kubernetes headless Service) stands for one agent per address.
    pub addrs: Vec<String>,
    /// Bound of name resolution and connection set-up per agent.
    pub connect_timeout: Duration,
    /// Bound of one agent's whole answer; an agent slower than this is left out of the result
    /// and named.
    pub agent_timeout: Duration,
    /// Most agents queried at once (0 counts as 1).
    pub fanout: usize,
    /// Bearer token sent to every agent (`authorization: Bearer ...`).
    pub token: Option<String>,
    /// TLS to agents, when they serve it.
    pub tls: Option<TlsSettings>,
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
    /// Agents at `addrs` with the default bounds: 5 s to connect, 10 s per answer, 32 agents
    /// at once, no token.
    pub fn new(addrs: Vec<String>) -> Self {
        Self {
            addrs,
            connect_timeout: Duration::from_secs(5),
            agent_timeout: Duration::from_secs(10),
            fanout: 32,
            token: None,
            tls: None,
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

    /// The same agents with `token`.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Every agent the configured addresses stand for, and the addresses that did not resolve.
    ///
    /// An address that is an IP literal is one agent named by itself. A DNS name is looked up
    /// (within the connect timeout); each address it resolves to is one agent, named
    /// `IP:PORT (NAME:PORT)` when the name stands for several. Duplicates are queried once.
    pub async fn resolve(&self) -> (Vec<Agent>, Vec<AgentError>) {
        let mut agents = Vec::new();
        let mut failed = Vec::new();
        let mut seen = BTreeSet::new();
        for configured in &self.addrs {
            if let Ok(addr) = configured.parse::<SocketAddr>() {
                if seen.insert(addr) {
                    agents.push(Agent::new(
                        configured.clone(),
                        addr.to_string(),
                        addr.ip().to_string(),
                    ));
                }
                continue;
            }
            let lookup = tokio::time::timeout(
                self.connect_timeout,
                tokio::net::lookup_host(configured.as_str()),
            )
            .await;
            let addrs: Vec<SocketAddr> = match lookup {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(e)) => {
                    failed.push(AgentError::unavailable(
                        configured,
                        format!("cannot resolve: {e}"),
                    ));
                    continue;
                }
                Err(_) => {
                    failed.push(AgentError::unavailable(
                        configured,
                        format!("cannot resolve within {:?}", self.connect_timeout),
                    ));
                    continue;
                }
            };
            let unique: Vec<SocketAddr> = addrs.into_iter().filter(|a| seen.insert(*a)).collect();
            let host = host_of(configured).to_owned();
            let many = unique.len() > 1;
            for addr in unique {
                let name = if many {
                    format!("{addr} ({configured})")
                } else {
                    configured.clone()
                };
                agents.push(Agent::new(name, addr.to_string(), host.clone()));
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
    /// How messages name it: the configured address, or the resolved one with its DNS name.
    pub name: String,
    /// Where to connect, `HOST:PORT`.
    pub addr: String,
    /// The host as configured (a DNS name or an IP address): the name its TLS certificate is
    /// checked against.
    pub host: String,
}

impl Agent {
    fn new(name: String, addr: String, host: String) -> Self {
        Self { name, addr, host }
    }

    /// An agent named by its address.
    pub fn at(addr: &str) -> Self {
        Self::new(addr.to_owned(), addr.to_owned(), host_of(addr).to_owned())
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
    let mut client = connect(agent, set.connect_timeout, set.tls.as_ref()).await?;
    let mut request = tonic::Request::new(Ticket::new(FragmentTicket::new(sql).encode()));
    if let Some(token) = &set.token {
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
    permits: Arc<tokio::sync::Semaphore>,
    missing: Mutex<Vec<AgentError>>,
    /// Bytes of Flight messages received from agents.
    pub received: Arc<AtomicU64>,
}

impl QueryAgents {
    /// Resolves `set`'s addresses; those that do not resolve start out missing.
    pub async fn resolve(set: Arc<AgentSet>) -> Self {
        let (agents, missing) = set.resolve().await;
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(set.fanout.max(1))),
            set,
            agents,
            missing: Mutex::new(missing),
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
}
