import { readFileSync } from 'node:fs';
import type { SecureContextOptions, Server as TlsServer } from 'node:tls';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { ErrorCodes, PlantBridgeError, VERSION, type ErrorBody, type Transaction } from '../contracts/index.ts';
import { createLogger } from '../contracts/log.ts';
import { adminRoutes } from './api/admin.ts';
import { tokenHash } from './api/auth.ts';
import { enrollRoutes } from './api/enroll.ts';
import { fleetRoutes } from './api/fleet.ts';
import { acceptGzip, isZlibError } from './api/gzip.ts';
import { healthRoutes } from './api/health.ts';
import { heartbeatRoutes } from './api/heartbeat.ts';
import { ingestRoutes } from './api/ingest.ts';
import { metricsRoutes } from './api/metrics.ts';
import { monitorRoutes } from './api/monitor.ts';
import { outcomesRoutes } from './api/outcomes.ts';
import { rateLimitEveryRoute } from './api/rate-limit.ts';
import type { HubConfig } from './config/schema.ts';
import { dashboardRoutes } from './dashboard/routes.ts';
import type { ErpAdapter } from './erp/erp-adapter.ts';
import { createAdapter } from './erp/registry.ts';
import type { HubContext } from './hub-context.ts';
import { createHubMetrics } from './metrics.ts';
import { Reconciler } from './monitor/reconciliation.ts';
import { ReleasedOrdersWatch } from './monitor/released-orders.ts';
import { SlaEngine } from './monitor/sla-engine.ts';
import { setSlaMetrics } from './monitor/sla-metrics.ts';
import { PostingService } from './posting/posting-service.ts';
import type { HubStore, PostingOutcome } from './store/hub-store.ts';
import { openHubStore, type StoreRuntime } from './store/open-store.ts';
import { SqliteHubStore, type CheckpointerStart } from './store/sqlite/sqlite-store.ts';

/** The body limit of a route that declares none (ingest declares hub.bodyLimit, enroll 4 KiB). */
export const ROUTE_BODY_LIMIT = 1024 * 1024;

export interface HubOptions {
  config: HubConfig;
  log?: Logger;
  /** inject a store (tests, the PostgreSQL store); default: from config, opened by open() */
  store?: HubStore;
  /** inject an adapter; default: from config.erp */
  adapter?: ErpAdapter;
  /** where the SQLite store's addon and checkpoint thread are (the single executable's entry hands them in) */
  storeRuntime?: StoreRuntime;
  /** called for every ERP outcome recorded (the demo prints these) */
  onOutcome?: (tx: Transaction, outcome: PostingOutcome) => void;
}

export interface Hub {
  readonly app: FastifyInstance;
  /** the open store (after open()) */
  readonly store: HubStore;
  /** the posting service (after open(); it runs after start()) */
  readonly posting: PostingService;
  readonly log: Logger;
  /** business monitoring: the SLA checks and the released orders (monitor/) */
  readonly monitor: HubContext['monitor'];
  /** http(s)://host:port once listening */
  readonly url: string;
  /**
   * Opens and migrates the store and registers hub.yaml's static agents: enough for `app.inject()`. Posts
   * nothing and listens on nothing. Idempotent; start() calls it.
   */
  open(): Promise<void>;
  /** open(), then starts posting and listens */
  start(): Promise<void>;
  /** stops listening, lets ERP calls in flight finish and record, closes the store */
  stop(): Promise<void>;
}

/**
 * Builds the hub from a validated config without side effects (STYLE.md: build apart from run): every
 * route is registered here, nothing is opened, connected or listened on. Routes read the store from the
 * HubContext per request; open() (for `inject()` tests) or start() opens it.
 */
