// The real-browser harness: ConfigEditor and QueryEditor mounted with @grafana/ui as Grafana
// mounts them (under Grafana's global styles, which size every box by its border), state kept
// as Grafana's pages keep it, and that state printed as JSON for the browser test
// (browser.test.mjs) to read. It is not Grafana: no Grafana server can run here.
import React, { useState } from 'react';
import { createRoot } from 'react-dom/client';
import { DataSourceSettings } from '@grafana/data';
import { GlobalStyles } from '@grafana/ui';

import { ConfigEditor } from '../src/components/ConfigEditor';
import { QueryEditor } from '../src/components/QueryEditor';
import type { DataSource } from '../src/datasource';
import { DEFAULT_QUERY } from '../src/query';
import { KindlingOptions, KindlingQuery, KindlingSecureOptions } from '../src/types';
import schema from './schema.json';

type Settings = DataSourceSettings<KindlingOptions, KindlingSecureOptions>;

const initialSettings = {
  id: 1,
  uid: 'kindling',
  name: 'Kindling',
  type: 'kindling-ebpf-datasource',
  jsonData: {},
  secureJsonFields: {},
} as unknown as Settings;

// The schema resource as the backend serves it (written by the browser test from the plugin).
const datasource = { getSchema: () => Promise.resolve(schema) } as unknown as DataSource;

function App() {
  const [options, setOptions] = useState(initialSettings);
  const [query, setQuery] = useState<KindlingQuery>({ refId: 'A', ...DEFAULT_QUERY });
  const [runs, setRuns] = useState(0);
  return (
    <div style={{ padding: 16, width: 1000 }}>
      <GlobalStyles />
      <section id="config">
        <ConfigEditor options={options} onOptionsChange={setOptions} />
      </section>
      <section id="query-editor">
        <QueryEditor
          datasource={datasource}
          query={query}
          onChange={setQuery}
          onRunQuery={() => setRuns((n) => n + 1)}
        />
      </section>
      <pre id="options">{JSON.stringify(options.jsonData)}</pre>
      <pre id="query">{JSON.stringify(query)}</pre>
      <pre id="runs">{runs}</pre>
    </div>
  );
}

createRoot(document.getElementById('root')!).render(<App />);
