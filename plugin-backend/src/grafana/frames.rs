//! Query results as Grafana data frames (the SDK's own types; its arrow feature is off, so
//! each Arrow column is converted value by value).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use datafusion::arrow::{
    array::{Array, ArrayRef, AsArray, RecordBatch},
    compute::{cast, concat_batches},
    datatypes::{
        DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit,
        TimestampNanosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
    },
    util::display::{ArrayFormatter, FormatOptions},
};
use grafana_plugin_sdk::{
    data::{Field, Frame, Metadata, Notice, Severity},
    prelude::*,
};
use serde::Deserialize;

use crate::QueryOutput;

/// Errors shaping frames (the user's query does not fit the requested format).
pub type FrameError = String;

/// How a result is shaped into frames (the `format` of an `sql` query's JSON).
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

/// A primitive Arrow column as a field of the same Rust type.
macro_rules! primitive_field {
    ($t:ty, $name:expr, $a:expr) => {
        $a.as_primitive::<$t>()
            .iter()
            .collect::<Vec<_>>()
            .into_opt_field($name)
    };
}

/// One Arrow column as a Grafana field.
pub fn to_field(name: &str, a: &ArrayRef) -> Field {
    match a.data_type() {
        DataType::Boolean => a
            .as_boolean()
            .iter()
            .collect::<Vec<_>>()
            .into_opt_field(name),
        DataType::Int8 => primitive_field!(Int8Type, name, a),
        DataType::Int16 => primitive_field!(Int16Type, name, a),
        DataType::Int32 => primitive_field!(Int32Type, name, a),
        DataType::Int64 => primitive_field!(Int64Type, name, a),
        DataType::UInt8 => primitive_field!(UInt8Type, name, a),
        DataType::UInt16 => primitive_field!(UInt16Type, name, a),
        DataType::UInt32 => primitive_field!(UInt32Type, name, a),
        DataType::UInt64 => primitive_field!(UInt64Type, name, a),
        DataType::Float32 => primitive_field!(Float32Type, name, a),
        DataType::Float64 => primitive_field!(Float64Type, name, a),
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {
            match cast(a, &DataType::Timestamp(TimeUnit::Nanosecond, None)) {
                Ok(ns) => ns
                    .as_primitive::<TimestampNanosecondType>()
                    .iter()
                    .map(|v| v.map(DateTime::<Utc>::from_timestamp_nanos))
                    .collect::<Vec<_>>()
                    .into_opt_field(name),
                Err(_) => text_field(name, a),
            }
        }
        DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => {
            match cast(a, &DataType::Float64) {
                Ok(f) => primitive_field!(Float64Type, name, &f),
                Err(_) => text_field(name, a),
            }
        }
        _ => text_field(name, a),
    }
}

/// Column `name` of `batch` cast to `to`; errors name the query type (`what`) and the column.
pub(super) fn column_as(
    batch: &RecordBatch,
    name: &str,
    to: &DataType,
    what: &str,
) -> Result<ArrayRef, FrameError> {
    let a = batch
        .column_by_name(name)
        .ok_or_else(|| format!("{what}: no column {name}"))?;
    cast(a, to).map_err(|e| format!("{what}: {name}: {e}"))
}

/// Column `name` of `batch` as strings, nulls empty.
pub(super) fn column_texts(
    batch: &RecordBatch,
    name: &str,
    what: &str,
) -> Result<Vec<String>, FrameError> {
    let a = column_as(batch, name, &DataType::Utf8, what)?;
    Ok(a.as_string::<i32>()
        .iter()
        .map(|v| v.unwrap_or("").to_owned())
        .collect())
}

/// Any column as text (strings as they are; other types as Arrow displays them).
fn text_field(name: &str, a: &ArrayRef) -> Field {
    text_values(a).into_opt_field(name)
}

fn text_values(a: &ArrayRef) -> Vec<Option<String>> {
    if let Ok(s) = cast(a, &DataType::Utf8) {
        return s
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect();
    }
    let options = FormatOptions::default();
    match ArrayFormatter::try_new(a.as_ref(), &options) {
        Ok(f) => (0..a.len())
            .map(|i| a.is_valid(i).then(|| f.value(i).to_string()))
            .collect(),
        Err(_) => vec![None; a.len()],
    }
}

