//! What crosses the boundary between a Kindling agent and a query coordinator (the `kindling`
//! CLI or the Grafana plugin), so that both sides agree without talking first:
//!
//! - [`schema`]: the Arrow schema of every table an agent serves. Column names are a contract:
//!   dashboards and users' SQL depend on them. Columns may be added, never renamed.
//! - [`ticket`]: the Arrow Flight ticket that asks an agent to run a query fragment.
//! - [`auth`]: the bearer token agents may require.
//!
//! The bounds both sides run queries within and the mergeable percentile sketch live in
//! `kindling-sql`, so that this crate needs Arrow's schema types only, not DataFusion.
#![deny(missing_docs)]

pub mod auth;
pub mod schema;
pub mod ticket;

pub use ticket::{FragmentTicket, TICKET_VERSION};
