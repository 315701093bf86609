import { z } from 'zod';
import { byteSize, duration, secretRef, urlWithScheme } from '../../../contracts/index.ts';

export const d365MesConfigSchema = z
  .strictObject({
    type: z.literal('d365-mes'),
    /** the environment URL, e.g. https://contoso.operations.dynamics.com */
    url: urlWithScheme(['https', 'http'], 'https://contoso.operations.dynamics.com'),
    /** legal entity (DataAreaId), e.g. USMF */
    company: z.string().min(1).max(8),
    messageQueue: z.string().min(1).default('JmgMES3P'),
    auth: z.strictObject({
      type: z.literal('oauth-client-credentials'),
      /** Entra ID v2 token endpoint: https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token */
      tokenUrl: urlWithScheme(['https', 'http'], 'https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token'),
      clientId: z.string().min(1),
      clientSecret: secretRef,
      /** default: <url>/.default */
      scope: z.string().min(1).optional(),
    }),
    /** top-level property of _messageContent that carries the idempotency key (see README: needs the lookup entity) */
    referenceField: z.string().regex(/^[A-Za-z][A-Za-z0-9_]*$/).default('PlantBridgeReference'),
    lookup: z
      .strictObject({
        /** public collection name of the entity exposing the message processor's messages */
        entity: z.string().regex(/^[A-Za-z][A-Za-z0-9_]*$/).default('PlantBridgeMESMessages'),
      })
      .prefault({}),
    /**
     * After SendMessage the message is only Queued. With a wait > 0 the adapter polls its state until
     * Processed (posted) or Failed (rejected with the infolog), and reports "posted, still queued" at the
     * deadline. 0 = return at once (failures then show in D365's MES integration page and reconciliation).
     */
    waitForProcessing: duration.prefault('0s'),
    pollInterval: duration.prefault('2s'),
    /** send ProdProductionOrderEnd after a final confirmation, once D365 has processed it (README: Ending the order) */
    endOrderOnFinal: z.boolean().default(false),
    /** send ProdProductionOrderStart before the first confirmation of an order this hub instance has seen */
    startOrderOnFirstConfirmation: z.boolean().default(false),
    /**
     * Monitoring (released-not-started): production orders in status Released, per plant, from the
     * production order header entity. plants: hub plant -> D365 site (ProductionSiteId); unmapped: as it is.
     */
    releasedOrders: z
      .strictObject({
        entity: z.string().regex(/^[A-Za-z][A-Za-z0-9_]*$/).default('ProductionOrderHeaders'),
        plants: z.record(z.string(), z.string().min(1).max(10)).default({}),
      })
      .prefault({}),
    timeout: duration.prefault('30s'),
    concurrency: z.number().int().min(1).max(64).default(4),
    maxResponseSize: byteSize.prefault('1MB'),
  })
  .meta({ description: 'Dynamics 365 SCM: MES integration API (SysMessageService/SendMessage)' });

export type D365MesConfig = z.infer<typeof d365MesConfigSchema>;
