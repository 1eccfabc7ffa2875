import React, { useState } from 'react';
import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { Button, FieldSet, IconButton, InlineField, InlineFieldRow, Input, SecretInput, SecretTextArea } from '@grafana/ui';

import { agentListErrors } from '../agentAddress';
import { withoutSecret } from '../secrets';
import { KindlingOptions, KindlingSecureOptions } from '../types';
import { ClustersEditor } from './ClustersEditor';

type Props = DataSourcePluginOptionsEditorProps<KindlingOptions, KindlingSecureOptions>;

/** A positive number typed in a field, or undefined (the backend's default) when empty. */
export function positiveNumber(text: string): number | undefined | 'invalid' {
  if (text.trim() === '') {
    return undefined;
  }
  const n = Number(text);
  return Number.isFinite(n) && n > 0 ? n : 'invalid';
}

/**
 * Edits the agents (`jsonData.agents`, one HOST:PORT per row), more clusters of agents
 * (`jsonData.clusters`, see ClustersEditor), their bearer token
 * (`secureJsonData.token`), the fan-out bounds (`jsonData.agentTimeoutSeconds`, `fanout`) and
 * TLS (`secureJsonData.tlsCACert`, `jsonData.tlsServerName`).
 */
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

  const [limitText, setLimitText] = useState({
    agentTimeoutSeconds: options.jsonData.agentTimeoutSeconds?.toString() ?? '',
    fanout: options.jsonData.fanout?.toString() ?? '',
  });
  const setLimit = (key: 'agentTimeoutSeconds' | 'fanout', text: string) => {
    setLimitText({ ...limitText, [key]: text });
    const value = positiveNumber(text);
    if (value !== 'invalid') {
      const stored = key === 'fanout' && value !== undefined ? Math.floor(value) : value;
      onOptionsChange({ ...options, jsonData: { ...options.jsonData, [key]: stored } });
    }
  };
  const tokenConfigured = options.secureJsonFields?.token === true;
  const setToken = (token: string) => {
    onOptionsChange({ ...options, secureJsonData: { ...options.secureJsonData, token } });
  };
  const resetToken = () => onOptionsChange(withoutSecret(options, 'token'));
  const caConfigured = options.secureJsonFields?.tlsCACert === true;
  const setCa = (tlsCACert: string) => {
    onOptionsChange({ ...options, secureJsonData: { ...options.secureJsonData, tlsCACert } });
  };
  const resetCa = () => onOptionsChange(withoutSecret(options, 'tlsCACert'));
  const setServerName = (name: string) => {
    const tlsServerName = name.trim() === '' ? undefined : name.trim();
    onOptionsChange({ ...options, jsonData: { ...options.jsonData, tlsServerName } });
  };

  return (
    <>
    <FieldSet label="Agents">
      <p>
        The Arrow Flight address of each Kindling agent, as HOST:PORT. A query runs on every agent and
        their rows are combined.
      </p>
      {agents.length === 0 && (options.jsonData.clusters ?? []).length === 0 && (
        <p>No agents yet: queries will return no rows.</p>
      )}
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
    <ClustersEditor options={options} onOptionsChange={onOptionsChange} />
    <FieldSet label="Access and limits">
      <InlineField
        label="Token"
        labelWidth={20}
        tooltip="The bearer token the agents were started with (kindling-agent --token-file). Stored encrypted."
        htmlFor="kindling-token"
      >
        <SecretInput
          id="kindling-token"
          width={40}
          isConfigured={tokenConfigured}
          value={options.secureJsonData?.token ?? ''}
          placeholder="none"
          onReset={resetToken}
          onChange={(event) => setToken(event.currentTarget.value)}
        />
      </InlineField>
      {(['agentTimeoutSeconds', 'fanout'] as const).map((key) => {
        const invalid = positiveNumber(limitText[key]) === 'invalid';
        return (
          <InlineField
            key={key}
            label={key === 'fanout' ? 'Agents at once' : 'Agent timeout (s)'}
            labelWidth={20}
            invalid={invalid}
            error={invalid ? 'A positive number, or empty for the default' : undefined}
            tooltip={
              key === 'fanout'
                ? 'Most agents queried at the same time (default 32).'
                : 'An agent slower than this is left out of the result and named in a notice (default 10).'
            }
            htmlFor={`kindling-${key}`}
          >
            <Input
              id={`kindling-${key}`}
              width={12}
              value={limitText[key]}
              placeholder={key === 'fanout' ? '32' : '10'}
              onChange={(event) => setLimit(key, event.currentTarget.value)}
            />
          </InlineField>
        );
      })}
    </FieldSet>
    <FieldSet label="TLS">
      <InlineField
        label="CA certificate"
        labelWidth={20}
        tooltip="PEM of the CA that signed the agents' certificates (kindling-agent --tls-cert). Set, the plugin connects with TLS. Stored encrypted."
        htmlFor="kindling-tls-ca"
      >
        <SecretTextArea
          id="kindling-tls-ca"
          aria-label="CA certificate"
          cols={60}
          rows={4}
          isConfigured={caConfigured}
          value={options.secureJsonData?.tlsCACert ?? ''}
          placeholder="-----BEGIN CERTIFICATE-----"
          onReset={resetCa}
          onChange={(event) => setCa(event.currentTarget.value)}
        />
      </InlineField>
      <InlineField
        label="Server name"
        labelWidth={20}
        tooltip="The name the agents' certificates carry, when it is not the host of each agent address."
        htmlFor="kindling-tls-server-name"
      >
        <Input
          id="kindling-tls-server-name"
          width={40}
          value={options.jsonData.tlsServerName ?? ''}
          placeholder="each agent's host"
          onChange={(event) => setServerName(event.currentTarget.value)}
        />
      </InlineField>
    </FieldSet>
    </>
  );
}
