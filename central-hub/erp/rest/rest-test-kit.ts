import { parseConfig, resolveSecrets } from '../../../contracts/index.ts';
import type { ErpAdapter } from '../erp-adapter.ts';
import { restConfigSchema } from './config.ts';
import { createRestAdapter } from './rest-adapter.ts';
import { REST_SIM_SIGNING_SECRET, REST_SIM_TOKEN } from './rest-simulator.ts';

/** The rest adapter configured for the simulator, for tests. */
export function restTestAdapter(url: string, timeoutMs: number, extra: Record<string, unknown> = {}): ErpAdapter {
  const config = resolveSecrets(
    parseConfig(restConfigSchema, {
      type: 'rest',
      post: { url: `${url}/postings`, body: { key: '{{key}}', kind: '{{type}}', order: '{{tx.data.order}}', transaction: '{{tx}}' } },
      lookup: { type: 'get', url: `${url}/postings?key={{key}}`, keyPath: 'key' },
      auth: { type: 'bearer', token: '${REST_TOKEN}' },
      signature: { secret: '${REST_SIGNING}' },
      timeout: timeoutMs,
      ...extra,
    }),
    { env: { REST_TOKEN: REST_SIM_TOKEN, REST_SIGNING: REST_SIM_SIGNING_SECRET, WRONG: 'not-the-secret' }, readFile: () => '' },
  );
  return createRestAdapter(config);
}
