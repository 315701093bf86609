import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { valueAt } from './template.ts';
import { FaultQueue, noAnswer, readBody, sendJson, sleep, startSimServer, writeHostile, type SimFault } from '../sim-kit.ts';

/**
 * A webhook receiver like the ones the rest adapter is pointed at: POST /postings stores a posting and
 * answers 201 {id}, GET /postings?key=… finds it (200) or not (404), GET /health. It checks the bearer
 * token, the HMAC signature and the Idempotency-Key header, and has the same failure knobs as the other
 * simulators. With `dedupe: true` it answers a repeated key with the first posting, like a receiver
 * that honours Idempotency-Key; by default it does not, so tests prove the adapter's own guarantees.
 */

export const REST_SIM_TOKEN = 'sim-bearer-token';
export const REST_SIM_SIGNING_SECRET = 'sim-signing-secret';

export interface RestSimulatorOptions {
  port?: number;
  latencyMs?: number;
  /** require this bearer token (default REST_SIM_TOKEN; null = no auth) */
  token?: string | null;
  /** verify X-PlantBridge-Signature with this secret (default REST_SIM_SIGNING_SECRET; null = not checked) */
  signingSecret?: string | null;
  dedupe?: boolean;
}

export interface RestPosting {
  id: string;
  key: string;
  order: string | undefined;
  body: unknown;
  headers: Record<string, string | string[] | undefined>;
}

export interface RestSimulator {
  url: string;
  /** orders `GET /released?plant=&since=` lists (released-not-started); `raw` rows are served as they are */
  putReleasedOrder(o: { plant: string; order: string; workCenter?: string; scheduledStart: string } | { plant: string; raw: unknown }): void;
  stop(): Promise<void>;
  postings(): RestPosting[];
  setFault(fault: SimFault): void;
  clearFaults(): void;
  setLatency(ms: number): void;
  closeOrder(order: string): void;
  reopenOrder(order: string): void;
  stats(): { posts: number; gets: number; badSignatures: number };
}

function orderOf(body: unknown): string | undefined {
  for (const p of ['order', 'data.order', 'transaction.data.order', 'tx.data.order']) {
    const v = valueAt(body, p);
    if (typeof v === 'string') return v;
  }
  return undefined;
}

