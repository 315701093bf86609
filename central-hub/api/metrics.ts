import type { FastifyInstance } from 'fastify';
import type { HubContext } from '../hub-context.ts';
import { fleetStatus } from '../monitor/fleet-status.ts';

/** GET /metrics — Prometheus text (DESIGN.md §9); the queue and fleet gauges are read from the store when scraped. */
export function metricsRoutes(app: FastifyInstance, ctx: HubContext): void {
  const { metrics } = ctx;
  // a scrape reads the store: Prometheus asks every 15-60 s, so 5 a second per address is plenty
  app.get('/metrics', { config: { rateLimit: { perAddress: 5 } } }, async (_req, reply) => {
    const counts = await ctx.store.counts();
    for (const [state, n] of Object.entries(counts)) metrics.queue.set({ state }, n);
    const agents = (await ctx.store.listAgents()).map((r) => fleetStatus(r, ctx.fleet));
    metrics.agents.reset();
    for (const st of ['online', 'degraded', 'offline', 'never-seen']) metrics.agents.set({ status: st }, agents.filter((a) => a.status === st).length);
    // the SLA gauges come from the last check cycle (one runs now if the last is older than two intervals)
    await ctx.monitor.sla.report().catch((err: unknown) => ctx.log.warn({ err }, 'The SLA checks failed; /metrics shows the last cycle that ran'));
    void reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });
}
