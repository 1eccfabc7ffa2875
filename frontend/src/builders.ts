import { KindlingQuery, QueryFormat } from './types';

/** The builder query types: each has views, whose SQL the editor shows and stores in rawSql. */
export type BuilderType = 'calls' | 'dns' | 'tcp';

export interface BuilderView {
  value: string;
  label: string;
  format: QueryFormat;
  /**
   * The SQL, given the agents filter (node and cluster) and the protocol filter: each
   * ` AND <condition>...`, or empty for every agent (protocol).
   */
  sql: (node: string, protocol: string) => string;
}

/**
 * The columns a list of calls shows: identity, timing parts in ms, and what a Call trace query
 * needs (node, cluster, conn_id, ts_ns). Also used by the drilldown links (frames.ts).
 */
export const CALL_COLUMNS =
  'ts, node, cluster, comm, role, protocol, method, resource, status, duration_ns / 1e6 AS duration_ms, ' +
  'request_sent_ns / 1e6 AS request_sent_ms, waiting_ttfb_ns / 1e6 AS waiting_ms, ' +
  'content_download_ns / 1e6 AS download_ms, conn_id, CAST(CAST(ts AS BIGINT) AS VARCHAR) AS ts_ns';

const range = (col: string) => `$__timeFilter(${col})`;
const bucket = (col: string) => `$__timeGroup(${col}, $__interval)`;

export const BUILDER_VIEWS: Record<BuilderType, BuilderView[]> = {
  calls: [
    {
      value: 'rate',
      label: 'Calls/s',
      format: 'time_series',
      sql: (node, protocol) =>
        `SELECT ${bucket('ts')} AS time, protocol, count(*) / ($__interval_ms / 1000.0) AS calls_per_s ` +
        `FROM calls WHERE ${range('ts')}${node}${protocol} GROUP BY 1, 2 ORDER BY 1`,
    },
    {
      value: 'errors',
      label: 'Errors/s',
      format: 'time_series',
      sql: (node, protocol) =>
        `SELECT ${bucket('ts')} AS time, protocol, ` +
        `sum(CASE WHEN is_error THEN 1 ELSE 0 END) / ($__interval_ms / 1000.0) AS errors_per_s ` +
        `FROM calls WHERE ${range('ts')}${node}${protocol} GROUP BY 1, 2 ORDER BY 1`,
    },
    {
      value: 'latency',
      label: 'p95 duration',
      format: 'time_series',
      sql: (node, protocol) =>
        `SELECT ${bucket('ts')} AS time, protocol, approx_percentile_cont(duration_ns, 0.95) / 1e6 AS p95_ms ` +
        `FROM calls WHERE ${range('ts')}${node}${protocol} GROUP BY 1, 2 ORDER BY 1`,
    },
    {
      value: 'endpoints',
      label: 'Endpoints',
      format: 'table',
      sql: (node, protocol) =>
        'SELECT protocol, method, resource, count(*) AS calls, sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS errors, ' +
        'avg(CASE WHEN is_error THEN 1.0 ELSE 0.0 END) AS error_rate, ' +
        'approx_percentile_cont(duration_ns, 0.5) / 1e6 AS p50_ms, approx_percentile_cont(duration_ns, 0.95) / 1e6 AS p95_ms, ' +
        'approx_percentile_cont(duration_ns, 0.99) / 1e6 AS p99_ms ' +
        `FROM calls WHERE ${range('ts')}${node}${protocol} ` +
        'GROUP BY protocol, method, resource ORDER BY calls DESC LIMIT 200',
    },
    {
      value: 'slowest',
      label: 'Slowest calls',
      format: 'table',
      sql: (node, protocol) =>
        `SELECT ${CALL_COLUMNS} FROM calls WHERE ${range('ts')}${node}${protocol} ORDER BY duration_ns DESC LIMIT 50`,
    },
  ],
  dns: [
    {
      value: 'latency',
      label: 'p95 latency',
      format: 'time_series',
      sql: (node) =>
        `SELECT ${bucket('ts')} AS time, domain, approx_percentile_cont(latency_ns, 0.95) / 1e6 AS p95_ms ` +
        `FROM dns WHERE ${range('ts')}${node} AND latency_ns IS NOT NULL GROUP BY 1, 2 ORDER BY 1`,
    },
    {
      value: 'rcodes',
      label: 'Response codes',
      format: 'time_series',
      sql: (node) =>
        `SELECT ${bucket('ts')} AS time, rcode, count(*) AS lookups FROM dns ` +
        `WHERE ${range('ts')}${node} AND NOT search_expansion GROUP BY 1, 2 ORDER BY 1`,
    },
    {
      value: 'domains',
      label: 'Domains',
      format: 'table',
      sql: (node) =>
        'SELECT domain, count(*) AS lookups, ' +
        "sum(CASE WHEN rcode IN ('NXDOMAIN', 'SERVFAIL', 'REFUSED', 'TIMEOUT') AND NOT search_expansion THEN 1 ELSE 0 END) AS failures, " +
        "sum(CASE WHEN rcode = 'TIMEOUT' THEN 1 ELSE 0 END) AS timeouts, " +
        'sum(CASE WHEN search_expansion THEN 1 ELSE 0 END) AS search_expansions, ' +
        'approx_percentile_cont(latency_ns, 0.95) / 1e6 AS p95_ms ' +
        `FROM dns WHERE ${range('ts')}${node} GROUP BY domain ORDER BY lookups DESC LIMIT 200`,
    },
    {
      value: 'failures',
      label: 'Failed lookups',
      format: 'table',
      sql: (node) =>
        'SELECT ts, node, comm, client_ip, server_ip, domain, qtype, rcode, latency_ns / 1e6 AS latency_ms FROM dns ' +
        `WHERE ${range('ts')}${node} AND rcode <> 'NOERROR' AND NOT search_expansion ORDER BY ts DESC LIMIT 100`,
    },
  ],
  tcp: [
    {
      value: 'problems',
      label: 'Problems',
      format: 'time_series',
      sql: (node) =>
        `SELECT ${bucket('ts')} AS time, event, count(*) AS events FROM tcp_events WHERE ${range('ts')}${node} ` +
        "AND event IN ('retransmit', 'reset_sent', 'reset_received', 'connect_failed', 'drop') GROUP BY 1, 2 ORDER BY 1",
    },
    {
      value: 'rtt',
      label: 'RTT',
      format: 'time_series',
      sql: (node) =>
        `SELECT ${bucket('end_ts')} AS time, approx_percentile_cont(srtt_us, 0.5) / 1e3 AS p50_ms, ` +
        'approx_percentile_cont(srtt_us, 0.95) / 1e3 AS p95_ms ' +
        `FROM flows WHERE ${range('end_ts')}${node} AND srtt_us IS NOT NULL GROUP BY 1 ORDER BY 1`,
    },
    {
      value: 'connections',
      label: 'Connections with problems',
      format: 'table',
      sql: (node) =>
        'SELECT end_ts, node, comm, role, src_ip, src_port, dst_ip, dst_port, retransmits, resets, close_reason, srtt_us, ' +
        `connect_latency_ns / 1e6 AS connect_ms, conn_id FROM flows WHERE ${range('end_ts')}${node} ` +
        "AND (retransmits > 0 OR resets > 0 OR close_reason <> 'fin') ORDER BY end_ts DESC LIMIT 100",
    },
    {
      value: 'drops',
      label: 'Drops by reason',
      format: 'table',
      sql: (node) =>
        `SELECT reason, count(*) AS drops FROM tcp_events WHERE ${range('ts')}${node} ` +
        "AND event = 'drop' GROUP BY reason ORDER BY drops DESC",
    },
  ],
};

