import React, { useState } from 'react';
import { DataSourceSettings } from '@grafana/data';
import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';

import { KindlingOptions, KindlingSecureOptions } from '../types';
import { ConfigEditor } from './ConfigEditor';

type Settings = DataSourceSettings<KindlingOptions, KindlingSecureOptions>;

function settings(agents?: string[], tokenConfigured = false): Settings {
  return {
    id: 1,
    uid: 'kindling',
    name: 'Kindling',
    type: 'kindling-ebpf-datasource',
    jsonData: agents === undefined ? {} : { agents },
    secureJsonFields: tokenConfigured ? { token: true } : {},
  } as unknown as Settings;
}

/** Holds the settings the way Grafana's settings page does, recording every change. */
function Harness({
  initial,
  changes,
  full,
}: {
  initial: Settings;
  changes: KindlingOptions[];
  full?: Settings[];
}) {
  const [options, setOptions] = useState(initial);
  return (
    <ConfigEditor
      options={options}
      onOptionsChange={(next) => {
        changes.push(next.jsonData);
        full?.push(next);
        setOptions(next);
      }}
    />
  );
}

describe('ConfigEditor', () => {
  it('adds an agent typed as HOST:PORT', async () => {
    const changes: KindlingOptions[] = [];
    render(<Harness initial={settings()} changes={changes} />);
    expect(screen.getByText('No agents yet: queries will return no rows.')).toBeInTheDocument();

    await userEvent.click(screen.getByRole('button', { name: 'Add agent' }));
    await userEvent.type(screen.getByLabelText('Agent 1'), '10.0.0.5:50051');
    await userEvent.tab();

    expect(changes[0]).toEqual({ agents: [''] });
    expect(changes[changes.length - 1]).toEqual({ agents: ['10.0.0.5:50051'] });
    expect(changes).toHaveLength(1 + '10.0.0.5:50051'.length);
    expect(screen.getByLabelText('Agent 1')).toHaveValue('10.0.0.5:50051');
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
  });

  it('shows an inline error for an invalid address once the field is left', async () => {
    render(<Harness initial={settings(['127.0.0.1:50051'])} changes={[]} />);
    const input = screen.getByLabelText('Agent 1');

    await userEvent.clear(input);
    await userEvent.type(input, '127.0.0.1:99999');
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();

    await userEvent.tab();
    expect(screen.getByRole('alert')).toHaveTextContent('Port must be a number from 1 to 65535, got "99999"');

    await userEvent.click(input);
    await userEvent.type(input, '{Backspace}{Backspace}{Backspace}');
    await userEvent.tab();
    expect(input).toHaveValue('127.0.0.1:99');
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
  });

  it('shows errors of saved settings straight away, including a repeated agent', () => {
    render(<Harness initial={settings(['agent-a:50051', 'http://agent-b:50051', 'agent-a:50051'])} changes={[]} />);

    expect(screen.getAllByRole('alert').map((alert) => alert.textContent)).toEqual([
      'Leave out the scheme: write HOST:PORT, e.g. 127.0.0.1:50051',
      'Same agent as row 1',
    ]);
  });

  it('removes the chosen row and keeps the others in order', async () => {
    const changes: KindlingOptions[] = [];
    render(<Harness initial={settings(['a:1', 'b:2', 'c:3'])} changes={changes} />);

    await userEvent.click(screen.getByRole('button', { name: 'Remove agent 2' }));

    expect(changes).toEqual([{ agents: ['a:1', 'c:3'] }]);
    expect(screen.getByLabelText('Agent 1')).toHaveValue('a:1');
    expect(screen.getByLabelText('Agent 2')).toHaveValue('c:3');
    expect(screen.queryByLabelText('Agent 3')).not.toBeInTheDocument();
  });

  it('keeps the token in secureJsonData and lets a configured one be reset', async () => {
    const full: Settings[] = [];
    const { unmount } = render(<Harness initial={settings(['a:1'])} changes={[]} full={full} />);
    await userEvent.type(screen.getByLabelText('Token'), 's3cret');
    expect(full[full.length - 1].secureJsonData).toEqual({ token: 's3cret' });
    expect(full[full.length - 1].jsonData).toEqual({ agents: ['a:1'] });
    unmount();

    full.length = 0;
    render(<Harness initial={settings(['a:1'], true)} changes={[]} full={full} />);
    expect(screen.getByLabelText('Token')).toHaveValue('configured');
    await userEvent.click(screen.getByRole('button', { name: 'Reset' }));
    expect(full).toHaveLength(1);
    expect(full[0].secureJsonFields).toEqual({ token: false });
    expect(full[0].secureJsonData).toEqual({ token: '' });
    expect(screen.getByLabelText('Token')).toHaveValue('');
  });

  it('stores positive limits, flags others, and clears to the default', async () => {
    const changes: KindlingOptions[] = [];
    render(<Harness initial={settings(['a:1'])} changes={changes} />);
    await userEvent.type(screen.getByLabelText('Agent timeout (s)'), '2.5');
    expect(changes[changes.length - 1]).toEqual({ agents: ['a:1'], agentTimeoutSeconds: 2.5 });
    await userEvent.type(screen.getByLabelText('Agents at once'), '-4');
    expect(screen.getByRole('alert')).toHaveTextContent('A positive number, or empty for the default');
    expect(changes[changes.length - 1]).toEqual({ agents: ['a:1'], agentTimeoutSeconds: 2.5 });
    await userEvent.clear(screen.getByLabelText('Agents at once'));
    await userEvent.type(screen.getByLabelText('Agents at once'), '8');
    expect(changes[changes.length - 1]).toEqual({ agents: ['a:1'], agentTimeoutSeconds: 2.5, fanout: 8 });
    await userEvent.clear(screen.getByLabelText('Agent timeout (s)'));
    expect(changes[changes.length - 1]).toEqual({ agents: ['a:1'], agentTimeoutSeconds: undefined, fanout: 8 });
  });
});

