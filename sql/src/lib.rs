//! The query bounds and mergeable digests both sides of the wire (a Kindling agent and a query
//! coordinator: the `kindling` CLI or the Grafana plugin) run queries with:
//!
//! - [`guard`]: the bounds both sides run every query within.
//! - [`digest`]: the mergeable sketch behind percentiles computed across agents.
#![deny(missing_docs)]

pub mod digest;
pub mod guard;
