//! The `trace` query type: one call's timing as a Grafana traces frame, the way a browser's
//! network panel shows a request.
//!
//! The call is named by the agent node that recorded it (and that node's cluster, when the
//! datasource has several: node names may repeat between clusters), its connection (`conn_id`)
//! and its start (`ts`, nanoseconds since the epoch, as a string: JSON numbers lose
//! nanoseconds).
//! Spans, each a child of the call's:
//! - `connect`, when the call was the first on a connection its process opened (the flow's
//!   connect latency, ending where the request starts);
//! - `request sent`, `waiting (TTFB)` and `content download`, back to back;
//! - the DNS lookups and the outgoing calls the same thread made within the call (a server's
//!   downstream work), each with its own duration.

use datafusion::arrow::{
    array::{Array, AsArray},
    compute::concat_batches,
    datatypes::{DataType, Int64Type, UInt64Type},
};
use grafana_plugin_sdk::{
    data::{Frame, Metadata, VisType},
    prelude::*,
};
use serde::Deserialize;

use super::frames::{column_as, column_texts};
use crate::{
    QueryOutput,
    macros::{string_literal as literal, timestamp},
};

/// A query of type `trace`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceQuery {
    /// The agent node that recorded the call.
    pub node: String,
    /// `calls.conn_id` of the call: a number, or a string of digits (what the query editor and
    /// templated links store).
    #[serde(deserialize_with = "number_or_digits")]
    pub conn_id: u64,
    /// `calls.ts` of the call in nanoseconds since the epoch, as a decimal string.
    pub ts: String,
    /// `calls.cluster` of the call; empty: the node's, in whichever cluster.
    #[serde(default)]
    pub cluster: String,
}

fn number_or_digits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(u64),
        Text(String),
    }
    match Id::deserialize(d)? {
        Id::Number(n) => Ok(n),
        Id::Text(t) => t.trim().parse().map_err(|_| {
            serde::de::Error::custom(format!("connId must be a connection number, got {t:?}"))
        }),
    }
}

/// Columns read from `calls` for the call and its downstream calls.
const CALL_COLUMNS: &str = "CAST(ts AS BIGINT) AS ts_ns, protocol, role, method, resource, \
     status, is_error, duration_ns, request_sent_ns, waiting_ttfb_ns, content_download_ns, \
     src_ip, src_port, dst_ip, dst_port, pid, tid, comm, conn_id, node";

impl TraceQuery {
    /// The call's start in nanoseconds.
    pub fn ts_ns(&self) -> Result<i64, String> {
        self.ts.trim().parse().map_err(|_| {
            format!(
                "trace: ts must be the call's start in nanoseconds since the epoch, as a \
                 string of digits; got {:?}",
                self.ts
            )
        })
    }

    /// The rows of the call's agent: `node = ...`, and its cluster when named, on the
    /// columns of the table aliased `t` ("" for none).
    fn agent(&self, t: &str) -> String {
        let mut filter = format!("{t}node = {}", literal(&self.node));
        if !self.cluster.is_empty() {
            filter += &format!(" AND {t}cluster = {}", literal(&self.cluster));
        }
        filter
    }

    /// The call itself, and whether it was the first on its connection (`first_ns`).
    pub fn call_sql(&self) -> Result<String, String> {
        let ts = self.ts_ns()?;
        Ok(format!(
            "SELECT {CALL_COLUMNS}, (SELECT CAST(min(f.ts) AS BIGINT) FROM calls f \
             WHERE {f_agent} AND f.conn_id = {conn}) AS first_ns, \
             (SELECT max(connect_latency_ns) FROM flows WHERE {agent} AND conn_id = {conn}) \
             AS connect_ns FROM calls WHERE {agent} AND conn_id = {conn} AND ts = {t}",
            agent = self.agent(""),
            f_agent = self.agent("f."),
            conn = self.conn_id,
            t = timestamp(ts),
        ))
    }

