//! The DNS monitor: table functions over `dns` that answer "which names are slow or failing,
//! for whom, at which server" without writing the aggregation by hand.
//!
//! - `dns_domains(...)`: per domain: lookups, latency percentiles, error counts and rate.
//! - `dns_clients(...)`: per client (address and process name): lookups and the NXDOMAIN,
//!   SERVFAIL and timeout rates.
//! - `dns_servers(...)`: per DNS server (the upstream asked): lookups, latency, rates.
//!
//! Each takes no argument (every row held), one interval (`'15 minutes'`: the last 15
//! minutes) or two timestamps (`'2026-11-26T10:00:00Z', '2026-11-26T11:00:00Z'`; Grafana:
//! `'${__from:date:iso}', '${__to:date:iso}'`). NXDOMAINs that were search-list expansions of
//! a name that then resolved (`dns.search_expansion`, Kubernetes ClusterFirst) are not errors
//! and are counted apart in `search_expansions`.
//!
//! Each function's SQL is planned once per session with `$1`/`$2` placeholders for the time
//! range; a call binds them, so calls cost no SQL planning.

use std::sync::Arc;

use datafusion::{
    arrow::compute::kernels::cast_utils::string_to_timestamp_nanos,
    catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider, view::ViewTable},
    common::{ScalarValue, plan_err},
    error::Result,
    logical_expr::{Expr, LogicalPlan},
    prelude::SessionContext,
};

/// Counted as failures: what a user would call a failed lookup.
const ERROR: &str =
    "(rcode IN ('NXDOMAIN', 'SERVFAIL', 'REFUSED', 'TIMEOUT') AND NOT search_expansion)";

fn rate(condition: &str) -> String {
    format!("avg(CASE WHEN {condition} THEN 1.0 ELSE 0.0 END)")
}

fn functions() -> [(&'static str, String); 3] {
    let range = "ts >= $1 AND ts < $2";
    let latency = "approx_percentile_cont(latency_ns, 0.5) / 1e6 AS p50_ms, \
                   approx_percentile_cont(latency_ns, 0.95) / 1e6 AS p95_ms, \
                   approx_percentile_cont(latency_ns, 0.99) / 1e6 AS p99_ms, \
                   max(latency_ns) / 1e6 AS max_ms";
    let rcode_rates = format!(
        "{} AS nxdomain_rate, {} AS servfail_rate, {} AS timeout_rate",
        rate("rcode = 'NXDOMAIN' AND NOT search_expansion"),
        rate("rcode = 'SERVFAIL'"),
        rate("rcode = 'TIMEOUT'"),
    );
    let counts = format!(
        "count(*) AS lookups, sum(CASE WHEN {ERROR} THEN 1 ELSE 0 END) AS errors, \
         {} AS error_rate, sum(CASE WHEN search_expansion THEN 1 ELSE 0 END) AS search_expansions",
        rate(ERROR)
    );
    [
        (
            "dns_domains",
            format!(
                "SELECT domain, {counts}, {latency}, \
                 sum(CASE WHEN rcode = 'NXDOMAIN' AND NOT search_expansion THEN 1 ELSE 0 END) AS nxdomain, \
                 sum(CASE WHEN rcode = 'SERVFAIL' THEN 1 ELSE 0 END) AS servfail, \
                 sum(CASE WHEN rcode = 'TIMEOUT' THEN 1 ELSE 0 END) AS timeouts \
                 FROM dns WHERE {range} GROUP BY domain"
            ),
        ),
        (
            "dns_clients",
            format!(
                "SELECT client_ip, comm, {counts}, {rcode_rates}, {latency} \
                 FROM dns WHERE {range} GROUP BY client_ip, comm"
            ),
        ),
        (
            "dns_servers",
            format!(
                "SELECT server_ip, {counts}, {rcode_rates}, {latency} \
                 FROM dns WHERE {range} GROUP BY server_ip"
            ),
        ),
    ]
}

/// Names of the DNS monitor's table functions.
pub const FUNCTIONS: [&str; 3] = ["dns_domains", "dns_clients", "dns_servers"];

/// Registers the DNS monitor's functions in `ctx`, which must have the `dns` table.
pub async fn register(ctx: &SessionContext) -> Result<()> {
    for (name, sql) in functions() {
        let plan = ctx.state().create_logical_plan(&sql).await?;
        ctx.register_udtf(name, Arc::new(DnsFunction { name, plan }));
    }
    Ok(())
}

#[derive(Debug)]
struct DnsFunction {
    name: &'static str,
    plan: LogicalPlan,
}

fn text_arg(name: &str, e: &Expr) -> Result<String> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)), _) => {
            Ok(s.clone())
        }
        other => plan_err!(
            "{name}: arguments are string literals ('15 minutes', or two timestamps such as \
             '2026-11-26T10:00:00Z'), got {other}"
        ),
    }
}

/// Nanoseconds in an interval such as `15 minutes`, `1h`, `30s`.
pub fn parse_interval(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = t.split_at(split);
    let n: f64 = num.trim().parse().ok()?;
    let unit_ns: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" => 1e6,
        "s" | "sec" | "secs" | "second" | "seconds" => 1e9,
        "m" | "min" | "mins" | "minute" | "minutes" => 60e9,
        "h" | "hour" | "hours" => 3600e9,
        "d" | "day" | "days" => 86_400e9,
        _ => return None,
    };
    (n >= 0.0).then_some((n * unit_ns) as i64)
}

fn timestamp_arg(name: &str, e: &Expr) -> Result<i64> {
    let text = text_arg(name, e)?;
    match string_to_timestamp_nanos(&text) {
        Ok(ns) => Ok(ns),
        Err(err) => plan_err!("{name}: `{text}` is not a timestamp: {err}"),
    }
}

impl TableFunctionImpl for DnsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let name = self.name;
        let (start, end) = match args.exprs() {
            [] => (i64::MIN, i64::MAX),
            [since] => {
                let text = text_arg(name, since)?;
                let Some(back) = parse_interval(&text) else {
                    return plan_err!(
                        "{name}: `{text}` is not an interval (use e.g. '15 minutes', '1h', '30s')"
                    );
                };
                let now = args
                    .session()
                    .execution_props()
                    .query_execution_start_time
                    .and_then(|t| t.timestamp_nanos_opt())
                    .unwrap_or_else(|| {
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(i64::MAX, |d| d.as_nanos() as i64)
                    });
                (now.saturating_sub(back), i64::MAX)
            }
            [from, to] => (timestamp_arg(name, from)?, timestamp_arg(name, to)?),
            more => {
                return plan_err!("{name} takes 0, 1 or 2 arguments, got {}", more.len());
            }
        };
        let ts = |v| ScalarValue::TimestampNanosecond(Some(v), Some("UTC".into()));
        let plan = self
            .plan
            .clone()
            .with_param_values(vec![ts(start), ts(end)])?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("15 minutes"), Some(900_000_000_000));
        assert_eq!(parse_interval("1h"), Some(3_600_000_000_000));
        assert_eq!(parse_interval(" 30 s "), Some(30_000_000_000));
        assert_eq!(parse_interval("1.5 sec"), Some(1_500_000_000));
        assert_eq!(parse_interval("forever"), None);
        assert_eq!(parse_interval("10 fortnights"), None);
        assert_eq!(parse_interval("5"), None);
    }
}
