//! Talking to agents over Arrow Flight: connecting with a bound on time, and running one
//! fragment on one agent as a stream of record batches.

use std::time::Duration;

use arrow_flight::{
    Ticket, decode::FlightRecordBatchStream, error::FlightError,
    flight_service_client::FlightServiceClient,
};
use datafusion::arrow::record_batch::RecordBatch;
use futures::{Stream, TryStreamExt};
use kindling_wire::FragmentTicket;
use tonic::transport::{Channel, Endpoint};

use crate::error::AgentError;

/// How the coordinator reaches agents.
#[derive(Debug, Clone)]
pub struct AgentSet {
    /// Agent addresses, `HOST:PORT`.
    pub addrs: Vec<String>,
    /// Bound of connection set-up per agent.
    pub connect_timeout: Duration,
}

impl AgentSet {
    /// Agents at `addrs` with the default connect timeout (5 s).
    pub fn new(addrs: Vec<String>) -> Self {
        Self {
            addrs,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

fn agent_error(agent: &str, message: impl Into<String>) -> AgentError {
    AgentError {
        agent: agent.to_owned(),
        message: message.into(),
    }
}

/// A readable message for a gRPC status from an agent.
fn status_message(status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::Unavailable => format!("unreachable: {}", status.message()),
        tonic::Code::DeadlineExceeded => "timed out".to_owned(),
        _ => format!("{:?}: {}", status.code(), status.message()),
    }
}

fn flight_message(e: &FlightError) -> String {
    match e {
        FlightError::Tonic(status) => status_message(status),
        other => other.to_string(),
    }
}

/// Opens a Flight client to `agent` (`HOST:PORT`).
pub async fn connect(
    agent: &str,
    connect_timeout: Duration,
) -> Result<FlightServiceClient<Channel>, AgentError> {
    let endpoint = Endpoint::from_shared(format!("http://{agent}"))
        .map_err(|e| agent_error(agent, format!("not a valid HOST:PORT address: {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    let channel = tokio::time::timeout(connect_timeout, endpoint.connect())
        .await
        .map_err(|_| {
            agent_error(
                agent,
                format!("unreachable: no connection within {connect_timeout:?}"),
            )
        })?
        .map_err(|e| {
            let cause =
                std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
            agent_error(agent, format!("unreachable: {cause}"))
        })?;
    Ok(FlightServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(16 << 20))
}

/// Runs the fragment `sql` on `agent`; batches stream as the agent sends them.
pub async fn fetch(
    agent: &str,
    connect_timeout: Duration,
    sql: String,
) -> Result<impl Stream<Item = Result<RecordBatch, AgentError>> + Send + use<>, AgentError> {
    let mut client = connect(agent, connect_timeout).await?;
    let ticket = Ticket::new(FragmentTicket::new(sql).encode());
    let response = client
        .do_get(ticket)
        .await
        .map_err(|s| agent_error(agent, status_message(&s)))?;
    let agent = agent.to_owned();
    let stream = FlightRecordBatchStream::new_from_flight_data(
        response
            .into_inner()
            .map_err(|s| FlightError::Tonic(Box::new(s))),
    )
    .map_err(move |e| agent_error(&agent, flight_message(&e)));
    Ok(stream)
}
