import { z } from 'zod';
import { sapOdataConfigSchema } from './sap-odata/config.ts';

/** The hub's `erp:` section: one adapter, chosen by `type`. Each adapter folder owns its schema. */
export const erpConfigSchema = z.discriminatedUnion('type', [sapOdataConfigSchema]);
export type ErpConfig = z.infer<typeof erpConfigSchema>;