export function verifySignature(secret: string, header: string | undefined, body: string, nowMs = Date.now(), toleranceS = 300): boolean {
  const m = /^t=(\d+),sha256=([0-9a-f]{64})$/.exec(header ?? '');
  if (!m) return false;
  if (Math.abs(nowMs / 1000 - Number(m[1])) > toleranceS) return false;
  const expected = createHmac('sha256', secret).update(`${m[1]}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(m[2], 'hex'));
}

export async function startRestSimulator(opts: RestSimulatorOptions = {}): Promise<RestSimulator> {
  let latencyMs = opts.latencyMs ?? 0;
  const token = opts.token === undefined ? REST_SIM_TOKEN : opts.token;
  const secret = opts.signingSecret === undefined ? REST_SIM_SIGNING_SECRET : opts.signingSecret;
  const faults = new FaultQueue();
  const closed = new Set<string>();
  const postings: RestPosting[] = [];
  const released: Array<{ plant: string; row: unknown; start?: string }> = [];
  const stats = { posts: 0, gets: 0, badSignatures: 0 };

  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    await sleep(latencyMs);
    const url = new URL(req.url ?? '/', 'http://sim');
    const method = req.method ?? 'GET';
    if (url.pathname === '/health') return sendJson(res, 200, { status: 'up' });
    if (token !== null && req.headers.authorization !== `Bearer ${token}`) {
      return sendJson(res, 401, { error: { code: 'UNAUTHENTICATED', message: 'missing or wrong bearer token' } });
    }
    const fault = faults.take(method);
    if (fault?.kind === 'status') {
      if (fault.retryAfterS !== undefined) res.setHeader('retry-after', String(fault.retryAfterS));
      if (fault.body) return writeHostile(res, fault.body, fault.status);
      return sendJson(res, fault.status, { error: { code: `HTTP_${fault.status}`, message: 'simulated failure' } });
    }
    if (fault?.kind === 'hostile' && !fault.commit) return writeHostile(res, fault.body, fault.status ?? 200);
    if (fault?.kind === 'timeout-before-commit') return noAnswer(res, fault.mode);

    if (url.pathname === '/released' && method === 'GET') {
      stats.gets++;
      const plant = url.searchParams.get('plant');
      const since = Date.parse(url.searchParams.get('since') ?? '');
      if (!plant || Number.isNaN(since)) return sendJson(res, 400, { error: { code: 'BAD_QUERY', message: 'plant and since are required' } });
      return sendJson(res, 200, { orders: released.filter((r) => r.plant === plant && (r.start === undefined || Date.parse(r.start) >= since)).map((r) => r.row) });
    }
    if (url.pathname === '/postings' && method === 'GET') {
      stats.gets++;
      const key = url.searchParams.get('key') ?? '';
      const p = postings.find((x) => x.key === key);
      return p ? sendJson(res, 200, { id: p.id, key: p.key }) : sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no posting with key ${key}` } });
    }
    if (url.pathname === '/postings' && method === 'POST') {
      stats.posts++;
      const raw = await readBody(req);
      if (secret !== null && !verifySignature(secret, req.headers['x-plantbridge-signature'] as string | undefined, raw)) {
        stats.badSignatures++;
        return sendJson(res, 401, { error: { code: 'BAD_SIGNATURE', message: 'signature does not match the body' } });
      }
      const key = req.headers['idempotency-key'];
      if (typeof key !== 'string' || key === '') return sendJson(res, 400, { error: { code: 'KEY_REQUIRED', message: 'Idempotency-Key header is required' } });
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        return sendJson(res, 400, { error: { code: 'BAD_JSON', message: 'body is not JSON' } });
      }
      const order = orderOf(body);
      if (order !== undefined && closed.has(order)) return sendJson(res, 422, { error: { code: 'ORDER_CLOSED', message: `Order ${order} is closed` } });
      if (fault?.kind === 'lock') return sendJson(res, fault.status ?? 423, { error: { code: 'LOCKED', message: `Order ${order ?? ''} is locked by another posting` } });
      const existing = opts.dedupe ? postings.find((p) => p.key === key) : undefined;
      const p = existing ?? { id: `DOC-${String(postings.length + 1).padStart(6, '0')}`, key, order, body, headers: { ...req.headers } };
      if (!existing) postings.push(p);
      if (fault?.kind === 'timeout-after-commit') return noAnswer(res, fault.mode);
      if (fault?.kind === 'hostile' && fault.commit) return writeHostile(res, fault.body, fault.status ?? 201);
      return sendJson(res, existing ? 200 : 201, { id: p.id, key: p.key }, { location: `/postings/${p.id}` });
    }
    sendJson(res, 404, { error: { code: 'NO_ROUTE', message: `${method} ${url.pathname}` } });
  };

  const srv = await startSimServer(handler, { port: opts.port });
  return {
    url: srv.url,
    stop: srv.stop,
    putReleasedOrder: (o) =>
      released.push('raw' in o ? { plant: o.plant, row: o.raw } : { plant: o.plant, start: o.scheduledStart, row: { order: o.order, workCenter: o.workCenter, scheduledStart: o.scheduledStart, status: 'released' } }),
    postings: () => [...postings],
    setFault: (f) => faults.add(f),
    clearFaults: () => faults.clear(),
    setLatency: (ms) => (latencyMs = ms),
    closeOrder: (o) => closed.add(o),
    reopenOrder: (o) => closed.delete(o),
    stats: () => ({ ...stats }),
  };
}

if (import.meta.main) {
  const sim = await startRestSimulator({ port: Number(process.argv[2] ?? 0), latencyMs: Number(process.argv[3] ?? 0) });
  console.log(`webhook simulator on ${sim.url}/postings (bearer ${REST_SIM_TOKEN}, signing secret ${REST_SIM_SIGNING_SECRET})`);
  process.on('SIGINT', () => void sim.stop().then(() => process.exit(0)));
}
