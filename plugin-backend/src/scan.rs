//! [`AgentTable`]: a table whose rows live on every agent. Its scan, [`AgentScanExec`], has one
//! partition per agent; each partition waits for its turn (the fan-out bound), sends the agent
//! a fragment with the pushed-down projection, filters and limit, and collects the agent's
//! whole answer within the per-agent timeout and the query's memory limit.
//!
//! An agent that cannot answer gives an empty partition and is recorded as missing in the
//! query's [`QueryAgents`]; the engine reports the result as partial and names it. An agent
//! that rejects the query fails the query.

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use datafusion::{
    arrow::{
        datatypes::{Schema, SchemaRef},
        record_batch::{RecordBatch, RecordBatchOptions},
    },
    catalog::{Session, TableProvider},
    common::Result,
    datasource::TableType,
    error::DataFusionError,
    execution::{
        SendableRecordBatchStream, TaskContext,
        memory_pool::{MemoryConsumer, MemoryReservation},
    },
    logical_expr::{Expr, TableProviderFilterPushDown},
    physical_expr::EquivalenceProperties,
    physical_plan::{
        DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
        execution_plan::{Boundedness, EmissionType},
        stream::RecordBatchStreamAdapter,
    },
};
use futures::{StreamExt, TryStreamExt, stream};

use crate::{
    agents::{Agent, QueryAgents},
    error::{AgentError, FailureKind},
    fragment,
};

/// A table served by every agent of a query.
#[derive(Debug)]
pub struct AgentTable {
    name: String,
    schema: SchemaRef,
    agents: Arc<QueryAgents>,
    top_k: Option<TopK>,
}

/// Each agent sends only its first `k` rows in `order_by` (SQL); see `pushdown::push_top_k`.
#[derive(Debug, Clone)]
pub struct TopK {
    /// The ORDER BY list, as SQL over the table's columns.
    pub order_by: String,
    /// How many rows.
    pub k: usize,
}

impl AgentTable {
    /// The table's name on agents.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The agents of the query.
    pub fn agents(&self) -> &Arc<QueryAgents> {
        &self.agents
    }

    /// The table `name` with `schema` on `agents`.
    pub fn new(name: &str, schema: SchemaRef, agents: Arc<QueryAgents>) -> Self {
        Self {
            name: name.to_owned(),
            schema,
            agents,
            top_k: None,
        }
    }

    /// The same table, scanned as each agent's top `k` rows (every filter of the scan must
    /// reach the agents: the caller checks that they can be written as SQL).
    pub fn with_top_k(&self, top_k: TopK) -> Self {
        Self {
            name: self.name.clone(),
            schema: Arc::clone(&self.schema),
            agents: Arc::clone(&self.agents),
            top_k: Some(top_k),
        }
    }

    /// Whether scans are already cut to a top k.
    pub fn has_top_k(&self) -> bool {
        self.top_k.is_some()
    }
}

#[async_trait]
impl TableProvider for AgentTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Agents apply what they can express; the coordinator applies every filter again.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => Arc::clone(&self.schema),
        };
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let sql = match &self.top_k {
            Some(top) => format!(
                "{} ORDER BY {} LIMIT {}",
                fragment::scan_sql(&self.name, &columns, filters, None),
                top.order_by,
                top.k
            ),
            None => fragment::scan_sql(&self.name, &columns, filters, limit),
        };
        Ok(Arc::new(AgentScanExec::new(
            &self.name,
            schema,
            sql,
            Arc::clone(&self.agents),
        )))
    }
}

/// Scans one table on every agent, a partition per agent.
#[derive(Debug)]
pub struct AgentScanExec {
    table: String,
    schema: SchemaRef,
    sql: String,
    agents: Arc<QueryAgents>,
    properties: Arc<PlanProperties>,
}

impl AgentScanExec {
    /// Runs `sql`, whose result has `schema`, on every agent; `table` names it in plans.
    pub fn new(table: &str, schema: SchemaRef, sql: String, agents: Arc<QueryAgents>) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(agents.agents.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            table: table.to_owned(),
            schema,
            sql,
            agents,
            properties,
        }
    }

    /// The fragment each agent runs.
    pub fn fragment_sql(&self) -> &str {
        &self.sql
    }
}

impl DisplayAs for AgentScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AgentScanExec: table={}, agents={}, fragment={}",
            self.table,
            self.agents.agents.len(),
            self.sql
        )
    }
}

/// Checks an agent's batch against the expected schema; an empty expected schema takes the
/// agent's row markers as a row count.
fn conform(batch: RecordBatch, schema: &SchemaRef, agent: &str) -> Result<RecordBatch, AgentError> {
    if schema.fields().is_empty() {
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        return RecordBatch::try_new_with_options(Arc::new(Schema::empty()), vec![], &options)
            .map_err(|e| AgentError::unavailable(agent, e.to_string()));
    }
    let got = batch.schema();
    let same = got.fields().len() == schema.fields().len()
        && got
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if !same {
        return Err(AgentError::unavailable(
            agent,
            format!(
                "returned columns {:?}, expected {:?} (agent and coordinator versions differ?)",
                got.fields()
                    .iter()
                    .map(|f| (f.name(), f.data_type()))
                    .collect::<Vec<_>>(),
                schema
                    .fields()
                    .iter()
                    .map(|f| (f.name(), f.data_type()))
                    .collect::<Vec<_>>()
            ),
        ));
    }
    // Same names and types; adopt the expected schema (nullability, metadata).
    RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec())
        .map_err(|e| AgentError::unavailable(agent, e.to_string()))
}

impl ExecutionPlan for AgentScanExec {
    fn name(&self) -> &str {
        "AgentScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    kindling_sql::leaf_plan_methods!();

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = Arc::clone(&self.schema);
        let Some(agent) = self.agents.agents.get(partition).cloned() else {
            // No agent to ask: an empty table.
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                stream::empty(),
            )));
        };
        let reservation = MemoryConsumer::new(format!("AgentScanExec[{}]", agent.name))
            .register(context.memory_pool());
        let answer = answer(
            Arc::clone(&self.agents),
            agent,
            self.sql.clone(),
            Arc::clone(&schema),
            reservation,
        );
        let batches = stream::once(answer).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            batches.boxed(),
        )))
    }
}

/// One agent's answer to `sql` as a stream of conforming batches; empty when the agent could
/// not answer (it is then recorded as missing).
async fn answer(
    agents: Arc<QueryAgents>,
    agent: Agent,
    sql: String,
    expected: SchemaRef,
    mut reservation: MemoryReservation,
) -> Result<impl futures::Stream<Item = Result<RecordBatch>> + Send> {
    let turn = agents.turn().await;
    let fetched = crate::agents::fetch_all(
        &agent,
        &agents.set,
        sql,
        Some(&mut reservation),
        Arc::clone(&agents.received),
    )
    .await;
    drop(turn);
    let batches = fetched.and_then(|batches| {
        batches
            .into_iter()
            .map(|b| conform(b, &expected, &agent.name))
            .collect::<Result<Vec<_>, _>>()
    });
    let batches = match batches {
        Ok(batches) => batches,
        Err(failure) if failure.kind == FailureKind::Unavailable => {
            agents.record_missing(failure);
            Vec::new()
        }
        Err(failure) => return Err(DataFusionError::External(Box::new(failure))),
    };
    // The reservation lives as long as the batches it pays for.
    Ok(stream::iter(batches).map(move |b| {
        let _ = &reservation;
        Ok(b)
    }))
}
