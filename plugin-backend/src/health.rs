//! Health of each agent, as Grafana's "Save & test" and `kindling health` report it, and as
//! the coordinator's own `agents` table serves it to SQL (the alert rule "Agent not answering").

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::{
    arrow::{
        array::{Array, ArrayRef, AsArray, BooleanArray, StringArray},
        datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type},
        record_batch::RecordBatch,
    },
    catalog::{Session, TableProvider},
    datasource::{MemTable, TableType},
    logical_expr::Expr,
    physical_plan::ExecutionPlan,
};
use futures::StreamExt;
use serde::Serialize;

use crate::agents::{AgentSet, fetch_all};
use crate::error::AgentError;

/// What one agent reported, or why it could not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentHealth {
    /// The agent's address (after `CLUSTER/` when its cluster is named).
    pub agent: String,
    /// Its cluster's name as the datasource configures it ("" for the unnamed one).
    pub cluster: String,
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
    let cluster_name = |i: usize| {
        agents
            .clusters
            .get(i)
            .map(|c| c.name.clone())
            .unwrap_or_default()
    };
    let unresolved = unresolved
        .into_iter()
        .map(|(e, cluster): (AgentError, usize)| AgentHealth {
            agent: e.agent,
            cluster: cluster_name(cluster),
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
                cluster: cluster_name(agent.cluster),
                status,
            }
        })
        .buffered(agents.fanout.max(1))
        .collect()
        .await;
    unresolved.chain(answers).collect()
}

/// Name of the coordinator's table of its agents.
pub const AGENTS_TABLE: &str = "agents";

/// The coordinator's table of the datasource's agents, asked for their stats when scanned: one
/// row per agent (per address a DNS name resolves to; one row for a name that does not): its
/// name and cluster, whether it answered, and its node and version, or why not.
#[derive(Debug)]
pub struct AgentsTable {
    agents: Arc<AgentSet>,
}

impl AgentsTable {
    /// The table of `agents`.
    pub fn new(agents: Arc<AgentSet>) -> Self {
        Self { agents }
    }

    fn schema() -> SchemaRef {
        let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
        Arc::new(Schema::new(vec![
            text("agent", false),
            text("cluster", false),
            Field::new("answered", DataType::Boolean, false),
            text("node", true),
            text("version", true),
            text("error", true),
        ]))
    }
}

#[async_trait]
impl TableProvider for AgentsTable {
    fn schema(&self) -> SchemaRef {
        Self::schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let report = check(&self.agents).await;
        fn ok(h: &AgentHealth) -> Option<(&str, &str)> {
            match &h.status {
                AgentStatus::Ok { node, version, .. } => Some((node, version)),
                AgentStatus::Error { .. } => None,
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                report.iter().map(|h| &h.agent),
            )),
            Arc::new(StringArray::from_iter_values(
                report.iter().map(|h| &h.cluster),
            )),
            Arc::new(BooleanArray::from_iter(
                report.iter().map(|h| Some(ok(h).is_some())),
            )),
            Arc::new(StringArray::from_iter(
                report.iter().map(|h| ok(h).map(|(node, _)| node)),
            )),
            Arc::new(StringArray::from_iter(
                report.iter().map(|h| ok(h).map(|(_, version)| version)),
            )),
            Arc::new(StringArray::from_iter(report.iter().map(
                |h| match &h.status {
                    AgentStatus::Error { error } => Some(error.as_str()),
                    AgentStatus::Ok { .. } => None,
                },
            ))),
        ];
        let batch = RecordBatch::try_new(Self::schema(), columns)?;
        let table = MemTable::try_new(Self::schema(), vec![vec![batch]])?;
        table.scan(state, projection, filters, limit).await
    }
}
