import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { PlantBridgeError, enrollRequestSchema, issuesToText, schemaId, validate, type EnrollResponse } from '../../contracts/index.ts';
import { tokenHash } from '../api/auth.ts';
import type { RateLimiter } from '../api/rate-limit.ts';
import type { HubStore } from '../store/hub-store.ts';

/**
 * Agent identity (issue 6). An operator issues a one-time enrollment token for an agent id and its
 * plants (`plantbridge-hub agents add`); the agent exchanges it once, within its lifetime (24 h by
 * default), for a long-lived bearer credential (`plantbridge-agent enroll`). The hub stores only
 * SHA-256 hashes of both. Rotation issues a new token for the same agent: the old credential works
 * until the new one is redeemed. Revocation stops the credential and unused tokens at once.
 */

export const ENROLLMENT_TTL_MS = 24 * 3600_000;
export const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

/** 256 random bits, URL-safe, with a prefix that says what the secret is (secret scanners key on it). */
export function newSecret(prefix: 'pbe' | 'pbc'): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}

export async function issueEnrollmentToken(
  store: HubStore,
  opts: { agentId: string; plants: string[]; ttlMs?: number; actor: string; now?: Date },
): Promise<{ token: string; expiresAt: Date }> {
  if (!AGENT_ID.test(opts.agentId)) throw new PlantBridgeError('SCHEMA_INVALID', `agent id "${opts.agentId}": expected letters, digits, dot, dash or underscore, e.g. line-server-1`);
  if (opts.plants.length === 0 || opts.plants.some((p) => p.length === 0 || p.length > 64)) throw new PlantBridgeError('SCHEMA_INVALID', 'at least one plant code (1-64 characters) is needed');
  const token = newSecret('pbe');
  const expiresAt = new Date((opts.now ?? new Date()).getTime() + (opts.ttlMs ?? ENROLLMENT_TTL_MS));
  await store.createEnrollment({ tokenHash: tokenHash(token), agentId: opts.agentId, plants: [...new Set(opts.plants)], expiresAt }, opts.actor);
  return { token, expiresAt };
}

const REFUSALS = {
  unknown: 'unknown enrollment token',
  used: 'this enrollment token was already used; ask for a new one (plantbridge-hub agents rotate)',
  expired: 'this enrollment token has expired; ask for a new one (plantbridge-hub agents rotate)',
  revoked: 'this agent was revoked; its enrollment tokens no longer work',
  superseded: 'a newer enrollment token was issued for this agent (or it enrolled with another one); use the newest (plantbridge-hub agents rotate)',
} as const;

/** POST /v1/enroll: unauthenticated by design (the token is the authentication), rate-limited per address. */
export function enrollRoutes(app: FastifyInstance, deps: { store: HubStore; limiter: RateLimiter }): void {
  app.post('/v1/enroll', async (req, reply) => {
    const wait = deps.limiter.take(`enroll:${req.ip}`);
    if (wait > 0) {
      reply.header('retry-after', String(Math.ceil(wait / 1000)));
      throw new PlantBridgeError('RATE_LIMITED', `too many enrollment attempts; retry after ${Math.ceil(wait / 1000)} s`, { correlationId: req.id });
    }
    const v = validate(enrollRequestSchema, req.body);
    if (!v.ok) throw new PlantBridgeError('SCHEMA_INVALID', issuesToText(v.issues), { details: v.issues, correlationId: req.id });
    const credential = newSecret('pbc');
    const r = await deps.store.redeemEnrollment(tokenHash(v.value.token), tokenHash(credential));
    if (!r.ok) {
      req.log.warn({ reason: r.reason, ip: req.ip }, 'Enrollment refused');
      throw new PlantBridgeError('UNAUTHENTICATED', REFUSALS[r.reason], { correlationId: req.id, details: { reason: r.reason } });
    }
    if (v.value.agentId !== undefined && v.value.agentId !== r.agent.id) {
      // the token is spent: an operator must issue a new one for the right id (audited)
      await deps.store.revokeAgent(r.agent.id, 'hub:enroll-mismatch');
      throw new PlantBridgeError('UNAUTHENTICATED', `this token was issued for agent "${r.agent.id}", not "${v.value.agentId}"; the enrollment was revoked, issue a new token`, { correlationId: req.id });
    }
    const body: EnrollResponse = { schema: schemaId('enroll-response', 1, 0), agentId: r.agent.id, plants: r.agent.plants, credential };
    return body;
  });
}
