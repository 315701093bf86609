import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { PlantBridgeError } from '../../contracts/index.ts';
import type { HubContext } from '../hub-context.ts';
import { auditRefusal, tokenHash } from './auth.ts';
import { countParam, seqParam, strictParams } from './query.ts';

const seqParams = z.strictObject({ seq: seqParam });
const limitQuery = z.strictObject({ limit: countParam(1000).optional() });
const noQuery = z.strictObject({});

/**
 * Operator API for dead letters and the audit log (what the dashboard and scripts use). Bearer tokens of
 * named operators from hub.yaml `admin.operators`; every action is audited with the operator's name.
 * Without configured operators the API refuses every call.
 */
export function adminRoutes(app: FastifyInstance, ctx: HubContext): void {
  const hashes = ctx.config.admin.operators.map((o) => ({ name: o.name, hash: Buffer.from(tokenHash(o.token.reveal()), 'hex') }));
  const operator = async (req: FastifyRequest): Promise<string> => {
    const m = /^Bearer (\S{16,512})$/.exec(req.headers.authorization ?? '');
    if (hashes.length === 0) throw new PlantBridgeError('UNAUTHENTICATED', 'the admin API is disabled: configure admin.operators in hub.yaml', { correlationId: req.id });
    if (m) {
      const h = Buffer.from(tokenHash(m[1]), 'hex');
      const hit = hashes.find((o) => timingSafeEqual(o.hash, h));
      if (hit) return hit.name;
    }
    await auditRefusal(ctx.store, req.ip, 'admin.auth.refused', { route: req.url.split('?')[0] });
    throw new PlantBridgeError('UNAUTHENTICATED', 'unknown operator token', { correlationId: req.id });
  };
  const seqOf = (req: FastifyRequest): number => {
    strictParams(noQuery, req.query, req);
    return strictParams(seqParams, req.params, req).seq;
  };
  const limitOf = (req: FastifyRequest): number => strictParams(limitQuery, req.query, req).limit ?? 100;

  app.get('/v1/admin/dead-letters', async (req) => {
    await operator(req);
    return { deadLetters: await ctx.store.listTransactions({ limit: limitOf(req), state: 'failed' }) };
  });
  app.post('/v1/admin/dead-letters/:seq/replay', async (req) => {
    const who = await operator(req);
    const seq = seqOf(req);
    if (!(await ctx.store.replay(seq, `operator:${who}`))) throw new PlantBridgeError('NOT_FOUND', `no dead letter ${seq}`, { correlationId: req.id });
    return { ok: true, seq, state: 'queued' };
  });
  app.post('/v1/admin/dead-letters/:seq/discard', async (req) => {
    const who = await operator(req);
    const seq = seqOf(req);
    const body = req.body as { reason?: unknown } | undefined;
    const keys = body && typeof body === 'object' ? Object.keys(body).filter((k) => k !== 'reason') : [];
    if (keys.length) throw new PlantBridgeError('SCHEMA_INVALID', `${keys[0]}: unknown field`, { correlationId: req.id });
    if (typeof body?.reason !== 'string' || body.reason.trim().length < 3 || body.reason.length > 1000) {
      throw new PlantBridgeError('SCHEMA_INVALID', 'reason: say why this is not posted (3 to 1000 characters); it is audited', { correlationId: req.id });
    }
    if (!(await ctx.store.discard(seq, `operator:${who}`, body.reason))) throw new PlantBridgeError('NOT_FOUND', `no dead letter ${seq}`, { correlationId: req.id });
    return { ok: true, seq, state: 'discarded' };
  });
  app.get('/v1/admin/audit', async (req) => {
    await operator(req);
    return { audit: await ctx.store.listAudit(limitOf(req)) };
  });
}