describe('ConfigEditor TLS', () => {
  it('stores the CA encrypted and the server name in jsonData, and resets a configured CA', async () => {
    const full: Settings[] = [];
    render(<Harness initial={settings(['agents.example:50051'])} changes={[]} full={full} />);
    await userEvent.type(screen.getByLabelText('CA certificate'), 'PEM');
    await userEvent.type(screen.getByLabelText('Server name'), 'agents.kindling');
    const last = full[full.length - 1];
    expect(last.secureJsonData).toEqual({ tlsCACert: 'PEM' });
    expect(last.jsonData).toEqual({ agents: ['agents.example:50051'], tlsServerName: 'agents.kindling' });

    await userEvent.clear(screen.getByLabelText('Server name'));
    expect(full[full.length - 1].jsonData).toEqual({ agents: ['agents.example:50051'], tlsServerName: undefined });
  });

  it('resets a CA that was saved before', async () => {
    const full: Settings[] = [];
    const saved = { ...settings(['a:1']), secureJsonFields: { tlsCACert: true } } as unknown as Settings;
    render(<Harness initial={saved} changes={[]} full={full} />);
    const resets = screen.getAllByRole('button', { name: 'Reset' });
    await userEvent.click(resets[resets.length - 1]);
    expect(full[0].secureJsonFields).toEqual({ tlsCACert: false });
    expect(full[0].secureJsonData).toEqual({ tlsCACert: '' });
  });

  it('adds clusters with their agents and own tokens, and names what is wrong', async () => {
    const full: Settings[] = [];
    render(<Harness initial={settings(['a:1'])} changes={[]} full={full} />);
    // Pasted, not typed key by key: the test stays quick on a busy machine.
    const fill = async (label: string, text: string) => {
      await userEvent.click(screen.getByLabelText(label));
      await userEvent.paste(text);
    };
    await userEvent.click(screen.getByRole('button', { name: 'Add cluster' }));
    await fill('Cluster 1 name', 'east');
    await fill('Cluster 1 agents', '10.1.0.1:50051, 10.1.0.2:50051');
    await fill('Cluster 1 token', 'e');
    await userEvent.tab();
    let last = full[full.length - 1];
    expect(last.jsonData).toEqual({
      agents: ['a:1'],
      clusters: [{ name: 'east', agents: ['10.1.0.1:50051', '10.1.0.2:50051'] }],
    });
    expect(last.secureJsonData).toEqual({ 'token.east': 'e' });
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();

    // A second cluster of the same name, with a bad address: both named once the fields are left.
    await userEvent.click(screen.getByRole('button', { name: 'Add cluster' }));
    await fill('Cluster 2 name', 'east');
    await fill('Cluster 2 agents', '10.2.0.1');
    await userEvent.tab();
    expect(screen.getAllByRole('alert').map((a) => a.textContent)).toEqual([
      'Another cluster is named "east"',
      '10.2.0.1: Add the port: HOST:PORT, e.g. 127.0.0.1:50051',
    ]);

    // Removing a cluster drops it and its stored token.
    await userEvent.click(screen.getByRole('button', { name: 'Remove cluster 1' }));
    last = full[full.length - 1];
    expect(last.jsonData.clusters).toEqual([{ name: 'east', agents: ['10.2.0.1'] }]);
    expect(last.secureJsonFields).toEqual({ 'token.east': false });
    expect(screen.getByLabelText('Cluster 1 agents')).toHaveValue('10.2.0.1');
  });
});
