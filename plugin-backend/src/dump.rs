//! `kindling dump`: every stored table of every agent written to Parquet, one file per table
//! (`calls.parquet`, ...), plus `manifest.json`. Users attach dumps to bug reports and analyse
//! incidents offline (DuckDB, pandas, `kindling-agent --replay DIR`); tests and benchmarks use
//! them as data slices.

use std::{collections::BTreeMap, os::unix::fs::OpenOptionsExt, path::Path};

use kindling_wire::schema;
use parquet::arrow::ArrowWriter;
use serde::Serialize;

use crate::{
    QueryEngine,
    error::AgentError,
    macros::{self, MacroContext},
};

/// What a dump holds.
#[derive(Debug, Serialize)]
pub struct Manifest {
    /// When it was written (RFC 3339).
    pub created: String,
    /// Earliest time of the rows kept (RFC 3339), if limited.
    pub since: Option<String>,
    /// Rows per table.
    pub tables: BTreeMap<String, usize>,
    /// Agents asked.
    pub agents: usize,
    /// Agents that did not answer, with why: their rows are not in the dump.
    pub missing: Vec<String>,
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Writes every stored table's rows (those from `since_ns` on, if given) to `out`.
pub async fn dump(
    engine: &QueryEngine,
    out: &Path,
    since_ns: Option<i64>,
    now_ns: i64,
) -> Result<Manifest, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut tables = BTreeMap::new();
    let mut missing: Vec<AgentError> = Vec::new();
    let mut agents = 0;
    for table in schema::STORED_TABLES {
        let mut sql = format!("SELECT * FROM {table}");
        if let (Some(from_ns), Some(column)) = (since_ns, schema::time_column(table)) {
            let ctx = MacroContext {
                from_ns,
                to_ns: now_ns,
                interval_ms: 1_000,
            };
            sql.push_str(&macros::expand(
                &format!(" WHERE $__timeFilter({column})"),
                &ctx,
            )?);
        }
        let result = engine
            .query(&sql)
            .await
            .map_err(|e| format!("{table}: {e}"))?;
        let path = out.join(format!("{table}.parquet"));
        // Rows can hold personal data: readable by the owner only, whatever the umask.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let mut writer = ArrowWriter::try_new(file, std::sync::Arc::clone(&result.schema), None)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        for batch in &result.batches {
            writer
                .write(batch)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        writer
            .close()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        tables.insert(table.to_owned(), result.num_rows());
        agents = agents.max(result.agents);
        for m in result.missing {
            if !missing.iter().any(|x| x.agent == m.agent) {
                missing.push(m);
            }
        }
    }
    let manifest = Manifest {
        created: rfc3339(now_ns),
        since: since_ns.map(rfc3339),
        tables,
        agents,
        missing: missing.iter().map(ToString::to_string).collect(),
    };
    let path = out.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest).expect("a manifest serializes");
    std::fs::write(&path, text + "\n")
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(manifest)
}
