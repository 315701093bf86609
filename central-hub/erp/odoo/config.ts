import { z } from 'zod';
import { byteSize, duration, secretRef, urlWithScheme } from '../../../contracts/index.ts';

const fieldName = z.string().regex(/^[a-z_][a-z0-9_]*$/, 'expected an Odoo field name such as x_plantbridge_keys');

export const odooConfigSchema = z
  .strictObject({
    type: z.literal('odoo'),
    url: urlWithScheme(['https', 'http'], 'https://mycompany.odoo.com'),
    /** json2: POST /json/2/<model>/<method> with a bearer API key (Odoo 19+); jsonrpc: /jsonrpc execute_kw (older, deprecated in 19) */
    protocol: z.enum(['json2', 'jsonrpc']).default('json2'),
    /** database name: X-Odoo-Database for json2 (needed when several share a host), required for jsonrpc */
    database: z.string().min(1).optional(),
    /** the user's login, jsonrpc only (json2 knows the user from the API key) */
    login: z.string().min(1).optional(),
    apiKey: secretRef,
    /** a Text field (Odoo Studio or a module) on mrp.production and stock.move holding the UUIDv5 of each posted key, one per line */
    referenceField: fieldName.default('x_plantbridge_keys'),
    /** the component move's done quantity: `quantity` since 17, `quantity_done` up to 16 */
    quantityField: fieldName.default('quantity'),
    /** how many keys the reference field keeps per record (the oldest drop out; lookups are for recent postings) */
    keepKeys: z.number().int().min(10).max(10000).default(500),
    /** call button_mark_done after a final confirmation; a returned wizard is "needs attention", never success */
    markDoneOnFinal: z.boolean().default(true),
    /** context for button_mark_done, e.g. {skip_backorder: true} to close without a backorder */
    markDoneContext: z.record(z.string(), z.union([z.boolean(), z.number(), z.string(), z.array(z.number())])).default({}),
    /**
     * Monitoring (released-not-started): mrp.production in state `confirmed` per plant. plantField: the
     * domain path that holds the plant (default the operation type's warehouse code); plants: hub plant ->
     * its value there (unmapped: the plant as it is); startField: `date_start` since 17, `date_planned_start` before.
     */
    releasedOrders: z
      .strictObject({
        plantField: z.string().regex(/^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$/, 'expected a field path such as picking_type_id.warehouse_id.code').default('picking_type_id.warehouse_id.code'),
        plants: z.record(z.string(), z.string().min(1)).default({}),
        startField: fieldName.default('date_start'),
      })
      .prefault({}),
    timeout: duration.prefault('30s'),
    concurrency: z.number().int().min(1).max(64).default(4),
    maxResponseSize: byteSize.prefault('4MB'),
  })
  .superRefine((c, ctx) => {
    if (c.protocol === 'jsonrpc') {
      if (!c.database) ctx.addIssue({ code: 'custom', path: ['database'], message: 'is required with protocol jsonrpc' });
      if (!c.login) ctx.addIssue({ code: 'custom', path: ['login'], message: 'is required with protocol jsonrpc' });
    }
  })
  .meta({ description: 'Odoo MRP: mrp.production and its component moves over JSON-2 or JSON-RPC' });

export type OdooConfig = z.infer<typeof odooConfigSchema>;
