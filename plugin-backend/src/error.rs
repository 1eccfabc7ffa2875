//! Errors of the query coordinator, split the way a person acts on them: fix the query
//! ([`Error::Query`]), fix or wait for an agent ([`Error::Agent`]), or report a bug.

use datafusion::error::DataFusionError;

/// What an agent's failure means for the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The agent could not answer (down, slow, unreachable, refused the token, broke off):
    /// the query goes on without it and names it.
    Unavailable,
    /// The agent says the query is wrong: the query fails.
    Query,
    /// The query hit a limit (memory) on the agent or while collecting its answer: the query
    /// fails.
    Limit,
}

/// A failure of one agent during a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("agent {agent}: {message}")]
pub struct AgentError {
    /// The agent's name: its address as configured, or as resolved from a DNS name.
    pub agent: String,
    /// What the failure means for the query.
    pub kind: FailureKind,
    /// What went wrong.
    pub message: String,
}

impl AgentError {
    /// `agent` could not answer, because of `message`.
    pub fn unavailable(agent: &str, message: impl Into<String>) -> Self {
        Self {
            agent: agent.to_owned(),
            kind: FailureKind::Unavailable,
            message: message.into(),
        }
    }
}

/// Lists failures as `agent A: why; agent B: why`.
pub fn list_failures(failures: &[AgentError]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Errors of a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's mistake: bad SQL, unknown table or column, a statement that is not a query.
    #[error("{0}")]
    Query(String),
    /// No agent answered (each is named with why).
    #[error("{}", list_failures(.0))]
    Unavailable(Vec<AgentError>),
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
            return match agent.kind {
                FailureKind::Unavailable => Self::Unavailable(vec![agent.clone()]),
                FailureKind::Query => Self::Query(agent.to_string()),
                FailureKind::Limit => Self::ResourcesExhausted(agent.to_string()),
            };
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
