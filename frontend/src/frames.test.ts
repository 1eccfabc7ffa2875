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
