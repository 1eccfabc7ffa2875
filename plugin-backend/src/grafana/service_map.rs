//! The `service_map` query type: who calls whom, as Grafana Node Graph frames.
//!
//! A node is a Kubernetes workload (`namespace/workload`, `namespace/service` for a Service
//! dialled by its ClusterIP, `node/NAME` for a node's own address), else a process on a node
//! (`node/comm`, host mode), else, for an end no agent saw, its address (`ip:port` for a
//! server, `ip` for a client). Rows name Kubernetes ends on both sides, so an end only one
//! agent saw still gets its workload's name. A call seen on both of its ends (a
//! client row and a server row of the same connection 4-tuple, on one agent or two) is counted
//! once, with the server's timing; a call seen on one end only is counted from that end.
//! TCP connections on which no call was parsed (an unknown protocol, TLS without uprobes) are
//! L4-only edges of protocol `tcp`: each connection counts as one, its lifetime as duration.
//! Those that started with a TLS handshake are of protocol `tls` instead, and name the server
//! their clients asked for (SNI), the version and the p95 handshake time, so an encrypted edge
//! is still named and timed.
//!
//! With agents of several clusters (`--cluster-name`), the names of the ends an agent saw or
//! named carry its cluster first (`cluster/namespace/workload`, `cluster/node/comm`), so two
//! clusters running the same workloads show as separate nodes, subtitled by cluster; a row is
//! matched with the other end of its connection within its own cluster only (two clusters may
//! use the same addresses). A call from one cluster to another is, for now, two edges: the
//! client's cluster names the server by its address, and the server's names the client by its.
//!
//! Two SQL queries run over every agent: the edges (source, target, protocol) and the served
//! calls per target. Both are shown to the user as the frames' executed query.

use std::collections::BTreeMap;

use datafusion::arrow::{
    array::AsArray,
    compute::concat_batches,
    datatypes::{DataType, Float64Type, UInt64Type},
};
use grafana_plugin_sdk::{
    data::{Field, FieldConfig, Frame, Metadata, VisType},
    prelude::*,
};
use serde::Deserialize;

use super::frames::{column_as, column_texts};
use crate::{QueryOutput, macros::string_literal as literal};

/// A query of type `service_map`; every filter is optional (empty: all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMapQuery {
    /// Only calls recorded by this agent node.
    #[serde(default)]
    pub node: String,
    /// Only calls of this protocol (`http`, `http2`, `grpc`, `dns`, `mysql`, `redis`,
    /// `postgresql`, or for the connections on which no call was parsed, `tls` for those that
    /// started with a TLS handshake and `tcp` for the others).
    #[serde(default)]
    pub protocol: String,
    /// Only calls recorded by the agents of these clusters, comma-separated (Grafana's `csv`
    /// format of a multi-value variable); empty: all.
    #[serde(default)]
    pub cluster: String,
}

