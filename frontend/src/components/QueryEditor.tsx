import React from 'react';
import { QueryEditorProps } from '@grafana/data';
import { InlineField, InlineFieldRow, RadioButtonGroup, TextArea } from '@grafana/ui';

import type { DataSource } from '../datasource';
import { FORMAT_OPTIONS } from '../query';
import { KindlingOptions, KindlingQuery, QueryFormat } from '../types';

type Props = QueryEditorProps<DataSource, KindlingQuery, KindlingOptions>;

/** SQL text and result format; the query runs when the SQL field loses focus or the format changes. */
export function QueryEditor({ query, onChange, onRunQuery }: Props) {
  // Format is a radio group, not a Select: @grafana/ui deprecates Select in favour of Combobox,
  // which Grafana 10.4 (our oldest supported version) does not have.
  const onFormatChange = (format: QueryFormat) => {
    onChange({ ...query, format });
    onRunQuery();
  };

  return (
    <>
      <TextArea
        aria-label="SQL"
        rows={6}
        spellCheck={false}
        style={{ fontFamily: 'monospace' }}
        value={query.rawSql ?? ''}
        placeholder="SELECT * FROM flows ORDER BY end_ts DESC LIMIT 100"
        onChange={(event) => onChange({ ...query, rawSql: event.currentTarget.value })}
        onBlur={onRunQuery}
      />
      <InlineFieldRow>
        <InlineField label="Format" labelWidth={12}>
          <RadioButtonGroup<QueryFormat>
            options={[...FORMAT_OPTIONS]}
            value={query.format ?? 'table'}
            onChange={onFormatChange}
          />
        </InlineField>
      </InlineFieldRow>
    </>
  );
}
