//! What crosses the boundary between a Kindling agent and a query coordinator (the `kindling`
//! CLI or the Grafana plugin), so that both sides agree without talking first:
//!
//! - [`schema`]: the Arrow schema of every table an agent serves. Column names are a contract:
//!   dashboards and users' SQL depend on them. Columns may be added, never renamed.
//! - [`ticket`]: the Arrow Flight ticket that asks an agent to run a query fragment.
//! - [`auth`]: the bearer token agents may require.
//! - [`digest`]: the mergeable sketch behind percentiles computed across agents.
//! - [`guard`]: the bounds both sides run every query within.
#![deny(missing_docs)]

pub mod auth;
pub mod digest;
pub mod guard;
pub mod schema;
pub mod ticket;

pub use ticket::{FragmentTicket, TICKET_VERSION};
