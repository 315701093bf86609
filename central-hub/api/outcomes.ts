import type { FastifyInstance } from 'fastify';
import { outcomesQuerySchema, schemaId, type OutcomesResponse } from '../../contracts/index.ts';
import type { HubContext } from '../hub-context.ts';
import { requireAgent } from './auth.ts';
import { strictParams } from './query.ts';

/**
 * GET /v1/agents/me/outcomes?since=<cursor>&limit=<n> — the ERP outcomes (posted with the ERP document,
 * or failed with a code) of the calling agent's transactions, in the order they happened. The agent keeps
 * the cursor with the rows it marks, so a restart continues where it stopped and a replay is harmless.
 */
export function outcomesRoutes(app: FastifyInstance, ctx: HubContext): void {
  app.get('/v1/agents/me/outcomes', { onRequest: requireAgent(ctx), config: { rateLimit: { perCaller: 20, perAddress: 200 } } }, async (req) => {
    const q = strictParams(outcomesQuerySchema, req.query, req);
    const since = Number(q.since ?? '0');
    const limit = Math.min(1000, Math.max(1, Number(q.limit ?? '500')));
    const r = await ctx.store.outcomesSince(req.agent!.id, since, limit);
    const body: OutcomesResponse = {
      schema: schemaId('agent-outcomes', 1, 0),
      cursor: String(r.cursor),
      more: r.items.length === limit,
      items: r.items.map((i) => ({ idempotencyKey: i.idempotencyKey, outcome: i.outcome })),
    };
    return body;
  });
}