    /// What the call's thread did within [start, end]: its outgoing calls, and its DNS
    /// lookups (as rows of the same shape; `protocol` 'dns').
    pub fn children_sql(&self, tid: u32, pid: u32, start_ns: i64, end_ns: i64) -> String {
        let agent = self.agent("");
        let (from, to) = (timestamp(start_ns), timestamp(end_ns));
        format!(
            "SELECT {CALL_COLUMNS} FROM calls WHERE {agent} AND role = 'client' \
             AND tid = {tid} AND ts >= {from} AND ts <= {to} AND conn_id <> {conn} \
             UNION ALL SELECT CAST(ts AS BIGINT) AS ts_ns, 'dns' AS protocol, 'client' AS role, \
             qtype AS method, domain AS resource, rcode AS status, rcode <> 'NOERROR' AS is_error, \
             coalesce(latency_ns, 0) AS duration_ns, CAST(0 AS BIGINT UNSIGNED) AS request_sent_ns, \
             CAST(0 AS BIGINT UNSIGNED) AS waiting_ttfb_ns, \
             CAST(0 AS BIGINT UNSIGNED) AS content_download_ns, client_ip AS src_ip, \
             CAST(0 AS SMALLINT UNSIGNED) AS src_port, server_ip AS dst_ip, \
             CAST(53 AS SMALLINT UNSIGNED) AS dst_port, pid, CAST(0 AS INT UNSIGNED) AS tid, comm, \
             CAST(0 AS BIGINT UNSIGNED) AS conn_id, node FROM dns WHERE {agent} \
             AND pid = {pid} AND ts >= {from} AND ts <= {to} ORDER BY ts_ns",
            conn = self.conn_id,
        )
    }
}

/// One row of a calls-shaped result.
#[derive(Debug, Clone)]
pub struct CallRow {
    pub(crate) ts_ns: i64,
    pub(crate) protocol: String,
    pub(crate) role: String,
    pub(crate) method: String,
    pub(crate) resource: String,
    pub(crate) status: String,
    pub(crate) is_error: bool,
    pub(crate) duration_ns: u64,
    pub(crate) request_sent_ns: u64,
    pub(crate) waiting_ttfb_ns: u64,
    pub(crate) content_download_ns: u64,
    pub(crate) src: String,
    pub(crate) dst: String,
    pub(crate) pid: u32,
    pub(crate) tid: u32,
    pub(crate) comm: String,
    pub(crate) node: String,
    /// Only on the call itself: the first call's start on its connection.
    pub(crate) first_ns: Option<i64>,
    /// Only on the call itself: the connection's connect latency.
    pub(crate) connect_ns: Option<u64>,
}

/// The rows of a calls-shaped result.
pub fn rows(out: &QueryOutput) -> Result<Vec<CallRow>, String> {
    let batch = concat_batches(&out.schema, &out.batches).map_err(|e| e.to_string())?;
    let col = |name: &str, to: DataType| column_as(&batch, name, &to, "trace");
    let text = |name: &str| column_texts(&batch, name, "trace");
    let unsigned = |name: &str| -> Result<Vec<Option<u64>>, String> {
        if batch.column_by_name(name).is_none() {
            return Ok(vec![None; batch.num_rows()]);
        }
        let a = col(name, DataType::UInt64)?;
        let a = a.as_primitive::<UInt64Type>();
        Ok((0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value(i)))
            .collect())
    };
    let signed = |name: &str| -> Result<Vec<Option<i64>>, String> {
        if batch.column_by_name(name).is_none() {
            return Ok(vec![None; batch.num_rows()]);
        }
        let a = col(name, DataType::Int64)?;
        let a = a.as_primitive::<Int64Type>();
        Ok((0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value(i)))
            .collect())
    };
    let is_error = col("is_error", DataType::Boolean)?;
    let is_error = is_error.as_boolean();
    let (ts, first, connect) = (
        signed("ts_ns")?,
        signed("first_ns")?,
        unsigned("connect_ns")?,
    );
    let [
        protocol,
        role,
        method,
        resource,
        status,
        src_ip,
        dst_ip,
        comm,
        node,
    ] = [
        "protocol", "role", "method", "resource", "status", "src_ip", "dst_ip", "comm", "node",
    ]
    .map(text);
    let [
        duration,
        sent,
        waiting,
        download,
        src_port,
        dst_port,
        pid,
        tid,
    ] = [
        "duration_ns",
        "request_sent_ns",
        "waiting_ttfb_ns",
        "content_download_ns",
        "src_port",
        "dst_port",
        "pid",
        "tid",
    ]
    .map(unsigned);
    let (protocol, role, method, resource, status) =
        (protocol?, role?, method?, resource?, status?);
    let (src_ip, dst_ip, comm, node) = (src_ip?, dst_ip?, comm?, node?);
    let (duration, sent, waiting, download) = (duration?, sent?, waiting?, download?);
    let (src_port, dst_port, pid, tid) = (src_port?, dst_port?, pid?, tid?);
    Ok((0..batch.num_rows())
        .map(|i| CallRow {
            ts_ns: ts[i].unwrap_or(0),
            protocol: protocol[i].clone(),
            role: role[i].clone(),
            method: method[i].clone(),
            resource: resource[i].clone(),
            status: status[i].clone(),
            is_error: is_error.value(i),
            duration_ns: duration[i].unwrap_or(0),
            request_sent_ns: sent[i].unwrap_or(0),
            waiting_ttfb_ns: waiting[i].unwrap_or(0),
            content_download_ns: download[i].unwrap_or(0),
            src: format!("{}:{}", src_ip[i], src_port[i].unwrap_or(0)),
            dst: format!("{}:{}", dst_ip[i], dst_port[i].unwrap_or(0)),
            pid: pid[i].unwrap_or(0) as u32,
            tid: tid[i].unwrap_or(0) as u32,
            comm: comm[i].clone(),
            node: node[i].clone(),
            first_ns: first[i],
            connect_ns: connect[i],
        })
        .collect())
}

