import type { FastifyInstance } from 'fastify';
import { PlantBridgeError, agentHeartbeatSchema, issuesToText, validate } from '../../contracts/index.ts';
import type { HubContext } from '../hub-context.ts';
import { requireAgent } from './auth.ts';

/** POST /v1/heartbeat — answers with the hub's clock so the agent can report its offset. */
export function heartbeatRoutes(app: FastifyInstance, ctx: HubContext): void {
  app.post('/v1/heartbeat', { onRequest: requireAgent(ctx) }, async (req) => {
    const agent = req.agent!;
    const v = validate(agentHeartbeatSchema, req.body);
    if (!v.ok) throw new PlantBridgeError('SCHEMA_INVALID', issuesToText(v.issues), { details: v.issues, correlationId: req.id });
    if (v.value.agentId !== agent.id) throw new PlantBridgeError('SCHEMA_INVALID', `agentId "${v.value.agentId}" is not the sender "${agent.id}"`, { correlationId: req.id });
    if (!agent.plants.includes(v.value.plant)) {
      await ctx.store.audit({ actor: `agent:${agent.id}`, action: 'heartbeat.plant_mismatch', detail: { plant: v.value.plant } });
      throw new PlantBridgeError('PLANT_MISMATCH', `agent ${agent.id} is not enrolled for plant ${v.value.plant}`, { correlationId: req.id });
    }
    await ctx.store.recordHeartbeat(v.value, new Date());
    ctx.metrics.heartbeats.inc();
    return { ok: true, serverTime: new Date().toISOString() };
  });
}
