import { DataSourceSettings } from '@grafana/data';

import { KindlingOptions, KindlingSecureOptions } from './types';

type Settings = DataSourceSettings<KindlingOptions, KindlingSecureOptions>;

/** `options` with the stored secret `key` dropped (reset, or its owner removed). */
export function withoutSecret(options: Settings, key: keyof KindlingSecureOptions): Settings {
  return {
    ...options,
    secureJsonFields: { ...options.secureJsonFields, [key]: false },
    secureJsonData: { ...options.secureJsonData, [key]: '' },
  };
}