export const isBuilder = (queryType: string | undefined): queryType is BuilderType =>
  queryType === 'calls' || queryType === 'dns' || queryType === 'tcp';

const literal = (text: string) => `'${text.replace(/'/g, "''")}'`;

/**
 * The builder filter on a text column, ` AND <condition>`: empty when the filter is. A template
 * variable stays a variable (`('$node' = '' OR node = '$node')`), so an empty variable means all.
 */
function filter(column: string, value: string | undefined): string {
  const v = (value ?? '').trim();
  if (v === '') {
    return '';
  }
  const condition = v.includes('$') ? `(${literal(v)} = '' OR ${column} = ${literal(v)})` : `${column} = ${literal(v)}`;
  return ` AND ${condition}`;
}

/**
 * The builder filter on the cluster column, ` AND cluster IN (...)`: empty when the filter is.
 * A template variable (`$cluster`, multi-value) becomes `${cluster:sqlstring}`, Grafana's list
 * of its values quoted for SQL; names are comma-separated.
 */
export function clusterFilter(value: string | undefined): string {
  const v = (value ?? '').trim();
  if (v === '') {
    return '';
  }
  const variable = /^\$\{?(\w+)\}?$/.exec(v);
  const list = variable
    ? `\${${variable[1]}:sqlstring}`
    : v
        .split(',')
        .map((c) => literal(c.trim()))
        .join(', ');
  return ` AND cluster IN (${list})`;
}

/** The builder query with rawSql and format set from its type, view and filters. */
export function withBuilderSql(query: KindlingQuery): KindlingQuery {
  if (!isBuilder(query.queryType)) {
    return query;
  }
  const views = BUILDER_VIEWS[query.queryType];
  const view = views.find((v) => v.value === query.view) ?? views[0];
  return {
    ...query,
    view: view.value,
    format: view.format,
    rawSql: view.sql(filter('node', query.node) + clusterFilter(query.cluster), filter('protocol', query.protocol)),
  };
}
