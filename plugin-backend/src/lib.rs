//! Kindling's query coordinator. Agents hold the rows; this crate plans SQL over all of them
//! with DataFusion and merges their answers. Both front ends use it: the `kindling` CLI and
//! `gpx_kindling`, the Grafana backend plugin.
//!
//! - [`engine`]: [`QueryEngine`], a DataFusion session whose tables span every agent.
//! - [`scan`]: [`scan::AgentTable`] and its scan, one partition per agent.
//! - [`fragment`]: the SQL each agent runs for a scan (projection, filters, limit pushed down).
//! - [`pushdown`]: GROUP BY split into partial aggregates on agents and a final merge.
//! - [`agents`]: Flight connections to agents.
//! - [`dns_monitor`]: the DNS monitor's table functions over `dns`.
//! - [`dump`]: every table of every agent to Parquet (`kindling dump`).
//! - [`health`]: per-agent health (reachable, version, node, rows held, drops).
//! - [`macros`]: Grafana macros (`$__timeFilter`, `$__timeGroup`, ...) in SQL.
//! - [`output`]: results as text tables, CSV or JSON for the CLI.
//! - [`grafana`]: the plugin: query JSON, Grafana frames, QueryData and CheckHealth.
#![deny(missing_docs)]

pub mod agents;
pub mod dns_monitor;
pub mod dump;
pub mod engine;
pub mod error;
pub mod fragment;
pub mod grafana;
pub mod health;
pub mod macros;
pub mod output;
pub mod pushdown;
pub mod scan;

pub use engine::{EngineLimits, QueryEngine, QueryOutput};
pub use error::{Error, Result};