/// The executed SQL, and a warning for a result cut off at `max_rows` or missing agents.
pub fn metadata(sql: &str, out: &QueryOutput, max_rows: usize) -> Metadata {
    let mut meta = Metadata::default();
    meta.executed_query_string = Some(sql.to_owned());
    let cut_off = out.truncated.then(|| {
        format!("Result cut off at {max_rows} rows; add a LIMIT or aggregate to see everything")
    });
    let notices: Vec<Notice> = [out.partial_warning(), cut_off]
        .into_iter()
        .flatten()
        .map(|text| {
            let mut notice = Notice::new(text);
            notice.severity = Some(Severity::Warning);
            notice
        })
        .collect();
    if !notices.is_empty() {
        meta.notices = Some(notices);
    }
    meta
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric()
}

fn is_time(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
    )
}

/// Frames of `out` in `format`; `sql` is reported as the executed query.
pub fn to_frames(
    out: &QueryOutput,
    format: ResultFormat,
    sql: &str,
    max_rows: usize,
) -> Result<Vec<Frame>, FrameError> {
    let batch = concat_batches(&out.schema, &out.batches).map_err(|e| e.to_string())?;
    let meta = metadata(sql, out, max_rows);
    match format {
        ResultFormat::Table => {
            let fields = batch
                .schema()
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(f, a)| to_field(f.name(), a))
                .collect::<Vec<_>>();
            Ok(vec![Frame::new("").with_fields(fields).with_metadata(meta)])
        }
        ResultFormat::TimeSeries => time_series(&batch, meta),
    }
}

/// Long-format rows (time, labels..., values...) as one frame per series.
fn time_series(batch: &RecordBatch, meta: Metadata) -> Result<Vec<Frame>, FrameError> {
    let schema = batch.schema();
    let time_idx = schema
        .fields()
        .iter()
        .position(|f| is_time(f.data_type()))
        .ok_or("format time_series needs a timestamp column in the result")?;
    let value_idx: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| i != time_idx && is_numeric(schema.field(i).data_type()))
        .collect();
    if value_idx.is_empty() {
        return Err("format time_series needs at least one numeric column in the result".into());
    }
    let label_idx: Vec<usize> = (0..schema.fields().len())
        .filter(|i| *i != time_idx && !value_idx.contains(i))
        .collect();
    let label_values: Vec<Vec<Option<String>>> = label_idx
        .iter()
        .map(|&i| text_values(batch.column(i)))
        .collect();

    // Rows of each label combination, in first-seen order of the combination.
    let mut series: BTreeMap<Vec<(String, String)>, Vec<u32>> = BTreeMap::new();
    for row in 0..batch.num_rows() {
        let labels = label_idx
            .iter()
            .zip(&label_values)
            .map(|(&i, vals)| {
                (
                    schema.field(i).name().clone(),
                    vals[row].clone().unwrap_or_default(),
                )
            })
            .collect();
        series.entry(labels).or_default().push(row as u32);
    }
    let mut frames = Vec::new();
    for (labels, rows) in series {
        let indices = datafusion::arrow::array::UInt32Array::from(rows);
        let take = |i: usize| -> Result<ArrayRef, FrameError> {
            datafusion::arrow::compute::take(batch.column(i), &indices, None)
                .map_err(|e| e.to_string())
        };
        let time = take(time_idx)?;
        let order = datafusion::arrow::compute::sort_to_indices(&time, None, None)
            .map_err(|e| e.to_string())?;
        let sorted = |a: ArrayRef| -> Result<ArrayRef, FrameError> {
            datafusion::arrow::compute::take(&a, &order, None).map_err(|e| e.to_string())
        };
        let mut fields = vec![to_field(schema.field(time_idx).name(), &sorted(time)?)];
        for &v in &value_idx {
            let field = to_field(schema.field(v).name(), &sorted(take(v)?)?)
                .with_labels(labels.iter().cloned().collect());
            fields.push(field);
        }
        frames.push(
            Frame::new("")
                .with_fields(fields)
                .with_metadata(meta.clone()),
        );
    }
    if frames.is_empty() {
        // No rows: one empty frame keeps the panel's "No data" honest.
        let fields = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, a)| to_field(f.name(), a))
            .collect::<Vec<_>>();
        frames.push(Frame::new("").with_fields(fields).with_metadata(meta));
    }
    Ok(frames)
}
