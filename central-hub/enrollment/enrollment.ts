import { randomBytes } from 'node:crypto';
import { PlantBridgeError } from '../../contracts/index.ts';
import { tokenHash } from '../api/auth.ts';
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
