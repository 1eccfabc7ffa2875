import React, { useState } from 'react';
import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { Button, FieldSet, IconButton, InlineField, InlineFieldRow, Input } from '@grafana/ui';

import { agentListErrors } from '../agentAddress';
import { KindlingOptions } from '../types';

type Props = DataSourcePluginOptionsEditorProps<KindlingOptions>;

/** Edits the list of agents (`jsonData.agents`), one HOST:PORT per row. */
export function ConfigEditor({ options, onOptionsChange }: Props) {
  const agents = options.jsonData.agents ?? [];
  const errors = agentListErrors(agents);
  // The row being typed in shows no error until the user leaves it: a half-typed address is
  // not a mistake yet.
  const [editingRow, setEditingRow] = useState<number | undefined>(undefined);

  const setAgents = (next: string[]) => {
    onOptionsChange({ ...options, jsonData: { ...options.jsonData, agents: next } });
  };
  const updateAgent = (row: number, value: string) => {
    setAgents(agents.map((agent, i) => (i === row ? value : agent)));
  };
  const removeAgent = (row: number) => {
    setEditingRow(undefined);
    setAgents(agents.filter((_, i) => i !== row));
  };
  const addAgent = () => {
    setEditingRow(agents.length);
    setAgents([...agents, '']);
  };

  return (
    <FieldSet label="Agents">
      <p>
        The Arrow Flight address of each Kindling agent, as HOST:PORT. A query runs on every agent and
        their rows are combined.
      </p>
      {agents.length === 0 && <p>No agents yet: queries will return no rows.</p>}
      {agents.map((agent, row) => {
        const error = row === editingRow ? undefined : errors[row];
        return (
          <InlineFieldRow key={row}>
            <InlineField
              label={`Agent ${row + 1}`}
              labelWidth={12}
              invalid={error !== undefined}
              error={error}
              htmlFor={`kindling-agent-${row}`}
            >
              <Input
                id={`kindling-agent-${row}`}
                width={40}
                value={agent}
                placeholder="127.0.0.1:50051"
                autoFocus={row === editingRow}
                onFocus={() => setEditingRow(row)}
                onBlur={() => setEditingRow(undefined)}
                onChange={(event) => updateAgent(row, event.currentTarget.value)}
              />
            </InlineField>
            <IconButton name="trash-alt" tooltip={`Remove agent ${row + 1}`} onClick={() => removeAgent(row)} />
          </InlineFieldRow>
        );
      })}
      <Button variant="secondary" icon="plus" onClick={addAgent}>
        Add agent
      </Button>
    </FieldSet>
  );
}