impl ServiceMapQuery {
    /// The calls counted once each, with the names of both ends, as SQL common table
    /// expressions ending in `counted` (source, target, protocol, duration_ns, is_error,
    /// tls_sni, tls_version, tls_handshake_ns). TCP connections on which no call was parsed
    /// count too, as protocol `tls` (a TLS handshake seen) or `tcp`, with their lifetime as
    /// duration: the L4-only edges.
    fn counted(&self) -> String {
        // "" is a cluster too (agents without a name) when listed with others: "east,".
        let clusters: Vec<String> = if self.cluster.trim().is_empty() {
            Vec::new()
        } else {
            self.cluster
                .split(',')
                .map(str::trim)
                .map(literal)
                .collect()
        };
        // The node and cluster filters, on the columns of the table aliased `t` ("" for none).
        let agents = |t: &str| {
            let mut filter = String::new();
            if !self.node.is_empty() {
                filter += &format!(" AND {t}node = {}", literal(&self.node));
            }
            if !clusters.is_empty() {
                filter += &format!(" AND {t}cluster IN ({})", clusters.join(", "));
            }
            filter
        };
        let protocol = if self.protocol.is_empty() {
            String::new()
        } else {
            format!(" WHERE protocol = {}", literal(&self.protocol))
        };
        // The names of a connection's ends: `node/comm` where an agent of the cluster saw
        // that end.
        let ends = |from: &str| {
            format!(
                "SELECT cluster, src_ip, src_port, dst_ip, dst_port, \
                 min(CASE WHEN role = 'client' THEN node || '/' || comm END) AS client, \
                 min(CASE WHEN role = 'server' THEN node || '/' || comm END) AS server \
                 FROM {from} GROUP BY cluster, src_ip, src_port, dst_ip, dst_port"
            )
        };
        // Each row once: from the server end where it was seen, else from the client end.
        // An end Kubernetes names is its workload (`namespace/workload`), or for a Service
        // dialled by its ClusterIP, the Service (`namespace/service`).
        let once = |rows: &str, ends: &str, protocol: &str| {
            format!(
                "SELECT {protocol} AS protocol, r.cluster, r.duration_ns, r.is_error, \
                 r.tls_sni, r.tls_version, r.tls_handshake_ns, \
                 coalesce({src_named}, r.src_ip) AS source, \
                 coalesce({dst_named}, \
                 r.dst_ip || ':' || CAST(r.dst_port AS VARCHAR)) AS target \
                 FROM {rows} r JOIN {ends} e ON r.cluster = e.cluster \
                 AND r.src_ip = e.src_ip AND r.src_port = e.src_port \
                 AND r.dst_ip = e.dst_ip AND r.dst_port = e.dst_port \
                 WHERE r.role = 'server' OR e.server IS NULL",
                src_named = in_cluster(&format!(
                    "coalesce({}, e.client)",
                    k8s_name("r.src_namespace", "r.src_workload", "r.src_service")
                )),
                dst_named = in_cluster(&format!(
                    "coalesce({}, e.server)",
                    k8s_name("r.dst_namespace", "r.dst_workload", "r.dst_service")
                )),
            )
        };
        format!(
            "WITH c AS (SELECT role, protocol, src_ip, src_port, dst_ip, dst_port, cluster, node, comm, \
             duration_ns, is_error, CAST(NULL AS VARCHAR) AS tls_sni, \
             CAST(NULL AS VARCHAR) AS tls_version, CAST(NULL AS BIGINT UNSIGNED) AS tls_handshake_ns, \
             {k8s} FROM calls WHERE $__timeFilter(ts){c_agents}), \
             c_ends AS ({c_ends}), \
             l7 AS (SELECT DISTINCT cluster, node, conn_id FROM calls WHERE $__timeFilter(ts)), \
             f AS (SELECT f.role, f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.cluster, f.node, \
             f.comm, f.duration_ns, false AS is_error, f.tls_sni, f.tls_version, \
             f.tls_handshake_ns, {f_k8s} FROM flows f LEFT JOIN l7 \
             ON f.cluster = l7.cluster AND f.node = l7.node AND f.conn_id = l7.conn_id \
             WHERE $__timeFilter(f.end_ts) AND l7.conn_id IS NULL{f_agents}), \
             f_ends AS ({f_ends}), \
             all_rows AS ({calls} UNION ALL {conns}), \
             counted AS (SELECT * FROM all_rows{protocol}) ",
            k8s = K8S_COLUMNS.join(", "),
            f_k8s = K8S_COLUMNS.map(|c| format!("f.{c}")).join(", "),
            c_ends = ends("c"),
            f_ends = ends("f"),
            c_agents = agents(""),
            f_agents = agents("f."),
            calls = once("c", "c_ends", "r.protocol"),
            conns = once(
                "f",
                "f_ends",
                "CASE WHEN r.tls_sni IS NULL AND r.tls_version IS NULL THEN 'tcp' ELSE 'tls' END",
            ),
        )
    }

    /// Edges: one row per (source, target, protocol), with the cluster that saw it.
    pub fn edges_sql(&self) -> String {
        format!(
            "{}SELECT source, target, protocol, min(cluster) AS cluster, count(*) AS calls, \
             sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS errors, \
             approx_percentile_cont(duration_ns, 0.95) AS p95_ns, \
             min(tls_sni) AS tls_sni, min(tls_version) AS tls_version, \
             approx_percentile_cont(tls_handshake_ns, 0.95) AS tls_handshake_p95_ns \
             FROM counted GROUP BY source, target, protocol ORDER BY source, target, protocol",
            self.counted()
        )
    }

    /// Served calls per target node.
    pub fn nodes_sql(&self) -> String {
        format!(
            "{}SELECT target AS id, count(*) AS calls, \
             sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS errors, \
             approx_percentile_cont(duration_ns, 0.95) AS p95_ns \
             FROM counted GROUP BY target ORDER BY target",
            self.counted()
        )
    }
}

/// The Kubernetes columns the map names ends with.
const K8S_COLUMNS: [&str; 6] = [
    "src_namespace",
    "src_workload",
    "src_service",
    "dst_namespace",
    "dst_workload",
    "dst_service",
];

