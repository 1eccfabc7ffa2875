import { CoreApp, DataSourceInstanceSettings, ScopedVars } from '@grafana/data';
import { setTemplateSrv, TemplateSrv } from '@grafana/runtime';

import { DataSource } from './datasource';
import { KindlingOptions, KindlingQuery } from './types';

const settings = {
  id: 1,
  uid: 'kindling',
  type: 'kindling-ebpf-datasource',
  name: 'Kindling',
  access: 'proxy',
  readOnly: false,
  jsonData: { agents: ['127.0.0.1:50051'] },
  meta: { id: 'kindling-ebpf-datasource' },
} as unknown as DataSourceInstanceSettings<KindlingOptions>;

const query: KindlingQuery = {
  refId: 'A',
  queryType: 'sql',
  rawSql: 'SELECT * FROM flows WHERE dst_port = $port',
  format: 'time_series',
};

describe('DataSource', () => {
  const ds = new DataSource(settings);

  it('starts new queries with the latest flows as a table', () => {
    expect(ds.getDefaultQuery(CoreApp.PanelEditor)).toEqual({
      queryType: 'sql',
      rawSql: 'SELECT * FROM flows ORDER BY end_ts DESC LIMIT 100',
      format: 'table',
    });
  });

  it('answers query variables with the query editor and the backend', () => {
    expect(ds.variables?.getType()).toBe('datasource');
  });

  it('drops hidden and empty queries', () => {
    expect(ds.filterQuery(query)).toBe(true);
    expect(ds.filterQuery({ ...query, hide: true })).toBe(false);
    expect(ds.filterQuery({ ...query, rawSql: '  ' })).toBe(false);
  });

  it('interpolates rawSql with Grafana template service', () => {
    const scopedVars: ScopedVars = { port: { text: '443', value: '443' } };
    const replace = jest.fn((sql?: string, vars?: ScopedVars) => (sql ?? '').replace('$port', String(vars?.port?.value)));
    setTemplateSrv({ replace } as unknown as TemplateSrv);

    expect(ds.applyTemplateVariables(query, scopedVars)).toEqual({
      ...query,
      rawSql: 'SELECT * FROM flows WHERE dst_port = 443',
    });
    expect(replace).toHaveBeenCalledWith('SELECT * FROM flows WHERE dst_port = $port', scopedVars);
  });
});
