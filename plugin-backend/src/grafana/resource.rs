//! CallResource endpoints of the datasource:
//!
//! - `GET schema`: every table the agents serve, with its time column and its columns (name,
//!   Arrow type, nullable), the SQL macros and the table functions: what the query editor's
//!   completion offers. It comes from the schema compiled into the plugin (agents of the same
//!   version serve exactly these tables), so it answers without reaching any agent.

use grafana_plugin_sdk::backend;
use kindling_wire::schema;
use serde_json::{Value, json};
use tonic::codegen::{Bytes, http};

/// A request the datasource has no answer for.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResourceError(String);

impl backend::ErrIntoHttpResponse for ResourceError {
    fn into_http_response(self) -> Result<http::Response<Bytes>, Box<dyn std::error::Error>> {
        let body = serde_json::to_vec(&json!({ "error": self.to_string() }))?;
        Ok(http::Response::builder()
            .status(http::StatusCode::NOT_FOUND)
            .header("content-type", "application/json")
            .body(Bytes::from(body))?)
    }
}

/// The table functions the agents and the plugin know (see `dns_monitor`).
const FUNCTIONS: [(&str, &str); 3] = [
    (
        "dns_domains",
        "per domain: lookups, latency percentiles, error counts and rates",
    ),
    (
        "dns_clients",
        "per client address and process: lookups and NXDOMAIN, SERVFAIL, timeout rates",
    ),
    ("dns_servers", "per DNS server: lookups, latency, rates"),
];

/// The `schema` document.
pub fn schema_json() -> Value {
    let tables: Vec<Value> = schema::TABLES
        .iter()
        .map(|&name| {
            let columns: Vec<Value> = schema::by_name(name)
                .expect("every listed table has a schema")
                .fields()
                .iter()
                .map(|f| {
                    json!({
                        "name": f.name(),
                        "type": f.data_type().to_string(),
                        "nullable": f.is_nullable(),
                    })
                })
                .collect();
            json!({ "name": name, "timeColumn": schema::time_column(name), "columns": columns })
        })
        .collect();
    let functions: Vec<Value> = FUNCTIONS
        .iter()
        .map(|(name, description)| json!({ "name": name, "description": description }))
        .collect();
    let macros = [
        "$__timeFilter(col)",
        "$__timeFrom()",
        "$__timeTo()",
        "$__interval",
        "$__interval_ms",
        "$__timeGroup(col, interval)",
        "$__timeGroupAlias(col, interval)",
    ];
    json!({ "tables": tables, "functions": functions, "macros": macros })
}

/// Answers one resource request by its URL path (Grafana's
/// `/api/datasources/uid/<uid>/resources/<resource>`, or the resource alone).
pub fn answer(path: &str) -> Result<Value, ResourceError> {
    let resource = path.rsplit_once("/resources/").map_or(path, |(_, r)| r);
    match resource.trim_matches('/') {
        "schema" => Ok(schema_json()),
        other => Err(ResourceError(format!(
            "no resource {other:?} (this datasource serves: schema)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_found_by_their_last_path_segment() {
        assert!(answer("/api/datasources/uid/kindling/resources/schema").is_ok());
        assert!(answer("schema").is_ok());
        assert_eq!(
            answer("/api/datasources/uid/kindling/resources/nope")
                .unwrap_err()
                .to_string(),
            "no resource \"nope\" (this datasource serves: schema)"
        );
    }
}
