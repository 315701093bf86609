import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { PlantBridgeError, validate } from '../../contracts/index.ts';
import type { HubContext } from '../hub-context.ts';
import { BREACH_KINDS } from '../monitor/sla.ts';
import { visiblePlants } from './access.ts';

/** a query-string count: digits only (no sign, exponent or hex), within [min, max] */
const count = (min: number, max: number, dflt: number) =>
  z
    .string()
    .regex(/^\d{1,9}$/, 'expected a whole number')
    .transform(Number)
    .pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`))
    .default(dflt);
const plant = z.string().min(1).max(64);
const page = { limit: count(1, 1000, 100), offset: count(0, 1_000_000, 0) };

export const slaQuery = z.strictObject({ plant: plant.optional(), kind: z.enum(BREACH_KINDS).optional(), ...page });
export const reconciliationQuery = z.strictObject({ plant: plant.optional(), order: z.string().min(1).max(64).optional(), ...page });
export const releasedQuery = z.strictObject({ plant: plant.optional(), state: z.enum(['started', 'waiting', 'late']).optional(), ...page });

/** strict query parsing: unknown or repeated parameters and bad values are SCHEMA_INVALID with their names */
export function parseQuery<S extends z.ZodType>(schema: S, req: FastifyRequest): z.infer<S> {
  const v = validate(schema, req.query ?? {});
  if (!v.ok) throw new PlantBridgeError('SCHEMA_INVALID', `bad query: ${v.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`.slice(0, 1000));
  return v.value;
}

/** the plants a request may see, narrowed to its `plant` parameter (a plant it may not see: none) */
export function plantsFor(req: FastifyRequest, plantParam: string | undefined): (p: string) => boolean {
  const visible = visiblePlants(req);
  return (p) => (visible === null || visible.includes(p)) && (plantParam === undefined || p === plantParam);
}

/**
 * /v1/monitor/* (issue #20, docs/MONITORING.md): what the SLA checks found, for the console and
 * integration teams. Viewer routes (api/access.ts); a principal limited to plants sees only theirs.
 * Lists are paginated (limit, offset) and say their total.
 */
export function monitorRoutes(app: FastifyInstance, ctx: HubContext): void {
  app.get('/v1/monitor/sla', { config: { access: 'viewer' } }, async (req) => {
    const q = parseQuery(slaQuery, req);
    const see = plantsFor(req, q.plant);
    const r = await ctx.monitor.sla.report();
    const breaches = r.breaches.filter((b) => see(b.plant) && (q.kind === undefined || b.kind === q.kind));
    return {
      at: r.at,
      tookMs: r.tookMs,
      windowMs: r.windowMs,
      latency: r.latency.filter((s) => see(s.plant)),
      open: r.open.filter((o) => see(o.plant)),
      total: breaches.length,
      limit: q.limit,
      offset: q.offset,
      breaches: breaches.slice(q.offset, q.offset + q.limit),
    };
  });

  app.get('/v1/monitor/released-not-started', { config: { access: 'viewer' } }, async (req) => {
    const q = parseQuery(releasedQuery, req);
    const see = plantsFor(req, q.plant);
    const watch = ctx.monitor.released;
    const all = (await watch.orders()).filter((p) => see(p.plant.plant));
    const orders = all.flatMap((p) => p.orders).filter((o) => q.state === undefined || o.state === q.state);
    // late first, the longest overdue first
    const rank = { late: 0, waiting: 1, started: 2 } as const;
    orders.sort((a, b) => rank[a.state] - rank[b.state] || a.scheduledStart.localeCompare(b.scheduledStart) || a.order.localeCompare(b.order));
    return {
      supported: watch.supported,
      plants: all.map(({ plant: p, orders: os }) => ({ plant: p.plant, readAt: p.readAt, error: p.error, skipped: p.skipped, orders: os.length, late: os.filter((o) => o.state === 'late').length })),
      total: orders.length,
      limit: q.limit,
      offset: q.offset,
      orders: orders.slice(q.offset, q.offset + q.limit),
    };
  });

  app.get('/v1/monitor/reconciliation', { config: { access: 'viewer' } }, async (req) => {
    const q = parseQuery(reconciliationQuery, req);
    const visible = visiblePlants(req);
    const plants = q.plant === undefined ? visible : visible === null || visible.includes(q.plant) ? [q.plant] : [];
    const r = await ctx.store.listReconciliations({ plants, ...(q.order !== undefined ? { order: q.order } : {}), limit: q.limit, offset: q.offset });
    return { supported: ctx.monitor.reconciler.supported, total: r.total, limit: q.limit, offset: q.offset, reconciliations: r.items };
  });
}
