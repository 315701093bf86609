import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PlantBridgeError } from '../../contracts/index.ts';
import type { AgentRecord, HubStore } from '../store/hub-store.ts';

export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

declare module 'fastify' {
  interface FastifyRequest {
    agent?: AgentRecord;
  }
}

/**
 * Authenticates an agent by its bearer token. The store keeps only the token's SHA-256; a revoked agent
 * is refused at once (no cache).
 */
export function requireAgent(store: HubStore) {
  return async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const header = req.headers.authorization;
    const m = typeof header === 'string' ? /^Bearer ([\x21-\x7e]{16,512})$/.exec(header) : null;
    if (!m) throw new PlantBridgeError('UNAUTHENTICATED', 'a bearer token is required', { correlationId: req.id });
    const hash = tokenHash(m[1]);
    const agent = await store.findAgentByTokenHash(hash);
    if (!agent || !timingSafeEqual(Buffer.from(agent.tokenHash), Buffer.from(hash)) || agent.revokedAt) {
      await store.audit({ actor: 'unknown', action: 'auth.refused', detail: { ip: req.ip, route: req.url.split('?')[0] } });
      throw new PlantBridgeError('UNAUTHENTICATED', 'unknown or revoked credential', { correlationId: req.id });
    }
    req.agent = agent;
  };
}
