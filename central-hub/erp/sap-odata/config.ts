import { z } from 'zod';
import { byteSize, duration, secretRef, urlWithScheme } from '../../../contracts/index.ts';

export const sapOdataConfigSchema = z
  .strictObject({
    type: z.literal('sap-odata'),
    /** the system's base URL; service paths are appended (/sap/opu/odata/sap/API_PROD_ORDER_CONFIRMATION_2_SRV) */
    url: urlWithScheme(['http', 'https'], 'https://s4.example.com:44300'),
    client: z.string().regex(/^\d{3}$/, 'expected a three-digit SAP client such as 100').optional(),
    auth: z.union([
      z.strictObject({ type: z.literal('basic'), username: z.string().min(1), password: secretRef }),
      z.strictObject({
        type: z.literal('oauth-client-credentials'),
        tokenUrl: urlWithScheme(['https', 'http'], 'https://auth.example.com/oauth/token'),
        clientId: z.string().min(1),
        clientSecret: secretRef,
        scope: z.string().min(1).optional(),
      }),
    ]),
    /** one deadline per ERP call, waiting for a free connection included */
    timeout: duration.prefault('30s'),
    /** parallel connections to SAP (the posting service's concurrency should not exceed it) */
    concurrency: z.number().int().min(1).max(64).default(4),
    /** answers larger than this are cut off and treated as garbage (never as a success) */
    maxResponseSize: byteSize.prefault('4MB'),
    /** agent plant id -> SAP plant (WERKS, 4 characters); unmapped plants are sent as they are */
    plants: z.record(z.string(), z.string().min(1).max(4)).default({}),
    /**
     * SAP message codes that mean "try again later" (locks), in addition to HTTP 423 and messages that
     * say "locked". M3/897: plant data of the material is locked by a user.
     */
    transientMessageCodes: z.array(z.string().regex(/^[A-Z0-9/_]+\/\d{3}$/, 'expected a SAP message code such as M3/897')).default(['M3/897']),
  })
  .meta({ description: 'SAP S/4HANA OData: API_PROD_ORDER_CONFIRMATION_2_SRV and API_MATERIAL_DOCUMENT_SRV' });

export type SapOdataConfig = z.infer<typeof sapOdataConfigSchema>;
/** what callers may pass: defaults filled in by the schema */
export type SapOdataConfigInput = z.input<typeof sapOdataConfigSchema>;
