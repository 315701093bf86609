import { readFileSync } from 'node:fs';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { ErrorCodes, PlantBridgeError, VERSION, type ErrorBody, type Transaction } from '../contracts/index.ts';
import { tokenHash } from './api/auth.ts';
import { adminRoutes } from './api/admin.ts';
import { fleetRoutes } from './api/fleet.ts';
import { acceptGzip, isZlibError } from './api/gzip.ts';
import { outcomesRoutes } from './api/outcomes.ts';
import { enrollRoutes } from './enrollment/enrollment.ts';
import { heartbeatRoutes } from './api/heartbeat.ts';
import { ingestRoutes } from './api/ingest.ts';
import { RateLimiter } from './api/rate-limit.ts';
import type { HubConfig } from './config/schema.ts';
import { renderDashboard, renderTransaction } from './dashboard/page.ts';
import type { ErpAdapter } from './erp/erp-adapter.ts';
import { PostingService } from './erp/posting-service.ts';
import { createAdapter } from './erp/registry.ts';
import { createHubMetrics } from './metrics.ts';
import { fleetStatus } from './monitor/fleet-status.ts';
import type { HubStore, PostingOutcome } from './store/hub-store.ts';
import { openHubStore } from './store/open-store.ts';
import { SqliteHubStore, type CheckpointerStart } from './store/sqlite/sqlite-store.ts';
import { createHubLogger } from './log.ts';

export interface HubOptions {
  config: HubConfig;
  log?: Logger;
  /** inject a store (tests, the PostgreSQL store); default: from config */
  store?: HubStore;
  /** inject an adapter; default: from config.erp */
  adapter?: ErpAdapter;
  /** called for every ERP outcome recorded (the demo prints these) */
  onOutcome?: (tx: Transaction, outcome: PostingOutcome) => void;
}

export interface Hub {
  readonly app: FastifyInstance;
  readonly store: HubStore;
  readonly posting: PostingService;
  readonly log: Logger;
  /** http(s)://host:port once listening */
  readonly url: string;
  /** registers static agents, starts posting, listens */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Builds the hub from a validated config without side effects: nothing is opened or listened on until
 * start(). Routes are testable with `hub.app.inject()` after start().
 */
export function buildHub(opts: HubOptions): Hub {
  const { config } = opts;
  const log = opts.log ?? createHubLogger(config.log.level);
  const metrics = createHubMetrics();
  const limiter = new RateLimiter(config.hub.rateLimitPerAgent);
  const enrollLimiter = new RateLimiter(5);
  let store = opts.store;
  let posting: PostingService | undefined;
  let url = '';
  const adapter = opts.adapter ?? createAdapter(config.erp, { logger: log.child({ component: 'erp' }) });

  const app = Fastify({
    // per-request lines are noise at info: the api logger speaks from warn up (counts are in /metrics)
    loggerInstance: log.child({ component: 'api' }, { level: log.isLevelEnabled('debug') ? 'debug' : 'warn' }) as FastifyBaseLogger,
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
    ...(config.hub.tls ? { https: { cert: readFileSync(config.hub.tls.cert), key: readFileSync(config.hub.tls.key) } } : {}),
  }) as unknown as FastifyInstance;

  app.setErrorHandler((err: FastifyError | PlantBridgeError, req, reply) => {
    let e: PlantBridgeError;
    if (err instanceof PlantBridgeError) e = err;
    else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') e = new PlantBridgeError('PAYLOAD_TOO_LARGE', `request body exceeds ${config.hub.bodyLimit} bytes; send smaller batches`);
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

  const hub: Hub = {
    app,
    get store() {
      if (!store) throw new PlantBridgeError('INTERNAL', 'hub not started');
      return store;
    },
    get posting() {
      if (!posting) throw new PlantBridgeError('INTERNAL', 'hub not started');
      return posting;
    },
    log,
    get url() {
      return url;
    },
    async start() {
      store ??= await openHubStore(config);
      await store.migrate();
      for (const a of config.agents) {
        const hash = tokenHash(a.token.reveal());
        // a revocation outlives restarts: the same token stays refused; a new token in hub.yaml admits it again
        const current = await store.findAgentByTokenHash(hash);
        if (current?.id === a.id && current.revokedAt) {
          log.warn({ agentId: a.id, revokedAt: current.revokedAt }, 'An agent listed in hub.yaml was revoked: its token stays refused. To admit it again, give it a new token in hub.yaml');
          continue;
        }
        await store.upsertAgent({ id: a.id, plants: a.plants, tokenHash: hash });
      }
      const s = store;
      posting = new PostingService({
        store: s,
        adapter,
        log: log.child({ component: 'posting' }),
        metrics,
        concurrency: config.posting.concurrency,
        maxAttempts: config.posting.maxAttempts,
        retryMaxDelayMs: config.posting.retryMaxDelay,
        leaseMs: config.posting.lease,
        inDoubtWaitMs: config.posting.inDoubtWait,
        ...(opts.onOutcome ? { onOutcome: opts.onOutcome } : {}),
      });
      const p = posting;
      const fleetOpts = { offlineAfterMs: config.fleet.offlineAfter, backlogSlaMs: config.fleet.backlogSla };
      acceptGzip(app);
      ingestRoutes(app, { store: s, metrics, limiter, onAccepted: () => p.notify() });
      outcomesRoutes(app, { store: s });
      enrollRoutes(app, { store: s, limiter: enrollLimiter });
      heartbeatRoutes(app, { store: s, metrics });
      fleetRoutes(app, { store: s, ...fleetOpts });
      adminRoutes(app, { store: s, operators: config.admin.operators });
      app.get('/healthz', async (_req, reply) => {
        const erp = await adapter.healthcheck().catch((err: Error) => ({ ok: false, message: err.message }));
        const counts = await s.counts();
        void reply.status(200).send({ ok: true, version: VERSION, store: s.kind, erp, counts });
      });
      app.get('/metrics', async (_req, reply) => {
        const counts = await s.counts();
        for (const [state, n] of Object.entries(counts)) metrics.queue.set({ state }, n);
        const agents = (await s.listAgents()).map((r) => fleetStatus(r, fleetOpts));
        metrics.agents.reset();
        for (const st of ['online', 'degraded', 'offline', 'never-seen']) metrics.agents.set({ status: st }, agents.filter((a) => a.status === st).length);
        void reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
      });
      app.get('/', async (_req, reply) => {
        const [rows, counts, transactions, deadLetters] = await Promise.all([
          s.listAgents(),
          s.counts(),
          s.listTransactions({ limit: 50 }),
          s.listTransactions({ limit: 50, state: 'failed' }),
        ]);
        const html = renderDashboard({ agents: rows.map((r) => fleetStatus(r, fleetOpts)), counts, transactions, deadLetters, version: VERSION });
        void reply.header('content-type', 'text/html; charset=utf-8').send(html);
      });
      app.get('/tx/:key', async (req, reply) => {
        const tx = await s.getTransaction((req.params as { key: string }).key);
        if (!tx) throw new PlantBridgeError('NOT_FOUND', 'no such transaction');
        void reply.header('content-type', 'text/html; charset=utf-8').send(renderTransaction(tx as never));
      });
      posting.start();
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
      await app.close();
      await posting?.stop();
      await adapter.close?.();
      await store?.close();
    },
  };
  return hub;
}