/// `name` (an SQL expression, NULL when the end has none) as the row's cluster names it:
/// `cluster/name`, or `name` for an agent without a cluster name.
fn in_cluster(name: &str) -> String {
    format!("CASE WHEN r.cluster = '' THEN {name} ELSE r.cluster || '/' || {name} END")
}

/// An end's Kubernetes name, NULL where there is none: `namespace/workload`, else
/// `namespace/service`; a node's own address (a workload without namespace) `node/NAME`.
fn k8s_name(namespace: &str, workload: &str, service: &str) -> String {
    format!(
        "CASE WHEN {workload} <> '' THEN \
         CASE WHEN {namespace} = '' THEN 'node/' || {workload} \
         ELSE {namespace} || '/' || {workload} END \
         WHEN {service} <> '' THEN {namespace} || '/' || {service} END"
    )
}

/// Rows of one result: text, count and float columns by name.
struct Table {
    text: BTreeMap<String, Vec<String>>,
    counts: BTreeMap<String, Vec<u64>>,
    floats: BTreeMap<String, Vec<Option<f64>>>,
}

fn table(
    out: &QueryOutput,
    text: &[&str],
    counts: &[&str],
    floats: &[&str],
) -> Result<Table, String> {
    let batch = concat_batches(&out.schema, &out.batches).map_err(|e| e.to_string())?;
    let column = |name: &str, to: &DataType| column_as(&batch, name, to, "service map");
    let mut t = Table {
        text: BTreeMap::new(),
        counts: BTreeMap::new(),
        floats: BTreeMap::new(),
    };
    for &name in text {
        t.text
            .insert(name.to_owned(), column_texts(&batch, name, "service map")?);
    }
    for &name in counts {
        let a = column(name, &DataType::UInt64)?;
        let values = a
            .as_primitive::<UInt64Type>()
            .iter()
            .map(|v| v.unwrap_or(0));
        t.counts.insert(name.to_owned(), values.collect());
    }
    for &name in floats {
        let a = column(name, &DataType::Float64)?;
        let values = a.as_primitive::<Float64Type>().iter();
        t.floats.insert(name.to_owned(), values.collect());
    }
    Ok(t)
}

fn with_unit(field: Field, display: &str, unit: Option<&str>) -> Field {
    let mut config = FieldConfig::default();
    config.display_name_from_ds = Some(display.to_owned());
    config.unit = unit.map(str::to_owned);
    field.with_config(config)
}

