import { ScopedVars } from '@grafana/data';
import { TemplateSrv } from '@grafana/runtime';

import { KindlingQuery, QueryFormat } from './types';

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

/** Whether a query should be sent to the backend: hidden queries and blank SQL are not. */
export function isRunnable(query: Pick<KindlingQuery, 'rawSql' | 'hide'>): boolean {
  return !query.hide && typeof query.rawSql === 'string' && query.rawSql.trim() !== '';
}

/** Interpolates Grafana template variables (`$host`, `$__interval`, ...) into the query's SQL. */
export function interpolateQuery(
  query: KindlingQuery,
  scopedVars: ScopedVars,
  templateSrv: Pick<TemplateSrv, 'replace'>
): KindlingQuery {
  return { ...query, rawSql: templateSrv.replace(query.rawSql, scopedVars) };
}