/// One span of the frame.
struct Span {
    id: String,
    parent: Option<String>,
    operation: String,
    service: String,
    start_ns: i64,
    duration_ns: u64,
    tags: serde_json::Value,
}

fn tags(pairs: &[(&str, String)]) -> serde_json::Value {
    pairs
        .iter()
        .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
        .collect()
}

/// The traces frame of `call` and its `children`.
pub fn frame(call: &CallRow, children: &[CallRow], meta: Metadata) -> Frame {
    let service = format!("{}/{}", call.node, call.comm);
    let trace_id = format!("{}-{}", call.node, call.ts_ns);
    let root = "call".to_owned();
    let mut spans = vec![Span {
        id: root.clone(),
        parent: None,
        operation: format!("{} {} {}", call.protocol, call.method, call.resource)
            .trim()
            .to_owned(),
        service: service.clone(),
        start_ns: call.ts_ns,
        duration_ns: call.duration_ns,
        tags: tags(&[
            ("role", call.role.clone()),
            ("status", call.status.clone()),
            ("error", call.is_error.to_string()),
            ("src", call.src.clone()),
            ("dst", call.dst.clone()),
            ("pid", call.pid.to_string()),
            ("tid", call.tid.to_string()),
        ]),
    }];
    // A new connection: its handshake came just before the first request.
    if let (Some(first), Some(connect)) = (call.first_ns, call.connect_ns)
        && first == call.ts_ns
        && call.role == "client"
    {
        spans.push(Span {
            id: "connect".into(),
            parent: Some(root.clone()),
            operation: "connect".into(),
            service: service.clone(),
            start_ns: call.ts_ns - connect as i64,
            duration_ns: connect,
            tags: tags(&[("dst", call.dst.clone())]),
        });
    }
    let mut at = call.ts_ns;
    for (id, name, ns) in [
        ("sent", "request sent", call.request_sent_ns),
        ("waiting", "waiting (TTFB)", call.waiting_ttfb_ns),
        ("download", "content download", call.content_download_ns),
    ] {
        spans.push(Span {
            id: id.into(),
            parent: Some(root.clone()),
            operation: name.into(),
            service: service.clone(),
            start_ns: at,
            duration_ns: ns,
            tags: serde_json::json!([]),
        });
        at += ns as i64;
    }
    for (i, c) in children.iter().enumerate() {
        spans.push(Span {
            id: format!("child-{i}"),
            parent: Some(root.clone()),
            operation: format!("{} {} {}", c.protocol, c.method, c.resource)
                .trim()
                .to_owned(),
            service: format!("{}/{}", c.node, c.comm),
            start_ns: c.ts_ns,
            duration_ns: c.duration_ns,
            tags: tags(&[
                ("status", c.status.clone()),
                ("error", c.is_error.to_string()),
                ("dst", c.dst.clone()),
            ]),
        });
    }
    let ms = |ns: f64| ns / 1e6;
    let mut meta = meta;
    meta.preferred_visualisation = Some(VisType::Trace);
    Frame::new("trace")
        .with_fields([
            vec![trace_id; spans.len()].into_field("traceID"),
            spans
                .iter()
                .map(|s| s.id.clone())
                .collect::<Vec<_>>()
                .into_field("spanID"),
            spans
                .iter()
                .map(|s| s.parent.clone())
                .collect::<Vec<_>>()
                .into_opt_field("parentSpanID"),
            spans
                .iter()
                .map(|s| s.operation.clone())
                .collect::<Vec<_>>()
                .into_field("operationName"),
            spans
                .iter()
                .map(|s| s.service.clone())
                .collect::<Vec<_>>()
                .into_field("serviceName"),
            spans
                .iter()
                .map(|s| ms(s.start_ns as f64))
                .collect::<Vec<_>>()
                .into_field("startTime"),
            spans
                .iter()
                .map(|s| ms(s.duration_ns as f64))
                .collect::<Vec<_>>()
                .into_field("duration"),
            // Grafana's trace view wants [{key, value}]; the SDK has no JSON fields, so the
            // frontend parses these.
            spans
                .iter()
                .map(|s| s.tags.to_string())
                .collect::<Vec<_>>()
                .into_field("tags"),
        ])
        .with_metadata(meta)
}
