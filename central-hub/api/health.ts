import type { FastifyInstance } from 'fastify';
import { VERSION } from '../../contracts/index.ts';
import type { HubContext } from '../hub-context.ts';

/** GET /healthz — the hub answers, its store counts, and whether the ERP answers its healthcheck. */
export function healthRoutes(app: FastifyInstance, ctx: HubContext): void {
  // load balancers and monitors poll this; each call asks the ERP and counts the store
  app.get('/healthz', { config: { rateLimit: { perAddress: 20 } } }, async (_req, reply) => {
    const erp = await ctx.adapter.healthcheck().catch((err: Error) => ({ ok: false, message: err.message }));
    const counts = await ctx.store.counts();
    void reply.status(200).send({ ok: true, version: VERSION, store: ctx.store.kind, erp, counts });
  });
}
