import React, { useState } from 'react';
import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';

import type { DataSource } from '../datasource';
import { KindlingQuery } from '../types';
import { QueryEditor } from './QueryEditor';

const initial: KindlingQuery = {
  refId: 'A',
  queryType: 'sql',
  rawSql: 'SELECT 1',
  format: 'table',
};

/** Keeps the query in state as Grafana's panel editor does, recording changes and runs. */
function Harness({ changes, onRunQuery }: { changes: KindlingQuery[]; onRunQuery: () => void }) {
  const [query, setQuery] = useState(initial);
  return (
    <QueryEditor
      datasource={{} as DataSource}
      query={query}
      onChange={(next) => {
        changes.push(next);
        setQuery(next);
      }}
      onRunQuery={onRunQuery}
    />
  );
}

describe('QueryEditor', () => {
  it('calls onChange with the new rawSql and runs the query on blur', async () => {
    const changes: KindlingQuery[] = [];
    const onRunQuery = jest.fn();
    render(<Harness changes={changes} onRunQuery={onRunQuery} />);
    const sql = screen.getByRole('textbox', { name: 'SQL' });

    await userEvent.clear(sql);
    await userEvent.type(sql, 'SELECT count(*) FROM flows');
    expect(onRunQuery).not.toHaveBeenCalled();
    await userEvent.tab();

    expect(changes[changes.length - 1]).toEqual({ ...initial, rawSql: 'SELECT count(*) FROM flows' });
    expect(sql).toHaveValue('SELECT count(*) FROM flows');
    expect(onRunQuery).toHaveBeenCalledTimes(1);
  });

  it('switches the format to time series and runs the query', async () => {
    const changes: KindlingQuery[] = [];
    const onRunQuery = jest.fn();
    render(<Harness changes={changes} onRunQuery={onRunQuery} />);
    expect(screen.getByRole('radio', { name: 'Table' })).toBeChecked();

    await userEvent.click(screen.getByRole('radio', { name: 'Time series' }));

    expect(changes).toEqual([{ ...initial, format: 'time_series' }]);
    expect(screen.getByRole('radio', { name: 'Time series' })).toBeChecked();
    expect(onRunQuery).toHaveBeenCalledTimes(1);
  });
});

describe('QueryEditor query types', () => {
  it('switches to a service map, hides the SQL and saves the filters', async () => {
    const changes: KindlingQuery[] = [];
    const onRunQuery = jest.fn();
    render(<Harness changes={changes} onRunQuery={onRunQuery} />);
    expect(screen.getByRole('radio', { name: 'SQL' })).toBeChecked();

    await userEvent.click(screen.getByRole('radio', { name: 'Service map' }));
    expect(changes).toEqual([{ ...initial, queryType: 'service_map' }]);
    expect(onRunQuery).toHaveBeenCalledTimes(1);
    expect(screen.queryByRole('textbox', { name: 'SQL' })).toBeNull();

    await userEvent.type(screen.getByRole('textbox', { name: 'Protocol' }), 'http');
    await userEvent.tab();
    expect(changes[changes.length - 1]).toEqual({ ...initial, queryType: 'service_map', protocol: 'http' });
    expect(onRunQuery).toHaveBeenCalledTimes(2);
  });

  it('names the call of a trace by node, connection and start', async () => {
    const changes: KindlingQuery[] = [];
    render(<Harness changes={changes} onRunQuery={jest.fn()} />);
    await userEvent.click(screen.getByRole('radio', { name: 'Call trace' }));

    await userEvent.type(screen.getByRole('textbox', { name: 'Node' }), 'n2');
    await userEvent.type(screen.getByRole('textbox', { name: 'Connection' }), '21');
    await userEvent.type(screen.getByRole('textbox', { name: 'Start (ns)' }), '1700000000000000001');

    expect(changes[changes.length - 1]).toEqual({
      ...initial,
      queryType: 'trace',
      node: 'n2',
      connId: '21',
      ts: '1700000000000000001',
    });
  });
});

describe('QueryEditor builders', () => {
  it('generates the SQL of a view, shows it, and hands it over to the SQL editor', async () => {
    const changes: KindlingQuery[] = [];
    const onRunQuery = jest.fn();
    render(<Harness changes={changes} onRunQuery={onRunQuery} />);

    await userEvent.click(screen.getByRole('radio', { name: 'DNS' }));
    const first = changes[changes.length - 1];
    expect(first.queryType).toBe('dns');
    expect(first.view).toBe('latency');
    expect(first.format).toBe('time_series');
    expect(screen.getByRole('textbox', { name: 'Generated SQL' })).toHaveValue(first.rawSql);

    await userEvent.click(screen.getByRole('radio', { name: 'Failed lookups' }));
    await userEvent.type(screen.getByRole('textbox', { name: 'Node' }), 'n1');
    const last = changes[changes.length - 1];
    expect(last.view).toBe('failures');
    expect(last.format).toBe('table');
    expect(last.rawSql).toContain("FROM dns WHERE $__timeFilter(ts) AND node = 'n1' AND rcode <> 'NOERROR'");
    expect(onRunQuery).toHaveBeenCalledTimes(2);

    await userEvent.click(screen.getByRole('button', { name: 'Edit as SQL' }));
    expect(changes[changes.length - 1]).toEqual({ ...last, queryType: 'sql' });
    expect(screen.getByRole('textbox', { name: 'SQL' })).toHaveValue(last.rawSql);
  });
});

describe('QueryEditor completion', () => {
  it('completes columns of the schema at the cursor', async () => {
    const schema = {
      tables: [
        {
          name: 'calls',
          timeColumn: 'ts',
          columns: [
            { name: 'resource', type: 'Utf8', nullable: false },
            { name: 'role', type: 'Utf8', nullable: false },
          ],
        },
      ],
      functions: [],
      macros: [],
    };
    const datasource = { getSchema: jest.fn(() => Promise.resolve(schema)) } as unknown as DataSource;
    const changes: KindlingQuery[] = [];
    function WithSchema() {
      const [query, setQuery] = useState(initial);
      return (
        <QueryEditor
          datasource={datasource}
          query={query}
          onChange={(next) => {
            changes.push(next);
            setQuery(next);
          }}
          onRunQuery={jest.fn()}
        />
      );
    }
    render(<WithSchema />);
    const sql = screen.getByRole('textbox', { name: 'SQL' });
    await userEvent.clear(sql);
    await userEvent.type(sql, 'SELECT re');

    expect(await screen.findByRole('button', { name: 'resource' })).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'role' })).toBeNull();
    await userEvent.click(screen.getByRole('button', { name: 'resource' }));

    expect(changes[changes.length - 1].rawSql).toBe('SELECT resource');
    expect(datasource.getSchema).toHaveBeenCalledTimes(1);
  });
});
