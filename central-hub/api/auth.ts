import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PlantBridgeError } from '../../contracts/index.ts';
import type { HubContext } from '../hub-context.ts';
import type { AgentRecord, HubStore } from '../store/hub-store.ts';
import { clientCertificateOf } from './mtls.ts';

export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

declare module 'fastify' {
  interface FastifyRequest {
    agent?: AgentRecord;
  }
}

/** Audit rows for refused credentials, per client address and minute; the rest are counted, not written. */
export const REFUSAL_AUDITS_PER_MINUTE = 20;
const refusalWindows = new WeakMap<HubStore, Map<string, { start: number; written: number; suppressed: number }>>();

/**
 * Audits a refused credential. Anyone who reaches the hub can send bad tokens: without a bound each one
 * was an audit row (and on SQLite an fsync of its own). Past REFUSAL_AUDITS_PER_MINUTE per address in a
 * minute they are counted, and the next row that address gets says how many were left out.
 */
export async function auditRefusal(store: HubStore, ip: string, action: string, detail: Record<string, unknown>, now = Date.now()): Promise<void> {
  let windows = refusalWindows.get(store);
  if (!windows) refusalWindows.set(store, (windows = new Map()));
  let w = windows.get(ip);
  let left = 0;
  if (!w || now - w.start >= 60_000) {
    left = w?.suppressed ?? 0;
    if (windows.size >= 10_000) for (const [k, v] of windows) if (now - v.start >= 60_000) windows.delete(k);
    w = { start: now, written: 0, suppressed: 0 };
    windows.set(ip, w);
  }
  if (w.written >= REFUSAL_AUDITS_PER_MINUTE) {
    w.suppressed++;
    return;
  }
  w.written++;
  await store.audit({ actor: 'unknown', action, detail: { ...detail, ip, ...(left > 0 ? { notAuditedBefore: left } : {}) } });
}

/**
 * Authenticates an agent by its bearer token. The store keeps only the token's SHA-256; a revoked agent
 * is refused at once (no cache). With mutual TLS on (hub.tls.clientCa), the connection's client
 * certificate must also name this agent (mtls.ts): a stolen token alone does not work.
 */
export function requireAgent(ctx: Pick<HubContext, 'store' | 'config'>) {
  return async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const store = ctx.store;
    const header = req.headers.authorization;
    const m = typeof header === 'string' ? /^Bearer ([\x21-\x7e]{16,512})$/.exec(header) : null;
    if (!m) throw new PlantBridgeError('UNAUTHENTICATED', 'a bearer token is required', { correlationId: req.id });
    const hash = tokenHash(m[1]);
    const agent = await store.findAgentByTokenHash(hash);
    if (!agent || !timingSafeEqual(Buffer.from(agent.tokenHash), Buffer.from(hash)) || agent.revokedAt) {
      await auditRefusal(store, req.ip, 'auth.refused', { route: req.url.split('?')[0] });
      throw new PlantBridgeError('UNAUTHENTICATED', 'unknown or revoked credential', { correlationId: req.id });
    }
    const cert = clientCertificateOf(req, ctx.config);
    if (cert && (!cert.ok || cert.agentId !== agent.id)) {
      const reason = cert.ok ? `the client certificate is for agent "${cert.agentId}", not for this credential's agent "${agent.id}"` : cert.reason;
      await auditRefusal(store, req.ip, 'auth.client_certificate_refused', { route: req.url.split('?')[0], agentId: agent.id, reason });
      throw new PlantBridgeError('UNAUTHENTICATED', reason, { correlationId: req.id });
    }
    req.agent = agent;
  };
}
