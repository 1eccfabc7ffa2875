//! Health of each agent, as Grafana's "Save & test" and `kindling health` report it.

use datafusion::arrow::{
    array::{Array, AsArray},
    datatypes::UInt64Type,
    record_batch::RecordBatch,
};
use futures::StreamExt;
use serde::Serialize;

use crate::agents::{AgentSet, fetch_all};
use crate::error::AgentError;

/// What one agent reported, or why it could not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentHealth {
    /// The agent's address.
    pub agent: String,
    /// Its report, or the error that prevented it.
    #[serde(flatten)]
    pub status: AgentStatus,
}

/// An agent's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AgentStatus {
    /// The agent answered.
    Ok {
        /// Its node name.
        node: String,
        /// Its version.
        version: String,
        /// Rows held in all tables.
        rows_held: u64,
        /// Events received since start.
        events_received: u64,
        /// Events dropped since start.
        events_dropped: u64,
    },
    /// The agent did not answer.
    Error {
        /// Why.
        error: String,
    },
}

const HEALTH_SQL: &str =
    "SELECT node, version, rows_held, events_received, events_dropped FROM agent_stats";

fn summarize(batches: &[RecordBatch]) -> Result<AgentStatus, String> {
    let mut node = None;
    let (mut rows, mut received, mut dropped) = (0, 0, 0);
    for b in batches {
        let text = |i: usize| {
            b.column(i)
                .as_string_opt::<i32>()
                .map(|a| a.value(0).to_owned())
        };
        let num = |i: usize| b.column(i).as_primitive_opt::<UInt64Type>().cloned();
        if b.num_rows() == 0 {
            continue;
        }
        let bad = || "agent_stats has unexpected column types".to_owned();
        node = Some((text(0).ok_or_else(bad)?, text(1).ok_or_else(bad)?));
        let held = num(2).ok_or_else(bad)?;
        rows += held.values().iter().sum::<u64>();
        received = num(3).ok_or_else(bad)?.value(0);
        dropped = num(4).ok_or_else(bad)?.value(0);
        debug_assert_eq!(held.null_count(), 0);
    }
    let (node, version) = node.ok_or_else(|| "agent_stats is empty".to_owned())?;
    Ok(AgentStatus::Ok {
        node,
        version,
        rows_held: rows,
        events_received: received,
        events_dropped: dropped,
    })
}

/// Asks every agent for its stats, [`AgentSet::fanout`] at a time; never fails as a whole.
/// A DNS name is reported once per address it resolves to, or once with why it did not.
pub async fn check(agents: &AgentSet) -> Vec<AgentHealth> {
    let (resolved, unresolved) = agents.resolve().await;
    let unresolved = unresolved
        .into_iter()
        .map(|(e, _): (AgentError, usize)| AgentHealth {
            agent: e.agent,
            status: AgentStatus::Error { error: e.message },
        });
    let answers: Vec<AgentHealth> = futures::stream::iter(resolved)
        .map(|agent| async move {
            let answer = fetch_all(
                &agent,
                agents,
                HEALTH_SQL.to_owned(),
                None,
                Default::default(),
            );
            let status = match answer.await {
                Ok(batches) => {
                    summarize(&batches).unwrap_or_else(|error| AgentStatus::Error { error })
                }
                Err(e) => AgentStatus::Error { error: e.message },
            };
            AgentHealth {
                agent: agent.name,
                status,
            }
        })
        .buffered(agents.fanout.max(1))
        .collect()
        .await;
    unresolved.chain(answers).collect()
}
