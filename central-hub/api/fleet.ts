import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { PlantBridgeError, nonEmpty } from '../../contracts/index.ts';
import { fleetStatus } from '../monitor/fleet-status.ts';
import type { HubContext } from '../hub-context.ts';
import type { PostingState } from '../store/hub-store.ts';

import { countParam, plantParam, strictParams } from './query.ts';

const STATES = ['queued', 'posted', 'failed', 'discarded'] as const;
const transactionsQuery = z.strictObject({
  limit: countParam(1000).optional(),
  state: z.enum(STATES, { error: `expected one of ${STATES.join(', ')}` }).optional(),
  plant: plantParam.optional(),
});
const historyQuery = z.strictObject({ limit: countParam(6000).optional() });
const noQuery = z.strictObject({});
const idParams = z.strictObject({ id: nonEmpty(200) });
const keyParams = z.strictObject({ key: nonEmpty(300) });

/**
 * Read APIs for the dashboard and for integration teams. Decision (docs/ARCHITECTURE.md): read-only and
 * served on the hub's listener; bind the hub to loopback or put it behind the site's SSO proxy until
 * operator accounts exist.
 */
export function fleetRoutes(app: FastifyInstance, ctx: HubContext): void {
  app.get('/v1/fleet/agents', async (req) => {
    strictParams(noQuery, req.query, req);
    const rows = await ctx.store.listAgents();
    return { agents: rows.map((r) => fleetStatus(r, ctx.fleet)) };
  });
  app.get('/v1/fleet/transactions', async (req) => {
    const q = strictParams(transactionsQuery, req.query, req);
    return {
      counts: await ctx.store.counts(),
      transactions: await ctx.store.listTransactions({ limit: q.limit ?? 50, ...(q.state ? { state: q.state as PostingState } : {}), ...(q.plant ? { plant: q.plant } : {}) }),
    };
  });
  app.get('/v1/fleet/agents/:id/history', async (req) => {
    const { id } = strictParams(idParams, req.params, req);
    const q = strictParams(historyQuery, req.query, req);
    return { agentId: id, history: await ctx.store.heartbeatHistory(id, q.limit ?? 240) };
  });
  app.get('/v1/fleet/transactions/:key/lineage', async (req) => {
    strictParams(noQuery, req.query, req);
    const { key } = strictParams(keyParams, req.params, req);
    const l = await ctx.store.lineage(key);
    if (!l) throw new PlantBridgeError('NOT_FOUND', `no transaction with idempotency key ${key}`);
    return l;
  });
  app.get('/v1/fleet/transactions/:key', async (req) => {
    strictParams(noQuery, req.query, req);
    const { key } = strictParams(keyParams, req.params, req);
    const tx = await ctx.store.getTransaction(key);
    if (!tx) throw new PlantBridgeError('NOT_FOUND', `no transaction with idempotency key ${key}`);
    return tx;
  });
}
