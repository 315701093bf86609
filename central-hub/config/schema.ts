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
const percentile = z.enum(['p50', 'p95', 'p99']);
const latencyObjective = z.strictObject({
  /** which percentile of event → ERP document latency is held to the objective */
  percentile: percentile.default('p95'),
  objective: duration,
});
const plantName = z.string().min(1).max(64);
/** transaction types as the store names them: production-confirmation, material-consumption, goods-receipt */
const txType = z.string().regex(/^[a-z][a-z-]{0,63}$/, 'expected a transaction type such as production-confirmation');

/** The SLAs of a plant (monitor/, issue #20). Each is a time: a breach is anything older or slower. */
const slaFields = {
  /** event → ERP document latency over the last monitor.latencyWindow */
  latency: latencyObjective,
  /** per transaction type, instead of `latency` */
  latencyByType: z.record(txType, latencyObjective),
  /** transactions accepted by the hub and not posted (queued, in doubt, held back) for longer */
  acceptedNotCompleted: duration,
  /** no heartbeat for longer */
  agentOffline: duration,
  /** the agent's oldest unsent transaction older than this */
  backlog: duration,
  /** a driver not up for longer */
  driverUnhealthy: duration,
  /** a driver up whose last value is older than this (silent source) */
  dataWatchdog: duration,
  /** an order released in the ERP with no transaction this long after its scheduled start */
  releasedNotStarted: duration,
};
const slaDefaults = z
  .strictObject({
    latency: latencyObjective.prefault({ objective: '5m' }),
    latencyByType: slaFields.latencyByType.default({}),
    acceptedNotCompleted: duration.prefault('15m'),
    agentOffline: duration.prefault('5m'),
    backlog: duration.prefault('15m'),
    driverUnhealthy: duration.prefault('2m'),
    dataWatchdog: duration.prefault('10m'),
    releasedNotStarted: duration.prefault('30m'),
  })
  .prefault({});
const slaPlant = z.strictObject(Object.fromEntries(Object.entries(slaFields).map(([k, v]) => [k, v.optional()])) as { [K in keyof typeof slaFields]: z.ZodOptional<(typeof slaFields)[K]> });

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
    /** business monitoring (monitor/, docs/MONITORING.md): SLAs with defaults, per plant overrides */
    monitor: z
      .strictObject({
        /** how often the SLA checks run (their results are served from the last run) */
        interval: duration.prefault('30s'),
        /** the latency percentiles cover postings of this last stretch of time */
        latencyWindow: duration.prefault('1h'),
        /** at most this many transactions named per breach */
        keysPerBreach: z.number().int().min(1).max(1000).default(20),
        sla: slaDefaults,
        /** reconciliation: per order and operation, the hub's postings against the documents the ERP holds */
        reconciliation: z
          .strictObject({
            enabled: z.boolean().default(true),
            interval: duration.prefault('15m'),
            /** orders with a transaction received within this are reconciled each round */
            activeWithin: duration.prefault('1d'),
            maxOrders: z.number().int().min(1).max(100_000).default(5000),
            /** a quantity difference per operation up to this is not drift */
            tolerance: z.number().nonnegative().default(0),
          })
          .prefault({}),
        /** released-not-started: the ERP's released orders, read per plant through the adapter and cached */
        releasedOrders: z
          .strictObject({
            enabled: z.boolean().default(true),
            interval: duration.prefault('5m'),
            /** orders whose scheduled start is older than this are not read */
            lookback: duration.prefault('1d'),
            /** the plants to read; default: every plant of a registered agent */
            plants: z.array(plantName).max(1000).optional(),
          })
          .prefault({}),
        /** per plant: any SLA of `sla`, replacing the default for that plant */
        plants: z.record(plantName, slaPlant).default({}),
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
