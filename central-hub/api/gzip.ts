import { createGunzip } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { PlantBridgeError } from '../../contracts/index.ts';

/**
 * Accepts `Content-Encoding: gzip` request bodies (the forwarder's `hub.gzip` option, for slow WAN links).
 * The body limit applies to the decompressed bytes, so a small bomb is refused with 413 like a big body.
 */
export function acceptGzip(app: FastifyInstance): void {
  app.addHook('preParsing', async (req, _reply, payload) => {
    const enc = String(req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    if (enc === 'identity' || enc === '') return payload;
    if (enc !== 'gzip') throw new PlantBridgeError('SCHEMA_INVALID', `content-encoding "${enc}" is not supported; send gzip or no encoding`, { correlationId: req.id });
    const gunzip = createGunzip() as ReturnType<typeof createGunzip> & { receivedEncodedLength: number };
    // fastify compares this with Content-Length (the compressed size) once the body is read
    gunzip.receivedEncodedLength = 0;
    payload.on('data', (chunk: Buffer) => {
      gunzip.receivedEncodedLength += chunk.length;
    });
    payload.on('error', (err) => gunzip.destroy(err));
    gunzip.on('error', () => payload.unpipe(gunzip));
    payload.pipe(gunzip);
    return gunzip;
  });
}

/** zlib errors (truncated or corrupt gzip) are the client's fault: 400, not 500. */
export function isZlibError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && /^Z_/.test(code);
}
