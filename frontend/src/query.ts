import { ScopedVars } from '@grafana/data';
import { TemplateSrv } from '@grafana/runtime';

import { KindlingQuery, QueryFormat, QueryType } from './types';

/** What a new panel query starts with: the latest flows, newest first. */
export const DEFAULT_QUERY: Readonly<Pick<KindlingQuery, 'queryType' | 'rawSql' | 'format'>> = {
  queryType: 'sql',
  rawSql: 'SELECT * FROM flows ORDER BY end_ts DESC LIMIT 100',
  format: 'table',
};

export const FORMAT_OPTIONS: ReadonlyArray<{ label: string; value: QueryFormat }> = [
  { label: 'Table', value: 'table' },
  { label: 'Time series', value: 'time_series' },
];

export const QUERY_TYPE_OPTIONS: ReadonlyArray<{ label: string; value: QueryType }> = [
  { label: 'SQL', value: 'sql' },
  { label: 'Calls', value: 'calls' },
  { label: 'DNS', value: 'dns' },
  { label: 'TCP health', value: 'tcp' },
  { label: 'Service map', value: 'service_map' },
  { label: 'Call trace', value: 'trace' },
];

const filled = (value: unknown): boolean => value !== undefined && value !== null && String(value).trim() !== '';

/**
 * Whether a query should be sent to the backend: not when hidden, nor an `sql` or builder query
 * with blank SQL, nor a `trace` query that does not name its call (node, connId and ts).
 */
export function isRunnable(query: Pick<KindlingQuery, 'rawSql' | 'hide' | 'queryType' | 'node' | 'connId' | 'ts'>): boolean {
  if (query.hide) {
    return false;
  }
  switch (query.queryType ?? 'sql') {
    case 'service_map':
      return true;
    case 'trace':
      return filled(query.node) && filled(query.connId) && filled(query.ts);
    default:
      return typeof query.rawSql === 'string' && query.rawSql.trim() !== '';
  }
}

/**
 * Interpolates Grafana template variables (`$host`, `$__interval`, ...) into the query's SQL and
 * builder fields (`cluster` as a comma-separated list); a connId that becomes a string of digits
 * is sent as a number.
 */
export function interpolateQuery(
  query: KindlingQuery,
  scopedVars: ScopedVars,
  templateSrv: Pick<TemplateSrv, 'replace'>
): KindlingQuery {
  const out: KindlingQuery = { ...query, rawSql: templateSrv.replace(query.rawSql ?? '', scopedVars) };
  for (const key of ['node', 'protocol', 'ts'] as const) {
    const value = query[key];
    if (typeof value === 'string') {
      out[key] = templateSrv.replace(value, scopedVars);
    }
  }
  // A multi-value variable as the backend reads the list: comma-separated.
  if (typeof query.cluster === 'string') {
    out.cluster = templateSrv.replace(query.cluster, scopedVars, 'csv');
  }
  if (typeof query.connId === 'string') {
    const id = templateSrv.replace(query.connId, scopedVars).trim();
    out.connId = /^\d+$/.test(id) ? Number(id) : id;
  }
  return out;
}
