import type { FastifyInstance } from 'fastify';
import { PlantBridgeError, enrollRequestSchema, issuesToText, schemaId, validate, type EnrollResponse } from '../../contracts/index.ts';
import { newSecret } from '../enrollment/enrollment.ts';
import type { HubContext } from '../hub-context.ts';
import { tokenHash } from './auth.ts';
import { RateLimiter } from './rate-limit.ts';

const REFUSALS = {
  unknown: 'unknown enrollment token',
  used: 'this enrollment token was already used; ask for a new one (plantbridge-hub agents rotate)',
  expired: 'this enrollment token has expired; ask for a new one (plantbridge-hub agents rotate)',
  revoked: 'this agent was revoked; its enrollment tokens no longer work',
  superseded: 'a newer enrollment token was issued for this agent (or it enrolled with another one); use the newest (plantbridge-hub agents rotate)',
} as const;

/** POST /v1/enroll: unauthenticated by design (the token is the authentication), rate-limited per address. */
export function enrollRoutes(app: FastifyInstance, ctx: HubContext): void {
  const limiter = new RateLimiter(5);
  app.post('/v1/enroll', async (req, reply) => {
    const wait = limiter.take(`enroll:${req.ip}`);
    if (wait > 0) {
      reply.header('retry-after', String(Math.ceil(wait / 1000)));
      throw new PlantBridgeError('RATE_LIMITED', `too many enrollment attempts; retry after ${Math.ceil(wait / 1000)} s`, { correlationId: req.id });
    }
    const v = validate(enrollRequestSchema, req.body);
    if (!v.ok) throw new PlantBridgeError('SCHEMA_INVALID', issuesToText(v.issues), { details: v.issues, correlationId: req.id });
    const credential = newSecret('pbc');
    const r = await ctx.store.redeemEnrollment(tokenHash(v.value.token), tokenHash(credential));
    if (!r.ok) {
      req.log.warn({ reason: r.reason, ip: req.ip }, 'Enrollment refused');
      throw new PlantBridgeError('UNAUTHENTICATED', REFUSALS[r.reason], { correlationId: req.id, details: { reason: r.reason } });
    }
    if (v.value.agentId !== undefined && v.value.agentId !== r.agent.id) {
      // the token is spent: an operator must issue a new one for the right id (audited)
      await ctx.store.revokeAgent(r.agent.id, 'hub:enroll-mismatch');
      throw new PlantBridgeError('UNAUTHENTICATED', `this token was issued for agent "${r.agent.id}", not "${v.value.agentId}"; the enrollment was revoked, issue a new token`, { correlationId: req.id });
    }
    const body: EnrollResponse = { schema: schemaId('enroll-response', 1, 0), agentId: r.agent.id, plants: r.agent.plants, credential };
    return body;
  });
}