/// Node Graph frames (`nodes`, `edges`) from the two results; rates are per second of
/// `range_seconds`.
pub fn frames(
    edges: &QueryOutput,
    nodes: &QueryOutput,
    range_seconds: f64,
    meta: Metadata,
) -> Result<Vec<Frame>, String> {
    let e = table(
        edges,
        &[
            "source",
            "target",
            "protocol",
            "cluster",
            "tls_sni",
            "tls_version",
        ],
        &["calls", "errors"],
        &["p95_ns", "tls_handshake_p95_ns"],
    )?;
    let n = table(nodes, &["id"], &["calls", "errors"], &["p95_ns"])?;
    let rate = |calls: u64| calls as f64 / range_seconds.max(1e-9);
    let ms = |ns: f64| ns / 1e6;

    // Every end of an edge is a node; those that served calls carry their served stats.
    let served: BTreeMap<&str, usize> = n.text["id"]
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut ids: Vec<&str> = e.text["source"]
        .iter()
        .chain(&e.text["target"])
        .map(String::as_str)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    // The ends an agent of a named cluster saw or named start with `cluster/`.
    let mut cluster_of: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, cluster) in e.text["cluster"].iter().enumerate() {
        for end in [&e.text["source"][i], &e.text["target"][i]] {
            if !cluster.is_empty() && end.starts_with(&format!("{cluster}/")) {
                cluster_of.insert(end, cluster);
            }
        }
    }
    let (mut title, mut subtitle) = (Vec::new(), Vec::new());
    let (mut mainstat, mut secondarystat, mut ok_arc, mut err_arc, mut total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for id in &ids {
        // `namespace/workload` (Kubernetes), `node/comm` for a process an agent saw, else the
        // address; after `cluster/` when the cluster is named.
        let cluster = cluster_of.get(id).copied();
        let name = cluster.map_or(*id, |c| &id[c.len() + 1..]);
        match name.split_once('/') {
            Some((node, comm)) => {
                title.push(comm.to_owned());
                subtitle.push(match cluster {
                    Some(c) => format!("{c} · {node}"),
                    None => node.to_owned(),
                });
            }
            None => {
                title.push((*id).to_owned());
                subtitle.push("not observed".to_owned());
            }
        }
        match served.get(id) {
            Some(&i) => {
                let (calls, errors) = (n.counts["calls"][i], n.counts["errors"][i]);
                mainstat.push(rate(calls));
                secondarystat.push(Some(ms(n.floats["p95_ns"][i].unwrap_or(f64::NAN))));
                err_arc.push(errors as f64 / calls.max(1) as f64);
                ok_arc.push(calls.saturating_sub(errors) as f64 / calls.max(1) as f64);
                total.push(calls);
            }
            None => {
                mainstat.push(0.0);
                secondarystat.push(None);
                // A pure client: no calls served, the arcs are empty.
                err_arc.push(0.0);
                ok_arc.push(0.0);
                total.push(0);
            }
        }
    }
    let mut node_meta = meta.clone();
    node_meta.preferred_visualisation = Some(VisType::NodeGraph);
    let nodes_frame = Frame::new("nodes")
        .with_fields([
            ids.iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>()
                .into_field("id"),
            title.into_field("title"),
            subtitle.into_field("subtitle"),
            with_unit(
                mainstat.into_field("mainstat"),
                "Calls served",
                Some("reqps"),
            ),
            with_unit(
                secondarystat.into_opt_field("secondarystat"),
                "p95 served",
                Some("ms"),
            ),
            // The SDK cannot set a field's color: the frontend colours the arcs.
            with_unit(
                ok_arc.into_field("arc__success"),
                "Success",
                Some("percentunit"),
            ),
            with_unit(
                err_arc.into_field("arc__errors"),
                "Errors",
                Some("percentunit"),
            ),
            with_unit(total.into_field("detail__calls"), "Calls served", None),
        ])
        .with_metadata(node_meta.clone());

    let rows = e.text["source"].len();
    let edge_ids: Vec<String> = (0..rows)
        .map(|i| {
            format!(
                "{} -> {} ({})",
                e.text["source"][i], e.text["target"][i], e.text["protocol"][i]
            )
        })
        .collect();
    let calls = &e.counts["calls"];
    let errors = &e.counts["errors"];
    let edges_frame = Frame::new("edges")
        .with_fields([
            edge_ids.into_field("id"),
            e.text["source"].clone().into_field("source"),
            e.text["target"].clone().into_field("target"),
            with_unit(
                calls
                    .iter()
                    .map(|&c| rate(c))
                    .collect::<Vec<_>>()
                    .into_field("mainstat"),
                "Calls",
                Some("reqps"),
            ),
            with_unit(
                e.floats["p95_ns"]
                    .iter()
                    .map(|p| ms(p.unwrap_or(f64::NAN)))
                    .collect::<Vec<_>>()
                    .into_field("secondarystat"),
                "p95",
                Some("ms"),
            ),
            with_unit(
                e.text["protocol"].clone().into_field("detail__protocol"),
                "Protocol",
                None,
            ),
            with_unit(calls.clone().into_field("detail__calls"), "Calls", None),
            with_unit(
                e.text["tls_sni"].clone().into_field("detail__tls_sni"),
                "TLS server name",
                None,
            ),
            with_unit(
                e.text["tls_version"]
                    .clone()
                    .into_field("detail__tls_version"),
                "TLS version",
                None,
            ),
            with_unit(
                e.floats["tls_handshake_p95_ns"]
                    .iter()
                    .map(|p| p.map(ms))
                    .collect::<Vec<_>>()
                    .into_opt_field("detail__tls_handshake_p95"),
                "p95 TLS handshake",
                Some("ms"),
            ),
            with_unit(
                calls
                    .iter()
                    .zip(errors)
                    .map(|(&c, &e)| e as f64 / c.max(1) as f64)
                    .collect::<Vec<_>>()
                    .into_field("detail__error_rate"),
                "Error rate",
                Some("percentunit"),
            ),
        ])
        .with_metadata(node_meta);
    Ok(vec![nodes_frame, edges_frame])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_quoted_literals() {
        let q = ServiceMapQuery {
            node: "node'1".into(),
            protocol: "http".into(),
            cluster: "east, we'st,".into(),
        };
        let sql = q.edges_sql();
        assert!(
            sql.contains(
                "WHERE $__timeFilter(ts) AND node = 'node''1' AND cluster IN ('east', 'we''st', '')), \
                 c_ends AS"
            ) && sql.contains("SELECT * FROM all_rows WHERE protocol = 'http')")
                && sql.contains(
                    "l7.conn_id IS NULL AND f.node = 'node''1' AND f.cluster IN ('east', 'we''st', '')), \
                     f_ends AS"
                ),
            "{sql}"
        );
        assert!(!ServiceMapQuery::default().nodes_sql().contains("AND node"));
    }
}
