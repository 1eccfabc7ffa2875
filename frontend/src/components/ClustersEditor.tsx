import React, { useState } from 'react';
import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { Button, FieldSet, IconButton, InlineField, InlineFieldRow, Input, SecretInput } from '@grafana/ui';

import { agentListErrors } from '../agentAddress';
import { withoutSecret } from '../secrets';
import { KindlingCluster, KindlingOptions, KindlingSecureOptions } from '../types';

type Props = DataSourcePluginOptionsEditorProps<KindlingOptions, KindlingSecureOptions>;

/** The agents typed as `HOST:PORT, HOST:PORT`, without blanks. */
export function agentList(text: string): string[] {
  return text
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '');
}

/** What is wrong with the name of cluster `row` among `clusters`, if anything. */
export function clusterNameError(clusters: readonly KindlingCluster[], row: number): string | undefined {
  const name = clusters[row].name;
  if (name === '') {
    return 'A name is needed: the --cluster-name of its agents';
  }
  if (!/^[A-Za-z0-9._-]{1,63}$/.test(name)) {
    return 'At most 63 letters, digits, ".", "_" or "-", as kindling-agent --cluster-name takes';
  }
  if (clusters.findIndex((c) => c.name === name) !== row) {
    return `Another cluster is named "${name}"`;
  }
  return undefined;
}

/**
 * More clusters of agents (`jsonData.clusters`), queried with the agents above as one
 * datasource: each a name (its agents' `--cluster-name`), its agents as comma-separated
 * HOST:PORT, and its own token (`secureJsonData["token.NAME"]`; none: the shared token). A token
 * is stored under the cluster's name: after a rename it is set again.
 */
export function ClustersEditor({ options, onOptionsChange }: Props) {
  const clusters = options.jsonData.clusters ?? [];
  // The agents as typed (a trailing ", " is kept while typing); the list is what is stored.
  const [agentsText, setAgentsText] = useState(clusters.map((c) => c.agents.join(', ')));
  const [editingRow, setEditingRow] = useState<number | undefined>(undefined);

  const setClusters = (next: KindlingCluster[]) =>
    onOptionsChange({ ...options, jsonData: { ...options.jsonData, clusters: next } });
  const update = (row: number, change: Partial<KindlingCluster>) =>
    setClusters(clusters.map((c, i) => (i === row ? { ...c, ...change } : c)));
  const setAgents = (row: number, text: string) => {
    setAgentsText(agentsText.map((t, i) => (i === row ? text : t)));
    update(row, { agents: agentList(text) });
  };
  const add = () => {
    setAgentsText([...agentsText, '']);
    setClusters([...clusters, { name: '', agents: [] }]);
  };
  const tokenKey = (name: string): `token.${string}` => `token.${name}`;
  const setToken = (name: string, token: string) =>
    onOptionsChange({ ...options, secureJsonData: { ...options.secureJsonData, [tokenKey(name)]: token } });
  // Removing a cluster, or resetting its token, also drops the stored secret.
  const forgetToken = (name: string, next: Partial<Props['options']> = {}) =>
    onOptionsChange(withoutSecret({ ...options, ...next }, tokenKey(name)));
  const remove = (row: number) => {
    setEditingRow(undefined);
    setAgentsText(agentsText.filter((_, i) => i !== row));
    forgetToken(clusters[row].name, {
      jsonData: { ...options.jsonData, clusters: clusters.filter((_, i) => i !== row) },
    });
  };

  return (
    <FieldSet label="More clusters">
      <p>
        Agents of other clusters, queried with the agents above as one datasource. Start each cluster&apos;s
        agents with --cluster-name NAME; the dashboards&apos; Cluster variable then tells them apart.
      </p>
      {clusters.map((cluster, row) => {
        const nameError = row === editingRow ? undefined : clusterNameError(clusters, row);
        const errors = agentListErrors(cluster.agents);
        const bad = errors.findIndex((e) => e !== undefined);
        const agentError = row === editingRow || bad < 0 ? undefined : `${cluster.agents[bad]}: ${errors[bad]}`;
        const label = `Cluster ${row + 1}`;
        return (
          <InlineFieldRow key={row}>
            <InlineField label={label} labelWidth={12} invalid={nameError !== undefined} error={nameError}>
              <Input
                aria-label={`${label} name`}
                width={16}
                value={cluster.name}
                placeholder="name"
                onFocus={() => setEditingRow(row)}
                onBlur={() => setEditingRow(undefined)}
                onChange={(event) => update(row, { name: event.currentTarget.value.trim() })}
              />
            </InlineField>
            <InlineField label="Agents" labelWidth={8} invalid={agentError !== undefined} error={agentError}>
              <Input
                aria-label={`${label} agents`}
                width={40}
                value={agentsText[row] ?? ''}
                placeholder="HOST:PORT, HOST:PORT"
                onFocus={() => setEditingRow(row)}
                onBlur={() => setEditingRow(undefined)}
                onChange={(event) => setAgents(row, event.currentTarget.value)}
              />
            </InlineField>
            <InlineField
              label="Token"
              labelWidth={8}
              tooltip="This cluster's agents' bearer token; empty: the datasource's token (Access and limits). Stored encrypted, under the cluster's name."
            >
              <SecretInput
                aria-label={`${label} token`}
                width={24}
                disabled={cluster.name === ''}
                isConfigured={options.secureJsonFields?.[tokenKey(cluster.name)] === true}
                value={options.secureJsonData?.[tokenKey(cluster.name)] ?? ''}
                placeholder="the shared token"
                onReset={() => forgetToken(cluster.name)}
                onChange={(event) => setToken(cluster.name, event.currentTarget.value)}
              />
            </InlineField>
            <IconButton name="trash-alt" tooltip={`Remove cluster ${row + 1}`} onClick={() => remove(row)} />
          </InlineFieldRow>
        );
      })}
      <Button variant="secondary" icon="plus" onClick={add}>
        Add cluster
      </Button>
    </FieldSet>
  );
}
