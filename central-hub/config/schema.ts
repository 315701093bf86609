import { z } from 'zod';
import { byteSize, duration, secretRef, urlWithScheme, type Resolved } from '../../contracts/index.ts';
import { erpConfigSchema } from '../erp/config.ts';

/**
 * hub.yaml — the single source of truth for the hub's configuration; `config/schema/hub.schema.json` is
 * generated from it (npm run gen:schema).
 */
const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** TLS 1.3's suites and TLS 1.2's ECDHE + AEAD suites: every one forward-secret and authenticated-encryption. */
export const FORWARD_SECRET_CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export const hubConfigSchema = z
  .strictObject({
    hub: z.strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(8080),
      /** where the embedded SQLite store and other files live; relative to the config file */
      dataDir: z.string().min(1).default('./data/hub'),
      tls: z
        .strictObject({
          cert: z.string().min(1),
          key: z.string().min(1),
          /** the oldest TLS version accepted */
          minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
          /** OpenSSL cipher list; the default has forward-secret AEAD suites only (no RSA key exchange, no CBC, no SHA-1) */
          ciphers: z.string().min(1).default(FORWARD_SECRET_CIPHERS),
          /** mutual TLS for agents: the CA that signs agents' client certificates (subject CN = agent id); relative to the config file */
          clientCa: z.string().min(1).optional(),
        })
        .optional(),
      /** plain HTTP on a non-loopback address must be asked for explicitly (e.g. behind a TLS-terminating proxy) */
      allowPlainHttp: z.boolean().default(false),
      bodyLimit: byteSize.prefault('8MiB'),
      /** ingest requests per second per agent (token bucket, burst = 2x) */
      rateLimitPerAgent: z.number().positive().default(50),
    }),
    log: z.strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info') }).prefault({}),
    store: z
      .discriminatedUnion('type', [
        z.strictObject({ type: z.literal('sqlite'), path: z.string().min(1).optional() }),
        z.strictObject({ type: z.literal('postgres'), url: secretRef, poolSize: z.number().int().min(1).max(100).default(10) }),
      ])
      .default({ type: 'sqlite' }),
    /**
     * Agents allowed to write, each with a static token (a secret reference). The hub keeps only a hash.
     * Enrollment with one-time tokens replaces this list for larger fleets.
     */
    agents: z
      .array(
        z.strictObject({
          id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/, 'expected letters, digits, dot, dash or underscore'),
          plants: z.array(z.string().min(1).max(64)).min(1),
          token: secretRef,
        }),
      )
      .default([]),
    erp: erpConfigSchema,
    /** operators of the admin API (dead letters, audit): each with a bearer token reference */
    admin: z
      .strictObject({
        operators: z
          .array(z.strictObject({ name: z.string().regex(/^[A-Za-z0-9_.@-]{1,100}$/, 'expected a name such as jane.doe'), token: secretRef }))
          .default([]),
      })
      .prefault({}),
    posting: z
      .strictObject({
        concurrency: z.number().int().min(1).max(256).default(4),
        maxAttempts: z.number().int().min(1).max(1000).default(20),
        retryMaxDelay: duration.prefault('5m'),
        lease: duration.prefault('2m'),
        /** the least wait before a posting whose outcome is unknown (ERP timeout) is looked up, then re-sent if absent */
        inDoubtWait: duration.prefault('1m'),
      })
      .prefault({}),
    fleet: z
      .strictObject({
        /** an agent with no heartbeat for this long is offline */
        offlineAfter: duration.prefault('45s'),
        /** a backlog older than this makes an agent degraded */
        backlogSla: duration.prefault('15m'),
      })
      .prefault({}),
  })
  .superRefine((c, ctx) => {
    if (!c.hub.tls && !LOOPBACK.has(c.hub.host) && !c.hub.allowPlainHttp) {
      ctx.addIssue({
        code: 'custom',
        path: ['hub', 'tls'],
        message: `the hub listens on ${c.hub.host} without TLS: configure hub.tls (cert, key), or set hub.allowPlainHttp: true behind a TLS-terminating proxy`,
      });
    }
    const seen = new Set<string>();
    c.agents.forEach((a, i) => {
      if (seen.has(a.id)) ctx.addIssue({ code: 'custom', path: ['agents', i, 'id'], message: `duplicate agent id "${a.id}"` });
      seen.add(a.id);
    });
  });

export type HubConfig = Resolved<z.infer<typeof hubConfigSchema>>;
export { urlWithScheme };