export function buildHub(opts: HubOptions): Hub {
  const { config } = opts;
  const log = opts.log ?? createLogger({ level: config.log.level, base: { component: 'hub' } });
  const adapter = opts.adapter ?? createAdapter(config.erp, { logger: log.child({ component: 'erp' }) });
  let store = opts.store;
  let opened: Promise<void> | undefined;
  let posting: PostingService | undefined;
  let url = '';

  const metrics = createHubMetrics();
  const monitorLog = log.child({ component: 'monitor' });
  const released = new ReleasedOrdersWatch({ config, adapter, store: () => ctx.store, log: monitorLog });
  const reconciler = new Reconciler({ config, adapter, store: () => ctx.store, log: monitorLog });
  const sla = new SlaEngine({ config, log: monitorLog, store: () => ctx.store, extraBreaches: (now) => released.breaches(now) });
  sla.onReport((r) => setSlaMetrics(metrics.sla, r));
  const ctx: HubContext = {
    config,
    log,
    metrics,
    adapter,
    get store() {
      if (!store || !opened) throw new PlantBridgeError('INTERNAL', 'hub not open: call open() or start() first');
      return store;
    },
    fleet: { offlineAfterMs: config.fleet.offlineAfter, backlogSlaMs: config.fleet.backlogSla },
    monitor: { sla, released, reconciler },
    notifyAccepted: () => posting?.notify(),
  };

  const app = createApp(config, log);
  // first: every route registered after this has its rate limits (api/rate-limit.ts)
  rateLimitEveryRoute(app, {
    onLimited: (route, by) => {
      ctx.metrics.rateLimited.inc({ route, by });
      if (route === '/v1/ingest') ctx.metrics.rejected.inc({ code: 'RATE_LIMITED' });
    },
  });
  // hub.bodyLimit is ingest's (batches); every other route takes small bodies unless it declares its own limit
  app.addHook('onRoute', (route) => {
    route.bodyLimit ??= ROUTE_BODY_LIMIT;
  });
  acceptGzip(app);
  ingestRoutes(app, ctx);
  heartbeatRoutes(app, ctx);
  outcomesRoutes(app, ctx);
  enrollRoutes(app, ctx);
  fleetRoutes(app, ctx);
  adminRoutes(app, ctx);
  healthRoutes(app, ctx);
  metricsRoutes(app, ctx);
  monitorRoutes(app, ctx);
  dashboardRoutes(app, ctx);

  const open = async (): Promise<void> => {
    store ??= await openHubStore(config, opts.storeRuntime);
    const s = store;
    await s.migrate();
    await registerStaticAgents(s, config, log);
    posting = new PostingService({
      store: s,
      adapter,
      log: log.child({ component: 'posting' }),
      metrics: ctx.metrics,
      concurrency: config.posting.concurrency,
      maxAttempts: config.posting.maxAttempts,
      retryMaxDelayMs: config.posting.retryMaxDelay,
      leaseMs: config.posting.lease,
      inDoubtWaitMs: config.posting.inDoubtWait,
      ...(opts.onOutcome ? { onOutcome: opts.onOutcome } : {}),
    });
  };

  const hub: Hub = {
    app,
    get store() {
      return ctx.store;
    },
    get posting() {
      if (!posting) throw new PlantBridgeError('INTERNAL', 'hub not open: call open() or start() first');
      return posting;
    },
    log,
    monitor: ctx.monitor,
    get url() {
      return url;
    },
    open() {
      opened ??= open();
      return opened;
    },
    async start() {
      await hub.open();
      const s = ctx.store;
      hub.posting.start();
      sla.start();
      released.start();
      reconciler.start();
      // the certificate files are read now, not at build
      if (config.hub.tls) (app.server as unknown as TlsServer).setSecureContext(secureContextOptions(config.hub.tls));
      const address = await app.listen({ host: config.hub.host, port: config.hub.port });
      url = address.replace('[::1]', '127.0.0.1');
      // the SQLite store's checkpoints: on a thread of their own, or (it could not start) on the event loop
      const checkpoints =
        s instanceof SqliteHubStore
          ? await Promise.race([s.checkpointerStarted(), new Promise<CheckpointerStart>((r) => setTimeout(() => r({ where: 'starting' }), 5000).unref())])
          : undefined;
      if (checkpoints?.where === 'event-loop') log.warn({ reason: checkpoints.reason }, 'SQLite checkpoints run on the event loop: the checkpoint thread could not start');
      log.info({ url, store: s.kind, ...(checkpoints ? { checkpoints: checkpoints.where } : {}), erp: adapter.name, version: VERSION }, 'Hub listening');
    },
    async stop() {
      // close() also works on an app that never listened (it ends inject()-only tests)
      await app.close();
      await sla.stop();
      await released.stop();
      await reconciler.stop();
      await posting?.stop();
      await adapter.close?.();
      await opened?.catch(() => {});
      await store?.close();
    },
  };
  return hub;
}

