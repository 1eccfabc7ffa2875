//! SQL behaviour of the coordinator over two fixture agents, in sqllogictest files
//! (tests/slt/*.slt). Each file runs against a fresh pair of agents serving known rows (see
//! support::fixture_flow), queried through Flight exactly as the CLI and plugin do. A query's
//! type letters are checked against its result's Arrow types ([`ColumnType`]).

use kindling_testkit as support;

use std::path::PathBuf;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use kindling_plugin_backend::{
    EngineLimits, QueryEngine,
    agents::AgentSet,
    macros::{self, MacroContext},
};
use sqllogictest::DBOutput;

/// The time range and interval of the Grafana macros in the .slt files: 2023-11-14T22:13:30Z
/// (fixture EPOCH + 10 s) to 22:14:30Z, 30 s.
const MACRO_RANGE: MacroContext = MacroContext {
    from_ns: (support::EPOCH_S + 10) * 1_000_000_000,
    to_ns: (support::EPOCH_S + 70) * 1_000_000_000,
    interval_ms: 30_000,
};

/// A result column's type letter in the .slt files (`query ITR`): `I` integers, `R` floating
/// point and decimals, `T` text and times (timestamps, dates and times of day, which the
/// files, like support::rows, show as text), `B` booleans, `?` anything else. Another letter
/// is a parse error, and the runner's strict validator fails a query whose letters differ
/// from its result's types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnType {
    Integer,
    Float,
    Text,
    Boolean,
    Other,
}

impl ColumnType {
    fn of(t: &DataType) -> Self {
        match t {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64 => Self::Integer,
            DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal32(_, _)
            | DataType::Decimal64(_, _)
            | DataType::Decimal128(_, _)
            | DataType::Decimal256(_, _) => Self::Float,
            DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Timestamp(_, _)
            | DataType::Date32
            | DataType::Date64
            | DataType::Time32(_)
            | DataType::Time64(_) => Self::Text,
            DataType::Boolean => Self::Boolean,
            DataType::Dictionary(_, values) => Self::of(values),
            _ => Self::Other,
        }
    }
}

impl sqllogictest::ColumnType for ColumnType {
    fn from_char(value: char) -> Option<Self> {
        match value {
            'I' => Some(Self::Integer),
            'R' => Some(Self::Float),
            'T' => Some(Self::Text),
            'B' => Some(Self::Boolean),
            '?' => Some(Self::Other),
            _ => None,
        }
    }

    fn to_char(&self) -> char {
        match self {
            Self::Integer => 'I',
            Self::Float => 'R',
            Self::Text => 'T',
            Self::Boolean => 'B',
            Self::Other => '?',
        }
    }
}

struct Coordinator {
    engine: QueryEngine,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SqlError(String);

#[async_trait]
impl sqllogictest::AsyncDB for Coordinator {
    type Error = SqlError;
    type ColumnType = ColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<ColumnType>, SqlError> {
        let sql = macros::expand(sql, &MACRO_RANGE).map_err(SqlError)?;
        let out = self
            .engine
            .query(&sql)
            .await
            .map_err(|e| SqlError(e.to_string()))?;
        let types = out
            .schema
            .fields()
            .iter()
            .map(|f| ColumnType::of(f.data_type()))
            .collect();
        Ok(DBOutput::Rows {
            types,
            rows: support::rows(&out.batches),
        })
    }

    async fn shutdown(&mut self) {}

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    for file in files {
        let (a1, a2) = support::two_fixture_agents().await;
        let agents = vec![a1.addr.clone(), a2.addr.clone()];
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = QueryEngine::new(AgentSet::new(agents.clone()), EngineLimits::default());
            async move { Ok(Coordinator { engine }) }
        });
        runner.with_column_validator(sqllogictest::strict_column_validator);
        if let Err(e) = runner.run_file_async(&file).await {
            panic!("{}: {e}", file.display());
        }
        drop((a1, a2));
    }
}
