import type { FastifyInstance, FastifyRequest } from 'fastify';
import { PlantBridgeError, agentHeartbeatSchema, issuesToText, validate } from '../../contracts/index.ts';
import type { HubContext } from '../hub-context.ts';
import { requireAgent } from './auth.ts';
import { agentJsonBodies } from './json-body.ts';

/**
 * POST /v1/heartbeat — answers with the hub's clock so the agent can report its offset. An agent beats
 * every 15 s by default: 5 a second per agent (burst 10) is far above any configuration, far below a flood.
 * Its body goes through the agents' JSON checks (json-body.ts) and a 256 KiB limit (200 drivers fit).
 */
export function heartbeatRoutes(app: FastifyInstance, ctx: HubContext): void {
  const handler = async (req: FastifyRequest) => {
    const agent = req.agent!;
    const v = validate(agentHeartbeatSchema, req.body);
    if (!v.ok) throw new PlantBridgeError('SCHEMA_INVALID', issuesToText(v.issues), { details: v.issues, correlationId: req.id });
    if (v.value.agentId !== agent.id) {
      await ctx.store.audit({ actor: `agent:${agent.id}`, action: 'heartbeat.agent_mismatch', target: agent.id, detail: { agentId: v.value.agentId, ip: req.ip } });
      throw new PlantBridgeError('SCHEMA_INVALID', `agentId "${v.value.agentId}" is not the sender "${agent.id}"`, { correlationId: req.id });
    }
    if (!agent.plants.includes(v.value.plant)) {
      await ctx.store.audit({ actor: `agent:${agent.id}`, action: 'heartbeat.plant_mismatch', detail: { plant: v.value.plant } });
      throw new PlantBridgeError('PLANT_MISMATCH', `agent ${agent.id} is not enrolled for plant ${v.value.plant}`, { correlationId: req.id });
    }
    await ctx.store.recordHeartbeat(v.value, new Date());
    ctx.metrics.heartbeats.inc();
    return { ok: true, serverTime: new Date().toISOString() };
  };
  void app.register(async (scope) => {
    agentJsonBodies(scope);
    scope.post('/v1/heartbeat', { onRequest: requireAgent(ctx), bodyLimit: 256 * 1024, config: { rateLimit: { perCaller: 5, perAddress: 200 } } }, handler);
  });
}
