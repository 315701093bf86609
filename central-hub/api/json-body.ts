import { isUtf8 } from 'node:buffer';
import { errorCodes, type FastifyInstance, type FastifyRequest } from 'fastify';
import { PlantBridgeError } from '../../contracts/index.ts';

/**
 * The agents' JSON body checks, one for every agent route (ingest, heartbeat, enroll; issue #22): bytes
 * that are not UTF-8 are refused (decoding would store U+FFFD in their place, a value changed without
 * anyone being told), then plain JSON.parse. A "__proto__" or "constructor" key becomes an own property
 * (JSON.parse never sets a prototype), and the strict schemas name it as an unknown field: a 400 that says
 * which field, instead of fastify's "body is not valid JSON". Empty and broken bodies fail with fastify's
 * own errors, as with its default parser.
 */
export function parseJsonBytes(body: string | Buffer): { ok: true; value: unknown } | { ok: false; err: Error } {
  if (body.length === 0) return { ok: false, err: new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY() };
  if (typeof body !== 'string' && !isUtf8(body)) return { ok: false, err: new PlantBridgeError('SCHEMA_INVALID', 'body is not valid UTF-8 (JSON must be UTF-8 encoded)') };
  try {
    return { ok: true, value: JSON.parse(typeof body === 'string' ? body : body.toString('utf8')) };
  } catch {
    return { ok: false, err: new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY() };
  }
}

/** Registers the agents' JSON parser in a route scope (the console's routes keep fastify's own). */
export function agentJsonBodies(scope: FastifyInstance): void {
  scope.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req: FastifyRequest, body: string | Buffer, done: (err: Error | null, body?: unknown) => void) => {
    const r = parseJsonBytes(body);
    if (r.ok) done(null, r.value);
    else done(r.err);
  });
}
