//! The query JSON Grafana stores in dashboards and sends with each query (a stable contract;
//! see frontend/README.md):
//!
//! ```json
//! {"refId": "A", "queryType": "sql", "rawSql": "SELECT ...", "format": "table"}
//! ```
//!
//! and the datasource settings: `jsonData` `{"agents": ["HOST:PORT", ...],
//! "agentTimeoutSeconds": 10, "fanout": 32, "tlsServerName": "..."}` (only `agents` is required;
//! a HOST may be a DNS name that stands for many agents) and `secureJsonData` `{"token": "...",
//! "tlsCACert": "-----BEGIN CERTIFICATE-----..."}`: the agents' bearer token, and the CA of
//! their TLS certificates (TLS is used when it is set).

use serde::Deserialize;

/// How a result is shaped into frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultFormat {
    /// One frame with every column.
    #[default]
    Table,
    /// Time series: a timestamp column, one series per numeric column and per combination of
    /// the text columns' values (which become labels).
    TimeSeries,
}

/// A query of type `sql`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqlQuery {
    /// The SQL to run.
    #[serde(default)]
    pub raw_sql: String,
    /// Frame shape.
    #[serde(default)]
    pub format: ResultFormat,
}

/// Datasource settings (`jsonData`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasourceSettings {
    /// Agent addresses, `HOST:PORT`.
    #[serde(default)]
    pub agents: Vec<String>,
    /// Seconds one agent may take to answer (default 10).
    #[serde(default)]
    pub agent_timeout_seconds: Option<f64>,
    /// Most agents queried at once (default 32).
    #[serde(default)]
    pub fanout: Option<usize>,
    /// Name the agents' TLS certificates must carry (default: each agent's host).
    #[serde(default)]
    pub tls_server_name: Option<String>,
}

/// Datasource secrets (`secureJsonData`), never sent back to the browser.
#[derive(Clone, Default, Deserialize)]
pub struct SecureSettings {
    /// Bearer token of the agents.
    #[serde(default)]
    pub token: Option<String>,
    /// PEM of the CA that signed the agents' TLS certificates; connect over TLS when set.
    #[serde(default, rename = "tlsCACert")]
    pub tls_ca_cert: Option<String>,
}

impl std::fmt::Debug for SecureSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureSettings")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls_ca_cert", &self.tls_ca_cert.is_some())
            .finish()
    }
}

/// A parsed query of any type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// `sql`
    Sql(SqlQuery),
    /// `service_map`
    ServiceMap(super::service_map::ServiceMapQuery),
    /// `trace`
    Trace(super::trace::TraceQuery),
}

/// Parses one query's JSON; `query_type` is Grafana's `queryType` ("" means sql).
pub fn parse_any(query_type: &str, json: &serde_json::Value) -> Result<Query, String> {
    let malformed = |e: serde_json::Error| format!("malformed query JSON: {e}");
    match query_type {
        "" | "sql" => parse(query_type, json).map(Query::Sql),
        "service_map" => serde_json::from_value(json.clone())
            .map(Query::ServiceMap)
            .map_err(malformed),
        "trace" => serde_json::from_value(json.clone())
            .map(Query::Trace)
            .map_err(malformed),
        other => Err(format!(
            "unknown queryType `{other}` (supported: sql, service_map, trace)"
        )),
    }
}

/// Parses the JSON of an `sql` query.
pub fn parse(query_type: &str, json: &serde_json::Value) -> Result<SqlQuery, String> {
    match query_type {
        "" | "sql" => {}
        other => {
            return Err(format!(
                "unknown queryType `{other}` (supported: sql, service_map, trace)"
            ));
        }
    }
    let q: SqlQuery =
        serde_json::from_value(json.clone()).map_err(|e| format!("malformed query JSON: {e}"))?;
    if q.raw_sql.trim().is_empty() {
        return Err("the query has no SQL (rawSql is empty)".to_owned());
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let q = parse(
            "sql",
            &json!({"refId": "A", "rawSql": "SELECT 1", "format": "time_series"}),
        );
        assert_eq!(
            q,
            Ok(SqlQuery {
                raw_sql: "SELECT 1".into(),
                format: ResultFormat::TimeSeries
            })
        );
        assert_eq!(
            parse("", &json!({"rawSql": "SELECT 2"})).unwrap().format,
            ResultFormat::Table
        );
    }

    #[test]
    fn bad_queries_say_what_is_wrong() {
        assert_eq!(
            parse("sql", &json!({"rawSql": "  "})).unwrap_err(),
            "the query has no SQL (rawSql is empty)"
        );
        assert_eq!(
            parse("graph", &json!({})).unwrap_err(),
            "unknown queryType `graph` (supported: sql, service_map, trace)"
        );
        let e = parse("sql", &json!({"rawSql": "x", "format": "pie"})).unwrap_err();
        assert!(
            e.starts_with("malformed query JSON: unknown variant `pie`"),
            "{e}"
        );
    }
}
