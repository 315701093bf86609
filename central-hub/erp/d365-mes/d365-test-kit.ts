import { parseConfig, resolveSecrets } from '../../../contracts/index.ts';
import type { ErpAdapter } from '../erp-adapter.ts';
import { d365MesConfigSchema } from './config.ts';
import { createD365MesAdapter } from './d365-mes-adapter.ts';
import { D365_SIM_CLIENT, D365_TOKEN_PATH } from './d365-simulator.ts';

/** The d365-mes adapter configured for the simulator, for tests. */
export function d365TestAdapter(url: string, timeoutMs: number, extra: Record<string, unknown> = {}): ErpAdapter {
  const config = resolveSecrets(
    parseConfig(d365MesConfigSchema, {
      type: 'd365-mes',
      url,
      company: 'USMF',
      auth: { type: 'oauth-client-credentials', tokenUrl: `${url}${D365_TOKEN_PATH}`, clientId: D365_SIM_CLIENT.clientId, clientSecret: '${D365_SECRET}' },
      timeout: timeoutMs,
      ...extra,
    }),
    { env: { D365_SECRET: D365_SIM_CLIENT.clientSecret, WRONG: 'not-the-secret' }, readFile: () => '' },
  );
  return createD365MesAdapter(config);
}
