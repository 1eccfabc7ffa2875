import { DataFrame, Field, FieldType } from '@grafana/data';

/**
 * What the backend cannot put into its frames (the Rust SDK has no field colors and no JSON
 * fields), added in the browser:
 * - Node Graph `nodes` frames: the arcs' colors (success green, errors red);
 * - traces frames: `tags` parsed from JSON text into the `[{key, value}]` lists Grafana's trace
 *   view reads.
 * Every other frame is returned as it is.
 */
export function postProcessFrame(frame: DataFrame): DataFrame {
  const kind = frame.meta?.preferredVisualisationType;
  if (kind === 'nodeGraph' && frame.name === 'nodes') {
    return { ...frame, fields: frame.fields.map(colorArc) };
  }
  if (kind === 'trace') {
    return { ...frame, fields: frame.fields.map(parseTags) };
  }
  return frame;
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
