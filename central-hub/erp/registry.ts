import type { Logger } from 'pino';
import type { ErpConfig } from './config.ts';
import type { ErpAdapter } from './erp-adapter.ts';
import { createD365MesAdapter } from './d365-mes/d365-mes-adapter.ts';
import { createOdooAdapter } from './odoo/odoo-adapter.ts';
import { createRestAdapter } from './rest/rest-adapter.ts';
import { createSapOdataAdapter } from './sap-odata/sap-odata-adapter.ts';

/**
 * The one place that knows every adapter: builds the adapter the hub's `erp:` section names.
 * The config must have been parsed by erpConfigSchema and had its secrets resolved (resolveSecrets).
 * Building connects nothing; the first call (or healthcheck) does.
 */
export function createAdapter(config: ErpConfig, deps: { logger?: Logger } = {}): ErpAdapter {
  switch (config.type) {
    case 'sap-odata':
      return createSapOdataAdapter(config, deps);
    case 'd365-mes':
      return createD365MesAdapter(config, deps);
    case 'odoo':
      return createOdooAdapter(config, deps);
    case 'rest':
      return createRestAdapter(config, deps);
  }
}
