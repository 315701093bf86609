import { z } from 'zod';
import { sapOdataConfigSchema } from './sap-odata/config.ts';
import { restConfigSchema } from './rest/config.ts';
import { d365MesConfigSchema } from './d365-mes/config.ts';
import { odooConfigSchema } from './odoo/config.ts';

/** The hub's `erp:` section: one adapter, chosen by `type`. Each adapter folder owns its schema. */
export const erpConfigSchema = z.discriminatedUnion('type', [sapOdataConfigSchema, d365MesConfigSchema, odooConfigSchema, restConfigSchema]);
export type ErpConfig = z.infer<typeof erpConfigSchema>;
