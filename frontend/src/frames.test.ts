/// <reference types="node" />
import { readFileSync, writeFileSync } from 'fs';
import path from 'path';
import { createDataFrame, DataFrame, FieldType } from '@grafana/data';

import { postProcessFrame } from './frames';

const nodes = (): DataFrame =>
  createDataFrame({
    name: 'nodes',
    meta: { preferredVisualisationType: 'nodeGraph' },
    fields: [
      { name: 'id', type: FieldType.string, values: ['n1/api'] },
      { name: 'arc__success', type: FieldType.number, values: [0.75] },
      { name: 'arc__errors', type: FieldType.number, values: [0.25] },
    ],
  });

describe('postProcessFrame', () => {
  it('colours the arcs of Node Graph nodes and leaves the rest alone', () => {
    const out = postProcessFrame(nodes());
    expect(out.fields.map((f) => f.config.color)).toEqual([
      undefined,
      { mode: 'fixed', fixedColor: 'green' },
      { mode: 'fixed', fixedColor: 'red' },
    ]);
    expect(out.fields[1].values).toEqual([0.75]);
    // Edges and other frames are not touched.
    const edges = { ...nodes(), name: 'edges' };
    expect(postProcessFrame(edges)).toBe(edges);
  });

  it('parses the JSON tags of trace frames', () => {
    const trace = createDataFrame({
      name: 'trace',
      meta: { preferredVisualisationType: 'trace' },
      fields: [
        { name: 'spanID', type: FieldType.string, values: ['call', 'sent'] },
        { name: 'tags', type: FieldType.string, values: ['[{"key":"status","value":"200"}]', '[]'] },
      ],
    });
    const out = postProcessFrame(trace);
    expect(out.fields[1].values).toEqual([[{ key: 'status', value: '200' }], []]);
    expect(out.fields[1].type).toBe(FieldType.other);
    expect(out.fields[0]).toBe(trace.fields[0]);
  });

  it('keeps tags that are not JSON as text', () => {
    const trace = createDataFrame({
      meta: { preferredVisualisationType: 'trace' },
      fields: [{ name: 'tags', type: FieldType.string, values: ['not json'] }],
    });
    expect(postProcessFrame(trace).fields[0].values).toEqual(['not json']);
  });

  it('returns a table frame unchanged', () => {
    const table = createDataFrame({ fields: [{ name: 'tags', type: FieldType.string, values: ['[]'] }] });
    expect(postProcessFrame(table)).toBe(table);
  });
});

