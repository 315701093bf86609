import type { FastifyInstance } from 'fastify';
import { PlantBridgeError, VERSION } from '../../contracts/index.ts';
import type { HubContext } from '../hub-context.ts';
import { fleetStatus } from '../monitor/fleet-status.ts';
import { renderDashboard, renderTransaction } from './page.ts';

/** The dashboard's pages: the fleet page `/` and one transaction's lineage `/tx/:key` (server-rendered, read-only). */
export function dashboardRoutes(app: FastifyInstance, ctx: HubContext): void {
  app.get('/', async (_req, reply) => {
    const s = ctx.store;
    const [rows, counts, transactions, deadLetters] = await Promise.all([
      s.listAgents(),
      s.counts(),
      s.listTransactions({ limit: 50 }),
      s.listTransactions({ limit: 50, state: 'failed' }),
    ]);
    const html = renderDashboard({ agents: rows.map((r) => fleetStatus(r, ctx.fleet)), counts, transactions, deadLetters, version: VERSION });
    void reply.header('content-type', 'text/html; charset=utf-8').send(html);
  });
  app.get('/tx/:key', async (req, reply) => {
    const tx = await ctx.store.getTransaction((req.params as { key: string }).key);
    if (!tx) throw new PlantBridgeError('NOT_FOUND', 'no such transaction');
    void reply.header('content-type', 'text/html; charset=utf-8').send(renderTransaction(tx as never));
  });
}
