//! The Grafana backend plugin: QueryData runs each query through the [`QueryEngine`] of the
//! datasource's agents and returns frames; CheckHealth reports every agent.
//!
//! Errors carry their query's refId. A user's mistake (bad SQL, unknown table, malformed query
//! JSON, a result that does not fit the format) is reported with status 400 (Bad Request), the
//! SDK 0.5 equivalent of a downstream error; an unreachable agent is 502 (Bad Gateway); a
//! timeout 504.

pub mod frames;
pub mod query;
pub mod resource;
pub mod service_map;
pub mod trace;

use std::time::Duration;

use futures::stream::FuturesOrdered;
use grafana_plugin_sdk::{
    backend::{self, DataQueryStatus},
    prelude::*,
};

use crate::{
    EngineLimits, Error, QueryEngine,
    agents::{AgentSet, ClusterAgents},
    health::{self, AgentStatus},
};

pub use query::{DatasourceSettings, SecureSettings};

/// The plugin's state: only limits; agents come with each request's datasource settings.
#[derive(Debug, Clone, GrafanaPlugin, Default)]
#[grafana_plugin(
    plugin_type = "datasource",
    json_data = "DatasourceSettings",
    secure_json_data = "SecureSettings"
)]
pub struct KindlingPlugin {
    /// Limits of every query.
    pub limits: EngineLimits,
}

/// A failed query, with its refId.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    ref_id: String,
    message: String,
    status: Status,
}

#[derive(Debug, Clone, Copy)]
enum Status {
    UserError,
    BadGateway,
    Timeout,
    Internal,
}

impl QueryError {
    fn new(ref_id: &str, status: Status, message: impl Into<String>) -> Self {
        Self {
            ref_id: ref_id.to_owned(),
            message: message.into(),
            status,
        }
    }

    fn from_engine(ref_id: &str, e: &Error) -> Self {
        let status = match e {
            Error::Query(_) => Status::UserError,
            Error::Unavailable(_) => Status::BadGateway,
            Error::Timeout(_) => Status::Timeout,
            Error::ResourcesExhausted(_) | Error::Internal(_) => Status::Internal,
        };
        Self::new(ref_id, status, e.to_string())
    }
}

impl backend::DataQueryError for QueryError {
    fn ref_id(self) -> String {
        self.ref_id
    }

    fn status(&self) -> DataQueryStatus {
        match self.status {
            Status::UserError => DataQueryStatus::BadRequest,
            Status::BadGateway => DataQueryStatus::BadGateway,
            Status::Timeout => DataQueryStatus::Timeout,
            Status::Internal => DataQueryStatus::Internal,
        }
    }
}

impl KindlingPlugin {
    fn engine(
        &self,
        settings: Option<(&DatasourceSettings, &SecureSettings)>,
    ) -> Result<QueryEngine, String> {
        let no_agents = "no agents configured: set jsonData.agents to a list of HOST:PORT, or \
                         jsonData.clusters to a list of {\"name\": ..., \"agents\": [...]}";
        let Some((settings, secure)) = settings else {
            return Err(no_agents.into());
        };
        let unnamed = (!settings.agents.is_empty()).then(|| query::ClusterSettings {
            name: String::new(),
            agents: settings.agents.clone(),
            tls_server_name: None,
        });
        if settings.clusters.iter().any(|c| c.name.is_empty()) {
            return Err("a cluster of jsonData.clusters has no name".into());
        }
        let mut clusters = Vec::new();
        for c in unnamed.iter().chain(&settings.clusters) {
            if clusters.iter().any(|k: &ClusterAgents| k.name == c.name) {
                return Err(format!(
                    "jsonData.clusters names the cluster `{}` twice",
                    c.name
                ));
            }
            let mut cluster = ClusterAgents::new(&c.name, c.agents.clone());
            cluster.token = secure.token_of(&c.name);
            cluster.tls = secure
                .tls_ca_cert_of(&c.name)
                .map(|ca_pem| crate::agents::TlsSettings {
                    ca_pem,
                    server_name: c
                        .tls_server_name
                        .clone()
                        .or_else(|| settings.tls_server_name.clone()),
                });
            clusters.push(cluster);
        }
        if clusters.iter().all(|c| c.addrs.is_empty()) {
            return Err(no_agents.into());
        }
        let mut agents = AgentSet::of_clusters(clusters);
        if let Some(seconds) = settings.agent_timeout_seconds {
            agents.agent_timeout = AgentSet::timeout_secs(seconds)
                .map_err(|e| format!("jsonData.agentTimeoutSeconds {e}"))?;
        }
        if let Some(fanout) = settings.fanout {
            agents.fanout = fanout;
        }
        Ok(QueryEngine::new(agents, self.limits))
    }