describe('drilldown links', () => {
  const target = { uid: 'kindling', name: 'Kindling' };
  const linksOf = (frame: DataFrame, name: string) => frame.fields.find((f) => f.name === name)?.config.links ?? [];

  it('links a call to its trace', () => {
    const calls = createDataFrame({
      fields: ['ts', 'node', 'conn_id', 'ts_ns', 'domain'].map((name) => ({ name, values: ['x'] })),
    });
    const out = postProcessFrame(calls, target);
    const [trace] = linksOf(out, 'conn_id');
    expect(trace.title).toBe('Trace of this call');
    expect(trace.internal).toEqual({
      datasourceUid: 'kindling',
      datasourceName: 'Kindling',
      query: {
        refId: 'A',
        queryType: 'trace',
        rawSql: '',
        format: 'table',
        node: '${__data.fields.node}',
        connId: '${__data.fields.conn_id}',
        ts: '${__data.fields.ts_ns}',
      },
    });
    expect(linksOf(out, 'domain')[0].internal?.query).toMatchObject({
      queryType: 'sql',
      rawSql: "SELECT * FROM dns WHERE $__timeFilter(ts) AND domain = '${__data.fields.domain}' ORDER BY ts DESC LIMIT 500",
    });
    expect(linksOf(out, 'ts')).toEqual([]);
  });

  it('names the cluster of the call in its trace link when the row has one', () => {
    const calls = createDataFrame({
      fields: ['node', 'cluster', 'conn_id', 'ts_ns'].map((name) => ({ name, values: ['x'] })),
    });
    const [trace] = linksOf(postProcessFrame(calls, target), 'conn_id');
    expect(trace.internal?.query).toMatchObject({ node: '${__data.fields.node}', cluster: '${__data.fields.cluster}' });
  });

  it('links a flow to its TCP events', () => {
    const flows = createDataFrame({
      fields: ['end_ts', 'node', 'conn_id'].map((name) => ({ name, values: ['x'] })),
    });
    const [events] = linksOf(postProcessFrame(flows, target), 'conn_id');
    expect(events.title).toBe('TCP events of this connection');
    expect(events.internal?.query.rawSql).toBe(
      "SELECT * FROM tcp_events WHERE node = '${__data.fields.node}' AND conn_id = ${__data.fields.conn_id} ORDER BY ts"
    );
  });

  it('links service map nodes and edges to their calls', () => {
    const node = linksOf(postProcessFrame(nodes(), target), 'id')[0];
    expect(node.title).toBe('Calls of this node');
    // Ends as the service map names them: after `cluster/` when the agent's cluster is named.
    const named = (name: string) => `CASE WHEN cluster = '' THEN ${name} ELSE cluster || '/' || ${name} END`;
    expect(node.internal?.query.rawSql).toContain(`${named("node || '/' || comm")} = '\${__data.fields.id}'`);
    const edges = createDataFrame({
      name: 'edges',
      meta: { preferredVisualisationType: 'nodeGraph' },
      fields: ['id', 'source', 'target', 'detail__protocol'].map((name) => ({ name, values: ['x'] })),
    });
    const edge = linksOf(postProcessFrame(edges, target), 'id')[0];
    expect(edge.internal?.query.rawSql).toContain(
      "protocol = '${__data.fields.detail__protocol}' AND ((role = 'client' AND (" +
        `${named("node || '/' || comm")} = '\${__data.fields.source}'`
    );
    // Kubernetes workloads, as the backend names them.
    const srcK8s =
      "CASE WHEN src_workload <> '' THEN CASE WHEN src_namespace = '' THEN 'node/' || src_workload " +
      "ELSE src_namespace || '/' || src_workload END WHEN src_service <> '' THEN src_namespace || '/' || src_service END";
    expect(edge.internal?.query.rawSql).toContain(
      `(${named(srcK8s)} = '\${__data.fields.source}' AND CASE WHEN cluster = '' THEN CASE WHEN dst_workload`
    );
    expect(node.internal?.query.rawSql).toContain("ELSE dst_namespace || '/' || dst_workload END");
  });

  it('adds nothing to frames without those fields', () => {
    const plain = createDataFrame({ fields: [{ name: 'n', values: [1] }] });
    expect(postProcessFrame(plain, target)).toBe(plain);
  });
});

describe('the drilldown queries the backend runs', () => {
  // plugin-backend/tests/dashboards.rs runs each of these (the links' queries with the clicked
  // row's values filled in, as Grafana does) against fixture agents. Regenerate it after
  // changing a link: UPDATE_DRILLDOWN_QUERIES=1 npx jest frames
  const file = path.join(__dirname, '../../plugin-backend/tests/fixtures/drilldown_queries.json');
  // Values of fixture connection 2 (node n1, a client `curl` calling 10.0.1.1:443 over http).
  const row: Record<string, string> = {
    node: 'n1',
    conn_id: '2',
    ts_ns: '1700000020000000000',
    domain: 'api.example.com',
    id: 'n1/curl',
    source: 'n1/curl',
    target: '10.0.1.1:443',
    detail__protocol: 'http',
  };
  const fill = (value: unknown): unknown =>
    typeof value === 'string' ? value.replace(/\$\{__data\.fields\.(\w+)\}/g, (_, name) => row[name]) : value;

  it('are exactly what the links query now', () => {
    const frames = [
      createDataFrame({ fields: ['node', 'conn_id', 'ts_ns', 'domain'].map((name) => ({ name, values: ['x'] })) }),
      createDataFrame({ fields: ['end_ts', 'node', 'conn_id'].map((name) => ({ name, values: ['x'] })) }),
      nodes(),
      createDataFrame({
        name: 'edges',
        meta: { preferredVisualisationType: 'nodeGraph' },
        fields: ['id', 'source', 'target', 'detail__protocol'].map((name) => ({ name, values: ['x'] })),
      }),
    ];
    const queries = frames.flatMap((frame) =>
      postProcessFrame(frame, { uid: 'kindling', name: 'Kindling' }).fields.flatMap((f) =>
        (f.config.links ?? []).map((link) => {
          const query = link.internal?.query as Record<string, unknown>;
          return { title: link.title, ...Object.fromEntries(Object.entries(query).map(([k, v]) => [k, fill(v)])) };
        })
      )
    );
    const text = JSON.stringify(queries, null, 2) + '\n';
    if (process.env.UPDATE_DRILLDOWN_QUERIES) {
      writeFileSync(file, text);
    }
    expect(readFileSync(file, 'utf8')).toBe(text);
  });
});
