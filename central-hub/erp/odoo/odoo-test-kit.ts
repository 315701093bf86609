import { parseConfig, resolveSecrets } from '../../../contracts/index.ts';
import type { ErpAdapter } from '../erp-adapter.ts';
import { odooConfigSchema } from './config.ts';
import { createOdooAdapter } from './odoo-adapter.ts';
import { ODOO_SIM_API_KEY, ODOO_SIM_DB, ODOO_SIM_LOGIN } from './odoo-simulator.ts';

/** The odoo adapter configured for the simulator, for tests. */
export function odooTestAdapter(url: string, timeoutMs: number, extra: Record<string, unknown> = {}): ErpAdapter {
  const config = resolveSecrets(
    parseConfig(odooConfigSchema, { type: 'odoo', url, apiKey: '${ODOO_KEY}', database: ODOO_SIM_DB, login: ODOO_SIM_LOGIN, timeout: timeoutMs, ...extra }),
    { env: { ODOO_KEY: ODOO_SIM_API_KEY, WRONG: 'not-the-key' }, readFile: () => '' },
  );
  return createOdooAdapter(config);
}