    async fn run_query(
        &self,
        engine: &QueryEngine,
        q: backend::DataQuery<serde_json::Value>,
    ) -> Result<backend::DataResponse, QueryError> {
        let ref_id = q.ref_id.clone();
        let parsed = query::parse_any(&q.query_type, &q.query)
            .map_err(|m| QueryError::new(&ref_id, Status::UserError, m))?;
        let ctx = crate::macros::MacroContext {
            from_ns: q.time_range.from.timestamp_nanos_opt().unwrap_or(i64::MIN),
            to_ns: q.time_range.to.timestamp_nanos_opt().unwrap_or(i64::MAX),
            interval_ms: (q.interval.as_millis() as i64).max(1),
        };
        let run = |raw: String| {
            let ref_id = ref_id.clone();
            async move {
                let sql = crate::macros::expand(&raw, &ctx)
                    .map_err(|m| QueryError::new(&ref_id, Status::UserError, m))?;
                let out = engine
                    .query(&sql)
                    .await
                    .map_err(|e| QueryError::from_engine(&ref_id, &e))?;
                Ok::<_, QueryError>((sql, out))
            }
        };
        let mut frames = match parsed {
            query::Query::Sql(sql_query) => {
                let (sql, out) = run(sql_query.raw_sql).await?;
                frames::to_frames(&out, sql_query.format, &sql, self.limits.max_rows)
            }
            query::Query::ServiceMap(map) => {
                let (edges_sql, edges) = run(map.edges_sql()).await?;
                let (nodes_sql, nodes) = run(map.nodes_sql()).await?;
                let meta = frames::metadata(
                    &format!("{edges_sql};\n{nodes_sql}"),
                    &edges,
                    self.limits.max_rows,
                );
                let seconds = (ctx.to_ns.saturating_sub(ctx.from_ns)) as f64 / 1e9;
                service_map::frames(&edges, &nodes, seconds, meta)
            }
            query::Query::Trace(t) => {
                let (call_sql, out) = run(t
                    .call_sql()
                    .map_err(|m| QueryError::new(&ref_id, Status::UserError, m))?)
                .await?;
                let calls =
                    trace::rows(&out).map_err(|m| QueryError::new(&ref_id, Status::Internal, m))?;
                let Some(call) = calls.first() else {
                    return Err(QueryError::new(
                        &ref_id,
                        Status::UserError,
                        format!(
                            "trace: no call of connection {} at ts {} on node {:?} (its agent \
                             may be down, or the call evicted)",
                            t.conn_id, t.ts, t.node
                        ),
                    ));
                };
                let end = call.ts_ns.saturating_add(call.duration_ns as i64);
                let (children_sql, out) =
                    run(t.children_sql(call.tid, call.pid, call.ts_ns, end)).await?;
                let children =
                    trace::rows(&out).map_err(|m| QueryError::new(&ref_id, Status::Internal, m))?;
                let meta = frames::metadata(
                    &format!("{call_sql};\n{children_sql}"),
                    &out,
                    self.limits.max_rows,
                );
                Ok(vec![trace::frame(call, &children, meta)])
            }
        }
        .map_err(|m| QueryError::new(&ref_id, Status::UserError, m))?;
        let checked = frames
            .iter_mut()
            .map(|f| f.check().map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QueryError::new(&ref_id, Status::Internal, e))?;
        Ok(backend::DataResponse::new(ref_id, checked))
    }
}

#[backend::async_trait]
impl backend::DataService for KindlingPlugin {
    type Query = serde_json::Value;
    type QueryError = QueryError;
    type Stream = backend::BoxDataResponseStream<Self::QueryError>;

    async fn query_data(
        &self,
        request: backend::QueryDataRequest<Self::Query, Self>,
    ) -> Self::Stream {
        let settings = request.plugin_context.instance_settings.as_ref();
        let engine = self.engine(settings.map(|s| (&s.json_data, &s.decrypted_secure_json_data)));
        let plugin = self.clone();
        let responses: FuturesOrdered<_> = request
            .queries
            .into_iter()
            .map(|q| {
                let engine = engine.clone();
                let plugin = plugin.clone();
                async move {
                    match engine {
                        Ok(engine) => plugin.run_query(&engine, q).await,
                        Err(m) => Err(QueryError::new(&q.ref_id, Status::UserError, m)),
                    }
                }
            })
            .collect();
        Box::pin(responses)
    }
}

#[backend::async_trait]
impl backend::DiagnosticsService for KindlingPlugin {
    type CheckHealthError = std::convert::Infallible;
    type CollectMetricsError = std::convert::Infallible;

