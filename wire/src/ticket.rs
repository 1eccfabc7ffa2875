//! The Flight ticket of a query fragment.
//!
//! A coordinator asks an agent for rows with `DoGet`; the ticket is UTF-8 JSON:
//!
//! ```json
//! {"v": 1, "sql": "SELECT \"pid\", \"bytes_sent\" FROM \"flows\" WHERE (\"dst_port\" = 8080)"}
//! ```
//!
//! `sql` is a single read-only `SELECT` over the agent's local tables, produced by DataFusion's
//! unparser from the projection, filters and limit pushed into the coordinator's scan. SQL text
//! rather than a serialized plan keeps agents and coordinators of neighbouring versions
//! compatible and makes every fragment readable in logs and `EXPLAIN`.

use serde::{Deserialize, Serialize};

/// The ticket format version this build speaks.
pub const TICKET_VERSION: u32 = 1;

/// Largest ticket an agent accepts, in bytes.
pub const MAX_TICKET_BYTES: usize = 1 << 20;

/// Errors decoding a ticket.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Over [`MAX_TICKET_BYTES`].
    #[error("ticket of {0} bytes exceeds the limit of {MAX_TICKET_BYTES}")]
    TooLarge(usize),
    /// Not the JSON described above.
    #[error("malformed ticket: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A version this agent does not speak.
    #[error("ticket version {0} is not supported (this agent speaks version {TICKET_VERSION})")]
    Version(u32),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A query fragment for one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentTicket {
    /// Format version, [`TICKET_VERSION`].
    pub v: u32,
    /// The fragment's SQL.
    pub sql: String,
}

impl FragmentTicket {
    /// A ticket for `sql`.
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            v: TICKET_VERSION,
            sql: sql.into(),
        }
    }

    /// Encodes the ticket's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of a u32 and a String always serializes")
    }

    /// Decodes ticket bytes, rejecting oversized, malformed and unknown-version tickets.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_TICKET_BYTES {
            return Err(Error::TooLarge(bytes.len()));
        }
        let ticket: Self = serde_json::from_slice(bytes)?;
        if ticket.v != TICKET_VERSION {
            return Err(Error::Version(ticket.v));
        }
        Ok(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = FragmentTicket::new("SELECT 1");
        assert_eq!(t.encode(), br#"{"v":1,"sql":"SELECT 1"}"#);
        assert_eq!(FragmentTicket::decode(&t.encode()).unwrap(), t);
    }

    #[test]
    fn bad_tickets_are_clear_errors() {
        let err = |b: &[u8]| FragmentTicket::decode(b).unwrap_err().to_string();
        assert_eq!(
            err(br#"{"v":7,"sql":"SELECT 1"}"#),
            "ticket version 7 is not supported (this agent speaks version 1)"
        );
        assert!(err(b"\xff\x00garbage").starts_with("malformed ticket: "));
        assert!(err(br#"{"sql":"SELECT 1"}"#).starts_with("malformed ticket: missing field `v`"));
        let huge = vec![b' '; MAX_TICKET_BYTES + 1];
        assert_eq!(
            err(&huge),
            format!(
                "ticket of {} bytes exceeds the limit of 1048576",
                huge.len()
            )
        );
    }
}
