import type { FastifyInstance } from 'fastify';
import { PlantBridgeError } from '../../contracts/index.ts';
import { fleetStatus } from '../monitor/fleet-status.ts';
import type { HubContext } from '../hub-context.ts';
import type { PostingState } from '../store/hub-store.ts';

const STATES = new Set(['queued', 'posted', 'failed', 'discarded']);

/**
 * Read APIs for the dashboard and for integration teams. Decision (docs/ARCHITECTURE.md): read-only and
 * served on the hub's listener; bind the hub to loopback or put it behind the site's SSO proxy until
 * operator accounts exist.
 */
export function fleetRoutes(app: FastifyInstance, ctx: HubContext): void {
  app.get('/v1/fleet/agents', async () => {
    const rows = await ctx.store.listAgents();
    return { agents: rows.map((r) => fleetStatus(r, ctx.fleet)) };
  });
  app.get('/v1/fleet/transactions', async (req) => {
    const q = req.query as Record<string, string | undefined>;
    const limit = Math.min(1000, Math.max(1, Number(q.limit ?? 50) || 50));
    if (q.state !== undefined && !STATES.has(q.state)) throw new PlantBridgeError('SCHEMA_INVALID', `state: expected one of ${[...STATES].join(', ')}`);
    return {
      counts: await ctx.store.counts(),
      transactions: await ctx.store.listTransactions({ limit, ...(q.state ? { state: q.state as PostingState } : {}), ...(q.plant ? { plant: q.plant } : {}) }),
    };
  });
  app.get('/v1/fleet/agents/:id/history', async (req) => {
    const { id } = req.params as { id: string };
    const q = req.query as Record<string, string | undefined>;
    const limit = Math.min(6000, Math.max(1, Number(q.limit ?? 240) || 240));
    return { agentId: id, history: await ctx.store.heartbeatHistory(id, limit) };
  });
  app.get('/v1/fleet/transactions/:key/lineage', async (req) => {
    const { key } = req.params as { key: string };
    const l = await ctx.store.lineage(key);
    if (!l) throw new PlantBridgeError('NOT_FOUND', `no transaction with idempotency key ${key}`);
    return l;
  });
  app.get('/v1/fleet/transactions/:key', async (req) => {
    const { key } = req.params as { key: string };
    const tx = await ctx.store.getTransaction(key);
    if (!tx) throw new PlantBridgeError('NOT_FOUND', `no transaction with idempotency key ${key}`);
    return tx;
  });
}
