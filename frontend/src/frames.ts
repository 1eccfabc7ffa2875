import { DataFrame, DataLink, Field, FieldType } from '@grafana/data';

import { CALL_COLUMNS } from './builders';
import { KindlingQuery } from './types';

/** The datasource that internal (Explore) links query. */
export interface LinkTarget {
  uid: string;
  name: string;
}

/**
 * What the backend cannot put into its frames (the Rust SDK has no field colors and no JSON
 * fields), added in the browser:
 * - Node Graph `nodes` frames: the arcs' colors (success green, errors red);
 * - traces frames: `tags` parsed from JSON text into the `[{key, value}]` lists Grafana's trace
 *   view reads.
 * Every other frame is returned as it is.
 */
export function postProcessFrame(frame: DataFrame, target?: LinkTarget): DataFrame {
  const kind = frame.meta?.preferredVisualisationType;
  let out = frame;
  if (kind === 'nodeGraph' && frame.name === 'nodes') {
    out = { ...frame, fields: frame.fields.map(colorArc) };
  } else if (kind === 'trace') {
    out = { ...frame, fields: frame.fields.map(parseTags) };
  }
  return target ? addDrilldown(out, target) : out;
}

const field = (name: string) => '${__data.fields.' + name + '}';

const sqlLink = (title: string, rawSql: string, target: LinkTarget): DataLink<KindlingQuery> => ({
  title,
  url: '',
  internal: {
    datasourceUid: target.uid,
    datasourceName: target.name,
    query: { refId: 'A', queryType: 'sql', rawSql, format: 'table' },
  },
});

/**
 * The service map's Kubernetes name of a row's `src` or `dst` end (as the backend's
 * service_map.rs names nodes): `namespace/workload`, `node/NAME` for a node's own address,
 * `namespace/service` for a dialled ClusterIP; NULL where Kubernetes names nothing.
 */
const k8sName = (side: 'src' | 'dst') =>
  `CASE WHEN ${side}_workload <> '' THEN CASE WHEN ${side}_namespace = '' THEN 'node/' || ${side}_workload ` +
  `ELSE ${side}_namespace || '/' || ${side}_workload END ` +
  `WHEN ${side}_service <> '' THEN ${side}_namespace || '/' || ${side}_service END`;

/**
 * A name as the service map gives it to an end the row's agent saw or named: after `cluster/`
 * when the agent's cluster is named.
 */
const inCluster = (name: string) => `CASE WHEN cluster = '' THEN ${name} ELSE cluster || '/' || ${name} END`;

/** The service map's name of a row's local process: `node/comm`. */
const processName = inCluster("node || '/' || comm");

/**
 * Explore drilldown, as links on the fields a user clicks:
 * - a service map node -> the calls it made and served; an edge -> the calls on it;
 * - a call (a row with node, conn_id and ts_ns, and cluster if it has one) -> its trace;
 * - a flow (node, conn_id, end_ts) -> the connection's tcp_events;
 * - a DNS row or domain (domain) -> the lookups of that domain.
 */
function addDrilldown(frame: DataFrame, target: LinkTarget): DataFrame {
  const names = new Set(frame.fields.map((f) => f.name));
  const links: Record<string, Array<DataLink<KindlingQuery>>> = {};
  const kind = frame.meta?.preferredVisualisationType;
  if (kind === 'nodeGraph' && frame.name === 'nodes') {
    const id = field('id');
    links.id = [
      sqlLink(
        'Calls of this node',
        `SELECT ${CALL_COLUMNS} FROM calls WHERE $__timeFilter(ts) AND (${processName} = '${id}' ` +
          `OR src_ip = '${id}' OR dst_ip || ':' || CAST(dst_port AS VARCHAR) = '${id}' ` +
          `OR ${inCluster(k8sName('src'))} = '${id}' OR ${inCluster(k8sName('dst'))} = '${id}') ORDER BY ts DESC LIMIT 500`,
        target
      ),
    ];
  } else if (kind === 'nodeGraph' && frame.name === 'edges') {
    const [source, dest, protocol] = [field('source'), field('target'), field('detail__protocol')];
    links.id = [
      sqlLink(
        'Calls on this edge',
        `SELECT ${CALL_COLUMNS} FROM calls WHERE $__timeFilter(ts) AND protocol = '${protocol}' AND ` +
          `((role = 'client' AND (${processName} = '${source}' OR src_ip = '${source}')) OR ` +
          `(role = 'server' AND (${processName} = '${dest}' OR dst_ip || ':' || CAST(dst_port AS VARCHAR) = '${dest}')) OR ` +
          `(${inCluster(k8sName('src'))} = '${source}' AND ${inCluster(k8sName('dst'))} = '${dest}')) ` +
          'ORDER BY ts DESC LIMIT 500',
        target
      ),
    ];
  } else if (names.has('node') && names.has('conn_id') && names.has('ts_ns')) {
    links.conn_id = [
      {
        title: 'Trace of this call',
        url: '',
        internal: {
          datasourceUid: target.uid,
          datasourceName: target.name,
          query: {
            refId: 'A',
            queryType: 'trace',
            rawSql: '',
            format: 'table',
            node: field('node'),
            connId: field('conn_id'),
            ts: field('ts_ns'),
            // Node names may repeat between clusters.
            ...(names.has('cluster') ? { cluster: field('cluster') } : {}),
          },
        },
      },
    ];
  } else if (names.has('node') && names.has('conn_id') && names.has('end_ts')) {
    links.conn_id = [
      sqlLink(
        'TCP events of this connection',
        `SELECT * FROM tcp_events WHERE node = '${field('node')}' AND conn_id = ${field('conn_id')} ORDER BY ts`,
        target
      ),
    ];
  }
  if (names.has('domain')) {
    links.domain = [
      sqlLink(
        'Lookups of this domain',
        `SELECT * FROM dns WHERE $__timeFilter(ts) AND domain = '${field('domain')}' ORDER BY ts DESC LIMIT 500`,
        target
      ),
    ];
  }
  if (Object.keys(links).length === 0) {
    return frame;
  }
  return {
    ...frame,
    fields: frame.fields.map((f) =>
      links[f.name] ? { ...f, config: { ...f.config, links: [...(f.config.links ?? []), ...links[f.name]] } } : f
    ),
  };
}

const ARC_COLORS: Record<string, string> = { arc__success: 'green', arc__errors: 'red' };

function colorArc(field: Field): Field {
  const color = ARC_COLORS[field.name];
  if (!color) {
    return field;
  }
  return { ...field, config: { ...field.config, color: { mode: 'fixed', fixedColor: color } } };
}

function parseTags(field: Field): Field {
  if (field.name !== 'tags') {
    return field;
  }
  const values = Array.from(field.values as ArrayLike<unknown>).map((v) => {
    if (typeof v !== 'string') {
      return v;
    }
    try {
      return JSON.parse(v);
    } catch {
      // Not JSON (a hand-written SQL frame that names a column `tags`): shown as it is.
      return v;
    }
  });
  return { ...field, type: FieldType.other, values };
}
