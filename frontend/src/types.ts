import { DataQuery, DataSourceJsonData } from '@grafana/data';

/** How the backend shapes the result: a plain table, or a long-to-wide time series frame. */
export type QueryFormat = 'table' | 'time_series';

/**
 * `sql`: the user's SQL; `calls`, `dns`, `tcp`: builders whose SQL the editor generates into
 * rawSql; `service_map`: a Node Graph of who calls whom; `trace`: one call's timing.
 */
export type QueryType = 'sql' | 'calls' | 'dns' | 'tcp' | 'service_map' | 'trace';

/**
 * One panel query. This JSON is stored in users' dashboards and read by the Rust backend
 * (`gpx_kindling`): it is a stable contract (see README.md), so fields are only ever added.
 */
export interface KindlingQuery extends DataQuery {
  queryType: QueryType;
  /** `sql`: SQL over the agents' tables; Grafana template variables are interpolated before it is sent. */
  rawSql: string;
  format: QueryFormat;
  /** Builders and `service_map`: only rows of this agent node; `trace`: the node that recorded the call. */
  node?: string;
  /** `service_map`, `calls`: only calls of this protocol. */
  protocol?: string;
  /**
   * Builders and `service_map`: only rows of these clusters' agents (`kindling-agent
   * --cluster-name`), comma-separated, or a multi-value variable such as `$cluster`; `trace`:
   * the cluster of the node that recorded the call (empty: any).
   */
  cluster?: string;
  /** `calls`, `dns`, `tcp`: which of the builder's views (see BUILDER_VIEWS). */
  view?: string;
  /** `trace`: the call's `conn_id` (a number, or a string of digits from a template). */
  connId?: number | string;
  /** `trace`: the call's `ts` in nanoseconds since the epoch, as a string of digits. */
  ts?: string;
}

/** Datasource settings (`jsonData`). */
export interface KindlingOptions extends DataSourceJsonData {
  /**
   * Flight endpoints of the agents to query, each `HOST:PORT` (no scheme). A DNS name that
   * resolves to several addresses (a headless Service) stands for one agent per address.
   */
  agents: string[];
  /** Seconds one agent may take to answer before the result goes on without it (default 10). */
  agentTimeoutSeconds?: number;
  /** Most agents queried at once (default 32). */
  fanout?: number;
  /** With TLS: the name the agents' certificates must carry (default: each agent's host). */
  tlsServerName?: string;
  /**
   * More clusters of agents, queried with `agents` as one datasource, each with its own
   * secrets (`secureJsonData` `token.NAME` and `tlsCACert.NAME`, falling back to the shared
   * ones). Set by provisioning (provisioning/datasources/kindling.yaml).
   */
  clusters?: KindlingCluster[];
}

/** One cluster of agents. */
export interface KindlingCluster {
  /** What its agents' `--cluster-name` says. */
  name: string;
  /** Its agents, each `HOST:PORT`. */
  agents: string[];
  /** With TLS: the name its agents' certificates must carry. */
  tlsServerName?: string;
}

/** Datasource secrets (`secureJsonData`): write-only from the browser. */
export interface KindlingSecureOptions {
  /** The agents' bearer token (`kindling-agent --token-file`). */
  token?: string;
  /** PEM of the CA that signed the agents' TLS certificates; set, the plugin connects with TLS. */
  tlsCACert?: string;
  /** Per cluster of `clusters` (`token.NAME`, `tlsCACert.NAME`): falling back to the above. */
  [perCluster: `token.${string}` | `tlsCACert.${string}`]: string | undefined;
}
