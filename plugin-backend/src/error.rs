//! Errors of the query coordinator, split the way a person acts on them: fix the query
//! ([`Error::Query`]), fix or wait for an agent ([`Error::Agent`]), or report a bug.

use datafusion::error::DataFusionError;

/// A failure of one agent during a query.
#[derive(Debug, thiserror::Error)]
#[error("agent {agent}: {message}")]
pub struct AgentError {
    /// The agent's address as configured.
    pub agent: String,
    /// What went wrong.
    pub message: String,
}

/// Errors of a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's mistake: bad SQL, unknown table or column, a statement that is not a query.
    #[error("{0}")]
    Query(String),
    /// An agent was unreachable or failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The query ran over its time limit.
    #[error("query exceeded the time limit of {0} s")]
    Timeout(f64),
    /// A limit other than time was hit (memory).
    #[error("{0}")]
    ResourcesExhausted(String),
    /// Anything else: a bug or an environment failure.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the user can fix this by changing the query (Grafana: a downstream error).
    pub fn is_user_error(&self) -> bool {
        matches!(self, Self::Query(_))
    }
}

/// Sorted names of the tables, for messages.
fn table_list() -> String {
    let mut t = kindling_wire::schema::TABLES.to_vec();
    t.sort_unstable();
    t.join(", ")
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        // An agent's failure travels inside DataFusion's error as an External error.
        if let DataFusionError::External(inner) = e.find_root()
            && let Some(agent) = inner.downcast_ref::<AgentError>()
        {
            return Self::Agent(AgentError {
                agent: agent.agent.clone(),
                message: agent.message.clone(),
            });
        }
        let text = e.strip_backtrace().to_string();
        match e.find_root() {
            DataFusionError::Plan(msg)
                if msg.starts_with("table '") && msg.contains("not found") =>
            {
                Self::Query(format!("{msg}; tables: {}", table_list()))
            }
            DataFusionError::Plan(_)
            | DataFusionError::SQL(..)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => Self::Query(text),
            DataFusionError::ResourcesExhausted(_) => Self::ResourcesExhausted(text),
            _ => Self::Internal(text),
        }
    }
}
