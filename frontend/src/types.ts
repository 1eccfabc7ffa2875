import { DataQuery, DataSourceJsonData } from '@grafana/data';

/** How the backend shapes the result: a plain table, or a long-to-wide time series frame. */
export type QueryFormat = 'table' | 'time_series';

/**
 * One panel query. This JSON is stored in users' dashboards and read by the Rust backend
 * (`gpx_kindling`): it is a stable contract (see README.md), so fields are only ever added.
 */
export interface KindlingQuery extends DataQuery {
  queryType: 'sql';
  /** SQL over the agents' tables; Grafana template variables are interpolated before it is sent. */
  rawSql: string;
  format: QueryFormat;
}

/** Datasource settings (`jsonData`). */
export interface KindlingOptions extends DataSourceJsonData {
  /** Flight endpoints of the agents to query, each `HOST:PORT` (no scheme). */
  agents: string[];
}