/** The listener's TLS: certificate, key, the oldest version, the cipher list, and the agents' client CA (read now). */
function secureContextOptions(tls: NonNullable<HubConfig['hub']['tls']>): SecureContextOptions {
  return {
    cert: readFileSync(tls.cert),
    key: readFileSync(tls.key),
    minVersion: tls.minVersion,
    ciphers: tls.ciphers,
    honorCipherOrder: true,
    ...(tls.clientCa ? { ca: readFileSync(tls.clientCa) } : {}),
  };
}

/** Agents listed in hub.yaml with a static token. A revocation outlives restarts: the same token stays refused. */
async function registerStaticAgents(store: HubStore, config: HubConfig, log: Logger): Promise<void> {
  for (const a of config.agents) {
    const hash = tokenHash(a.token.reveal());
    const current = await store.findAgentByTokenHash(hash);
    if (current?.id === a.id && current.revokedAt) {
      log.warn({ agentId: a.id, revokedAt: current.revokedAt }, 'An agent listed in hub.yaml was revoked: its token stays refused. To admit it again, give it a new token in hub.yaml');
      continue;
    }
    await store.upsertAgent({ id: a.id, plants: a.plants, tokenHash: hash });
  }
}

/** The Fastify instance with the hub's error bodies: one shape and one code set for every refusal. */
function createApp(config: HubConfig, log: Logger): FastifyInstance {
  const app = Fastify({
    // per-request lines are noise at info: the api logger speaks from warn up (counts are in /metrics)
    loggerInstance: log.child({ component: 'api' }, { level: log.isLevelEnabled('debug') ? 'debug' : log.isLevelEnabled('warn') ? 'warn' : log.level }) as FastifyBaseLogger,
    bodyLimit: config.hub.bodyLimit,
    // idempotency keys are up to 300 characters: routes such as /tx/:key must take them (default 100)
    routerOptions: { maxParamLength: 1024 },
    // errors the router raises before any route runs get the same body and codes as everything else
    frameworkErrors: (err, req, reply) => {
      const e =
        err.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? new PlantBridgeError('NOT_FOUND', 'no such resource: a path parameter is longer than any id')
          : new PlantBridgeError('SCHEMA_INVALID', `bad request: ${err.message}`);
      const body: ErrorBody = { error: { ...e.toJSON(), correlationId: req.id } };
      void (reply as unknown as FastifyReply).status(ErrorCodes[e.code].http).send(body);
    },
    genReqId: () => `req-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`,
    // an HTTPS server without its certificate yet: start() reads the files and sets them before listening.
    // With hub.tls.clientCa every client is asked for a certificate; one without is let through to the
    // routes (the console's browsers have none) and the agents' routes refuse it (api/mtls.ts).
    ...(config.hub.tls
      ? { https: { minVersion: config.hub.tls.minVersion, ciphers: config.hub.tls.ciphers, honorCipherOrder: true, ...(config.hub.tls.clientCa ? { requestCert: true, rejectUnauthorized: false } : {}) } }
      : {}),
  }) as unknown as FastifyInstance;

  app.setErrorHandler((err: FastifyError | PlantBridgeError, req, reply) => {
    let e: PlantBridgeError;
    if (err instanceof PlantBridgeError) e = err;
    else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') e = new PlantBridgeError('PAYLOAD_TOO_LARGE', `request body exceeds ${req.routeOptions.bodyLimit ?? config.hub.bodyLimit} bytes${req.routeOptions.url === '/v1/ingest' ? '; send smaller batches' : ''}`);
    else if (isZlibError(err)) e = new PlantBridgeError('SCHEMA_INVALID', `body is not valid gzip: ${err.message}`);
    else if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') e = new PlantBridgeError('SCHEMA_INVALID', 'expected content-type application/json');
    else if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || err instanceof SyntaxError || err.statusCode === 400) e = new PlantBridgeError('SCHEMA_INVALID', `body is not valid JSON: ${err.message}`);
    else {
      req.log.error({ err }, 'Unexpected error while handling a request');
      e = new PlantBridgeError('INTERNAL', 'internal error; see the hub log for the correlation id');
    }
    const body: ErrorBody = { error: { ...e.toJSON(), correlationId: e.correlationId ?? req.id } };
    if (e.code === 'UNAUTHENTICATED') reply.header('www-authenticate', 'Bearer');
    if (e.code === 'PAYLOAD_TOO_LARGE') reply.header('connection', 'close');
    void reply.status(ErrorCodes[e.code].http).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}`, retriable: false, correlationId: req.id } });
  });
  return app;
}
