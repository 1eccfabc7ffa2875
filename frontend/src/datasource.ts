import {
  CoreApp,
  DataQueryRequest,
  DataQueryResponse,
  DataSourceInstanceSettings,
  DataSourceVariableSupport,
  ScopedVars,
} from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv } from '@grafana/runtime';
import { Observable } from 'rxjs';
import { map } from 'rxjs/operators';

import { Schema } from './completion';
import { postProcessFrame } from './frames';
import { DEFAULT_QUERY, interpolateQuery, isRunnable } from './query';
import { KindlingOptions, KindlingQuery } from './types';

/**
 * Queries go to the Rust backend (`gpx_kindling`) through Grafana's /api/ds/query; this class
 * only prepares them. Logic lives in ./query so that it can be tested without Grafana.
 */
export class DataSource extends DataSourceWithBackend<KindlingQuery, KindlingOptions> {
  constructor(instanceSettings: DataSourceInstanceSettings<KindlingOptions>) {
    super(instanceSettings);
    this.variables = new VariableSupport();
  }

  getDefaultQuery(_app: CoreApp): Partial<KindlingQuery> {
    return { ...DEFAULT_QUERY };
  }

  filterQuery(query: KindlingQuery): boolean {
    return isRunnable(query);
  }

  applyTemplateVariables(query: KindlingQuery, scopedVars: ScopedVars): KindlingQuery {
    return interpolateQuery(query, scopedVars, getTemplateSrv());
  }

  private schema?: Promise<Schema>;

  /** The tables and columns the agents serve (the backend's `schema` resource), fetched once. */
  getSchema(): Promise<Schema> {
    if (!this.schema) {
      this.schema = this.getResource<Schema>('schema');
      // A failed fetch is retried next time instead of being remembered.
      this.schema.catch(() => (this.schema = undefined));
    }
    return this.schema;
  }

  /** The backend's frames, with what only the browser can add (see ./frames). */
  query(request: DataQueryRequest<KindlingQuery>): Observable<DataQueryResponse> {
    const target = { uid: this.uid, name: this.name };
    return super
      .query(request)
      .pipe(map((response) => ({ ...response, data: response.data.map((f) => postProcessFrame(f, target)) })));
  }
}

/**
 * Query variables (the dashboards' `$cluster`): written in the query editor, answered by the
 * backend like a panel's query; Grafana takes the values of the first field.
 */
export class VariableSupport extends DataSourceVariableSupport<DataSource> {}
