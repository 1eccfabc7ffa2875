import React, { useEffect, useState } from 'react';
import { QueryEditorProps } from '@grafana/data';
import { Button, InlineField, InlineFieldRow, Input, RadioButtonGroup, TextArea } from '@grafana/ui';

import { BUILDER_VIEWS, isBuilder, withBuilderSql } from '../builders';
import { completions, Schema } from '../completion';
import type { DataSource } from '../datasource';
import { FORMAT_OPTIONS, QUERY_TYPE_OPTIONS } from '../query';
import { KindlingOptions, KindlingQuery, QueryFormat, QueryType } from '../types';
import { SqlField } from './SqlField';

type Props = QueryEditorProps<DataSource, KindlingQuery, KindlingOptions>;

/** A text field of a builder query type, saved as typed and run when it loses focus. */
function BuilderField(props: {
  label: string;
  value: string | number | undefined;
  placeholder: string;
  tooltip: string;
  onChange: (value: string) => void;
  onBlur: () => void;
}) {
  return (
    <InlineField label={props.label} labelWidth={12} tooltip={props.tooltip}>
      <Input
        aria-label={props.label}
        width={30}
        value={props.value ?? ''}
        placeholder={props.placeholder}
        onChange={(event) => props.onChange(event.currentTarget.value)}
        onBlur={props.onBlur}
      />
    </InlineField>
  );
}

/**
 * The query type, then its fields: SQL text and result format, the service map's filters, or the
 * call a trace is of. Text runs the query when it loses focus; the radio groups run it at once.
 */
export function QueryEditor({ datasource, query, onChange, onRunQuery }: Props) {
  // Completion of tables and columns from the backend's schema, for the word at the cursor.
  const [schema, setSchema] = useState<Schema>();
  const [cursor, setCursor] = useState<number>();
  useEffect(() => {
    let live = true;
    datasource.getSchema?.().then(
      (s) => live && setSchema(s),
      () => undefined
    );
    return () => {
      live = false;
    };
  }, [datasource]);
  const sql = query.rawSql ?? '';
  const suggested = schema && cursor !== undefined ? completions(schema, sql, cursor) : undefined;
  const complete = (text: string) => {
    if (!suggested || cursor === undefined) {
      return;
    }
    onChange({ ...query, rawSql: sql.slice(0, suggested.from) + text + sql.slice(cursor) });
    setCursor(suggested.from + text.length);
  };

  // Radio groups, not Selects: @grafana/ui deprecates Select in favour of Combobox, which
  // Grafana 10.4 (our oldest supported version) does not have.
  const onFormatChange = (format: QueryFormat) => {
    onChange({ ...query, format });
    onRunQuery();
  };
  // A builder's SQL is regenerated from its fields on every change, and stored in rawSql.
  const onTypeChange = (queryType: QueryType) => {
    onChange(withBuilderSql({ ...query, queryType }));
    onRunQuery();
  };
  const onViewChange = (view: string) => {
    onChange(withBuilderSql({ ...query, view }));
    onRunQuery();
  };
  const queryType = query.queryType ?? 'sql';
  const field = (key: 'node' | 'protocol' | 'cluster' | 'ts' | 'connId') => (value: string) =>
    onChange(withBuilderSql({ ...query, [key]: value }));

  // The filters the builders and the service map share.
  const nodeFilter = (
    <BuilderField
      label="Node"
      value={query.node}
      placeholder="all nodes"
      tooltip="Only rows of this agent node (a $variable: empty means all)"
      onChange={field('node')}
      onBlur={onRunQuery}
    />
  );
  const clusterFilter = (
    <BuilderField
      label="Cluster"
      value={query.cluster}
      placeholder="all clusters"
      tooltip="Only rows of these clusters' agents, comma-separated, or a multi-value $variable"
      onChange={field('cluster')}
      onBlur={onRunQuery}
    />
  );
  const protocolFilter = (
    <BuilderField
      label="Protocol"
      value={query.protocol}
      placeholder="all protocols"
      tooltip="http, http2, grpc, dns, mysql, redis or postgresql (service map: also tcp, for connections without parsed calls)"
      onChange={field('protocol')}
      onBlur={onRunQuery}
    />
  );

  return (
    <>
      <InlineFieldRow>
        <InlineField label="Query" labelWidth={12}>
          <RadioButtonGroup<QueryType> options={[...QUERY_TYPE_OPTIONS]} value={queryType} onChange={onTypeChange} />
        </InlineField>
      </InlineFieldRow>
      {queryType === 'sql' && (
        <>
          <SqlField
            value={sql}
            placeholder="SELECT * FROM flows ORDER BY end_ts DESC LIMIT 100"
            onChange={(rawSql, at) => {
              setCursor(at);
              onChange({ ...query, rawSql });
            }}
            onCursor={setCursor}
            onBlur={onRunQuery}
          />
          {suggested && suggested.items.length > 0 && (
            <div aria-label="Completions">
              {suggested.items.map((item) => (
                <Button
                  key={item.text}
                  variant="secondary"
                  size="sm"
                  fill="text"
                  tooltip={item.detail}
                  // Keep the focus (and the cursor) in the SQL field.
                  onMouseDown={(event) => event.preventDefault()}
                  onClick={() => complete(item.text)}
                >
                  {item.text}
                </Button>
              ))}
            </div>
          )}
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
      )}
      {isBuilder(queryType) && (
        <>
          <InlineFieldRow>
            <InlineField label="View" labelWidth={12}>
              <RadioButtonGroup<string>
                options={BUILDER_VIEWS[queryType].map(({ label, value }) => ({ label, value }))}
                value={query.view ?? BUILDER_VIEWS[queryType][0].value}
                onChange={onViewChange}
              />
            </InlineField>
          </InlineFieldRow>
          <InlineFieldRow>
            {nodeFilter}
            {clusterFilter}
            {queryType === 'calls' && protocolFilter}
          </InlineFieldRow>
          <TextArea
            aria-label="Generated SQL"
            rows={4}
            readOnly
            style={{ fontFamily: 'monospace' }}
            value={query.rawSql ?? ''}
          />
          <Button variant="secondary" size="sm" onClick={() => onChange({ ...query, queryType: 'sql' })}>
            Edit as SQL
          </Button>
        </>
      )}
      {queryType === 'service_map' && (
        <InlineFieldRow>
          {nodeFilter}
          {clusterFilter}
          {protocolFilter}
        </InlineFieldRow>
      )}
      {queryType === 'trace' && (
        <InlineFieldRow>
          <BuilderField
            label="Node"
            value={query.node}
            placeholder="node"
            tooltip="The agent node that recorded the call (calls.node)"
            onChange={field('node')}
            onBlur={onRunQuery}
          />
          <BuilderField
            label="Connection"
            value={query.connId}
            placeholder="conn_id"
            tooltip="calls.conn_id of the call"
            onChange={field('connId')}
            onBlur={onRunQuery}
          />
          <BuilderField
            label="Start (ns)"
            value={query.ts}
            placeholder="1700000000123456789"
            tooltip="calls.ts of the call, in nanoseconds since the epoch"
            onChange={field('ts')}
            onBlur={onRunQuery}
          />
          <BuilderField
            label="Cluster"
            value={query.cluster}
            placeholder="any"
            tooltip="calls.cluster of the call, when node names repeat between clusters"
            onChange={field('cluster')}
            onBlur={onRunQuery}
          />
        </InlineFieldRow>
      )}
    </>
  );
}