    async fn check_health(
        &self,
        request: backend::CheckHealthRequest<Self>,
    ) -> Result<backend::CheckHealthResponse, Self::CheckHealthError> {
        let settings = request.plugin_context.instance_settings.as_ref();
        let engine =
            match self.engine(settings.map(|s| (&s.json_data, &s.decrypted_secure_json_data))) {
                Ok(e) => e,
                Err(m) => return Ok(backend::CheckHealthResponse::error(m)),
            };
        let mut agents = engine.agents().clone();
        agents.connect_timeout = agents.connect_timeout.min(Duration::from_secs(5));
        let report = health::check(&agents).await;
        let ok = report
            .iter()
            .filter(|h| matches!(h.status, AgentStatus::Ok { .. }))
            .count();
        let lines: Vec<String> = report
            .iter()
            .map(|h| match &h.status {
                AgentStatus::Ok {
                    node,
                    version,
                    rows_held,
                    events_dropped,
                    ..
                } => format!(
                    "{}: ok (node {node}, version {version}, {rows_held} rows, {events_dropped} dropped)",
                    h.agent
                ),
                AgentStatus::Error { error } => format!("{}: {error}", h.agent),
            })
            .collect();
        let message = format!(
            "{ok} of {} agents reachable. {}",
            report.len(),
            lines.join("; ")
        );
        let details = serde_json::json!({ "agents": report });
        let response = if ok == report.len() {
            backend::CheckHealthResponse::ok(message)
        } else {
            backend::CheckHealthResponse::error(message)
        };
        Ok(response.with_json_details(details))
    }

    async fn collect_metrics(
        &self,
        _request: backend::CollectMetricsRequest<Self>,
    ) -> Result<backend::CollectMetricsResponse, Self::CollectMetricsError> {
        Ok(backend::CollectMetricsResponse::new(None))
    }
}

#[backend::async_trait]
impl backend::ResourceService for KindlingPlugin {
    type Error = resource::ResourceError;
    type InitialResponse = serde_json::Value;
    type Stream = backend::BoxResourceStream<Self::Error>;

    async fn call_resource(
        &self,
        request: backend::CallResourceRequest<Self>,
    ) -> Result<(Self::InitialResponse, Self::Stream), Self::Error> {
        let body = resource::answer(request.request.uri().path())?;
        Ok((body, Box::pin(futures::stream::empty())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(json: serde_json::Value, secure: serde_json::Value) -> Result<QueryEngine, String> {
        let settings: DatasourceSettings = serde_json::from_value(json).unwrap();
        let secure: SecureSettings = serde_json::from_value(secure).unwrap();
        KindlingPlugin::default().engine(Some((&settings, &secure)))
    }

    /// (name, addresses, token, CA, TLS name) of every cluster.
    type Summary = (
        String,
        Vec<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );

    fn clusters(engine: &QueryEngine) -> Vec<Summary> {
        engine
            .agents()
            .clusters
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    c.addrs.clone(),
                    c.token.clone(),
                    c.tls.as_ref().map(|t| t.ca_pem.clone()),
                    c.tls.as_ref().and_then(|t| t.server_name.clone()),
                )
            })
            .collect()
    }

    #[test]
    fn clusters_take_their_own_secrets_or_the_shared_ones() {
        let e = engine(
            serde_json::json!({
                "agents": ["a:1"],
                "tlsServerName": "shared.name",
                "clusters": [
                    {"name": "east", "agents": ["e:1", "e:2"], "tlsServerName": "east.name"},
                    {"name": "west", "agents": ["w:1"]},
                ],
            }),
            serde_json::json!({
                "token": "shared", "tlsCACert": "CA",
                "token.east": " east-token ", "tlsCACert.west": "WEST CA",
            }),
        )
        .unwrap();
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            clusters(&e),
            [
                (
                    "".into(),
                    vec!["a:1".into()],
                    s("shared"),
                    s("CA"),
                    s("shared.name")
                ),
                (
                    "east".into(),
                    vec!["e:1".into(), "e:2".into()],
                    s("east-token"),
                    s("CA"),
                    s("east.name")
                ),
                (
                    "west".into(),
                    vec!["w:1".into()],
                    s("shared"),
                    s("WEST CA"),
                    s("shared.name")
                ),
            ]
        );
        // `clusters` alone is enough; a blank secret is none.
        let e = engine(
            serde_json::json!({"clusters": [{"name": "east", "agents": ["e:1"]}]}),
            serde_json::json!({"token.east": "  "}),
        )
        .unwrap();
        assert_eq!(
            clusters(&e),
            [("east".into(), vec!["e:1".into()], None, None, None)]
        );
    }

    #[test]
    fn bad_cluster_settings_are_named() {
        let none = serde_json::json!({});
        let err = |json| engine(json, none.clone()).unwrap_err();
        assert_eq!(
            err(serde_json::json!({"clusters": [{"name": "east", "agents": []}]})),
            "no agents configured: set jsonData.agents to a list of HOST:PORT, or \
             jsonData.clusters to a list of {\"name\": ..., \"agents\": [...]}"
        );
        assert_eq!(
            err(serde_json::json!({"clusters": [{"name": "", "agents": ["e:1"]}]})),
            "a cluster of jsonData.clusters has no name"
        );
        assert_eq!(
            err(serde_json::json!({"clusters": [
                {"name": "east", "agents": ["e:1"]}, {"name": "east", "agents": ["e:2"]},
            ]})),
            "jsonData.clusters names the cluster `east` twice"
        );
    }
}
