import { z } from 'zod';
import { byteSize, duration, secretRef, urlWithScheme } from '../../../contracts/index.ts';

const statusList = z.array(z.number().int().min(100).max(599));
/** a dot path into JSON, e.g. `data.id` or `items.0.number` */
const jsonPath = z.string().regex(/^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/, 'expected a dot path such as data.id');
const template = z.string().min(1);

export const restConfigSchema = z
  .strictObject({
    type: z.literal('rest'),
    post: z.strictObject({
      /** URL template: {{type}}, {{key}}, {{externalId}}, {{tx.data.order}} ... (values are URL-encoded) */
      url: template,
      method: z.enum(['POST', 'PUT']).default('POST'),
      /**
       * JSON body template. A string that is exactly "{{path}}" becomes the value at that path (numbers
       * stay numbers); "{{path}}" inside a longer string is interpolated. Default: the transaction itself.
       */
      body: z.json().optional(),
      headers: z.record(z.string(), z.string()).default({}),
    }),
    /** where the document number is in a success answer */
    erpRef: z
      .union([
        z.strictObject({ from: z.literal('body'), path: jsonPath }),
        z.strictObject({ from: z.literal('header'), name: z.string().min(1) }),
        /** the receiver answers without a number (204): the idempotency key is the reference */
        z.strictObject({ from: z.literal('key') }),
      ])
      .prefault({ from: 'body', path: 'id' }),
    /** how to find a posting after an unclear outcome */
    lookup: z.union([
      z.strictObject({
        type: z.literal('get'),
        /** URL template, e.g. https://mes.example.com/api/postings?key={{key}} */
        url: template,
        /** statuses that mean "found" (the body then holds the reference at erpRefPath) */
        found: statusList.default([200]),
        notFound: statusList.default([404]),
        /** path of the reference in the lookup answer; an array answer uses its first element; empty array = not found */
        erpRefPath: jsonPath.default('id'),
        /**
         * path of the idempotency key in the lookup answer. Set, the answer must prove it is this posting:
         * an array answer uses the element with this key (none = not found), and a single record with
         * another key or none is refused as a bad answer (retried, never taken as this posting's document)
         */
        keyPath: jsonPath.optional(),
      }),
      /** the receiver itself dedupes on Idempotency-Key: re-posting is safe, so lookup answers "not found" */
      z.strictObject({ type: z.literal('receiver-dedupes') }),
    ]),
    /**
     * Monitoring (released-not-started): a GET that lists the orders released for a plant. URL template with
     * {{plant}} and {{since}} (ISO 8601); the answer is an array (or one at itemsPath) of orders.
     */
    releasedOrders: z
      .strictObject({
        url: template,
        itemsPath: jsonPath.optional(),
        orderPath: jsonPath.default('order'),
        workCenterPath: jsonPath.default('workCenter'),
        scheduledStartPath: jsonPath.default('scheduledStart'),
      })
      .optional(),
    auth: z
      .union([
        z.strictObject({ type: z.literal('none') }),
        z.strictObject({ type: z.literal('bearer'), token: secretRef }),
        z.strictObject({ type: z.literal('basic'), username: z.string().min(1), password: secretRef }),
      ])
      .prefault({ type: 'none' }),
    idempotencyHeader: z.string().min(1).default('Idempotency-Key'),
    /** HMAC-SHA256 over `<timestamp>.<body>`, sent as `t=<unix seconds>,sha256=<hex>` */
    signature: z
      .strictObject({
        secret: secretRef,
        header: z.string().min(1).default('X-PlantBridge-Signature'),
      })
      .optional(),
    /** what each status means; a status in none of the lists is in doubt for a 2xx/5xx and transient otherwise */
    statuses: z
      .strictObject({
        success: statusList.default([200, 201, 202]),
        business: statusList.default([400, 404, 409, 422]),
        transient: statusList.default([401, 403, 408, 423, 425, 429, 503]),
        inDoubt: statusList.default([500, 502, 504]),
      })
      .prefault({}),
    /** where a business error's code and message are in the answer (first path that resolves wins) */
    errorCodePaths: z.array(jsonPath).default(['error.code', 'code']),
    errorMessagePaths: z.array(jsonPath).default(['error.message', 'message', 'error']),
    timeout: duration.prefault('30s'),
    concurrency: z.number().int().min(1).max(256).default(8),
    maxResponseSize: byteSize.prefault('1MB'),
    /** used only by healthcheck: a GET that answers 2xx when the receiver is up (default: the lookup of a random key) */
    healthUrl: urlWithScheme(['http', 'https'], 'https://mes.example.com/health').optional(),
  })
  .meta({ description: 'A generic webhook: templated JSON, Idempotency-Key, HMAC signature, configurable status classes' });

export type RestConfig = z.infer<typeof restConfigSchema>;
