import type { FastifyInstance, FastifyRequest } from 'fastify';
import { PlantBridgeError, enrollRequestSchema, issuesToText, schemaId, validate, type EnrollResponse } from '../../contracts/index.ts';
import { newSecret } from '../enrollment/enrollment.ts';
import type { HubContext } from '../hub-context.ts';
import { tokenHash } from './auth.ts';
import { agentJsonBodies } from './json-body.ts';
import { clientCertificateOf } from './mtls.ts';

const REFUSALS = {
  unknown: 'unknown enrollment token',
  used: 'this enrollment token was already used; ask for a new one (plantbridge-hub agents rotate)',
  expired: 'this enrollment token has expired; ask for a new one (plantbridge-hub agents rotate)',
  revoked: 'this agent was revoked; its enrollment tokens no longer work',
  superseded: 'a newer enrollment token was issued for this agent (or it enrolled with another one); use the newest (plantbridge-hub agents rotate)',
} as const;

/** An enrollment request is a few hundred bytes: anything past this is refused before it is parsed. */
export const ENROLL_BODY_LIMIT = 4096;

/**
 * POST /v1/enroll: unauthenticated by design (the token is the authentication). Rate-limited per address
 * (5 a second, burst 10) before anything is read, with its own small body limit, and the agents' JSON
 * checks (json-body.ts). With mutual TLS on, the client certificate must name the agent the token is for.
 */
export function enrollRoutes(app: FastifyInstance, ctx: HubContext): void {
  const handler = async (req: FastifyRequest) => {
    const v = validate(enrollRequestSchema, req.body);
    if (!v.ok) throw new PlantBridgeError('SCHEMA_INVALID', issuesToText(v.issues), { details: v.issues, correlationId: req.id });
    const cert = clientCertificateOf(req, ctx.config);
    if (cert && !cert.ok) throw new PlantBridgeError('UNAUTHENTICATED', cert.reason, { correlationId: req.id });
    if (cert?.ok && v.value.agentId !== undefined && v.value.agentId !== cert.agentId) {
      throw new PlantBridgeError('UNAUTHENTICATED', `the client certificate is for agent "${cert.agentId}", not "${v.value.agentId}"`, { correlationId: req.id });
    }
    const credential = newSecret('pbc');
    const r = await ctx.store.redeemEnrollment(tokenHash(v.value.token), tokenHash(credential));
    if (!r.ok) {
      req.log.warn({ reason: r.reason, ip: req.ip }, 'Enrollment refused');
      throw new PlantBridgeError('UNAUTHENTICATED', REFUSALS[r.reason], { correlationId: req.id, details: { reason: r.reason } });
    }
    const claimed = v.value.agentId ?? (cert?.ok ? cert.agentId : undefined);
    if (claimed !== undefined && (claimed !== r.agent.id || (cert?.ok && cert.agentId !== r.agent.id))) {
      // the token is spent: an operator must issue a new one for the right id (audited)
      await ctx.store.revokeAgent(r.agent.id, 'hub:enroll-mismatch');
      throw new PlantBridgeError('UNAUTHENTICATED', `this token was issued for agent "${r.agent.id}", not "${claimed}"; the enrollment was revoked, issue a new token`, { correlationId: req.id });
    }
    const body: EnrollResponse = { schema: schemaId('enroll-response', 1, 0), agentId: r.agent.id, plants: r.agent.plants, credential };
    return body;
  };
  void app.register(async (scope) => {
    agentJsonBodies(scope);
    scope.post('/v1/enroll', { bodyLimit: ENROLL_BODY_LIMIT, config: { rateLimit: { perAddress: 5 } } }, handler);
  });
}
