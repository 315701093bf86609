import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * What every ERP simulator shares: a real HTTP server on port 0, per-call latency, a queue of failure
 * knobs, hostile answers and the "committed, then the answer never arrived" trick. Each simulator adds
 * its own API on top. Simulators are for the demo and tests; they are not hardened servers.
 */

export type HostileBody =
  /** an HTML error page from a proxy or login screen */
  | 'html'
  /** JSON cut in the middle */
  | 'truncated-json'
  /** a 10 MB body */
  | 'huge'
  /** valid-looking JSON labelled text/plain */
  | 'wrong-content-type'
  /** no body at all */
  | 'empty';

export type FaultScope = 'post' | 'get' | 'any';

export type SimFault = (
  | /** answer this status (5xx, 429, 401, 403...) instead of processing; nothing is applied */
  { kind: 'status'; status: number; retryAfterS?: number; body?: HostileBody }
  /** the ERP applies the posting, then the answer never arrives (held past the client timeout, or the socket is destroyed) */
  | { kind: 'timeout-after-commit'; mode?: 'hold' | 'destroy' }
  /** the ERP does not apply it and the answer never arrives: a timeout with nothing done */
  | { kind: 'timeout-before-commit'; mode?: 'hold' | 'destroy' }
  /** a garbage answer; with commit the posting was applied before the garbage was sent */
  | { kind: 'hostile'; body: HostileBody; status?: number; commit?: boolean }
  /** the ERP's own lock error (SAP: 423 or 400 "locked by user") */
  | { kind: 'lock'; status?: number }
) & {
  /** how many calls it affects (default 1, or unlimited when forMs is given) */
  count?: number;
  /** affects every matching call for this long */
  forMs?: number;
  /** which calls it affects; default: 'post' for commit-related faults, 'any' otherwise */
  on?: FaultScope;
};

interface ActiveFault {
  fault: SimFault;
  remaining: number;
  until: number;
}

export class FaultQueue {
  #faults: ActiveFault[] = [];

  add(fault: SimFault): void {
    const remaining = fault.count ?? (fault.forMs !== undefined ? Number.POSITIVE_INFINITY : 1);
    const until = fault.forMs !== undefined ? Date.now() + fault.forMs : Number.POSITIVE_INFINITY;
    this.#faults.push({ fault, remaining, until });
  }

  clear(): void {
    this.#faults = [];
  }

  /** The fault that applies to this call (and consumes one of its uses), if any. */
  take(method: string): SimFault | undefined {
    const now = Date.now();
    this.#faults = this.#faults.filter((f) => f.remaining > 0 && f.until > now);
    const isPost = method !== 'GET' && method !== 'HEAD';
    for (const f of this.#faults) {
      const scope = f.fault.on ?? (f.fault.kind === 'status' || f.fault.kind === 'hostile' && !f.fault.commit ? 'any' : 'post');
      if (scope === 'post' && !isPost) continue;
      if (scope === 'get' && isPost) continue;
      f.remaining--;
      return f.fault;
    }
    return undefined;
  }
}

export const HUGE_BODY_BYTES = 10 * 1024 * 1024;

/** Writes one of the hostile bodies. Never throws, even when the client has gone. */
export function writeHostile(res: ServerResponse, body: HostileBody, status: number): void {
  res.on('error', () => {});
  switch (body) {
    case 'html':
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<html><head><title>${status} Error</title></head><body><h1>Service cannot be reached</h1><p>ICM error page</p></body></html>`);
      return;
    case 'truncated-json':
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end('{"d":{"ConfirmationGroup":"10000');
      return;
    case 'wrong-content-type':
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end('{"d":{"ConfirmationGroup":"1000001","ConfirmationCount":"1","MaterialDocument":"4900000001","MaterialDocumentYear":"2026"}}');
      return;
    case 'empty':
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': '0' });
      res.end();
      return;
    case 'huge': {
      res.writeHead(status, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      let sent = 0;
      res.write('{"d":{"padding":"');
      const pump = () => {
        while (sent < HUGE_BODY_BYTES) {
          sent += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end('"}}');
      };
      res.once('close', () => (sent = HUGE_BODY_BYTES));
      pump();
      return;
    }
  }
}

/** Never answers (until the client gives up or the simulator stops), or kills the connection. */
export function noAnswer(res: ServerResponse, mode: 'hold' | 'destroy' = 'hold'): void {
  if (mode === 'destroy') {
    res.socket?.destroy();
    return;
  }
  // hold: the client's timeout fires first; stop() destroys the socket
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.on('error', () => {});
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

export async function readBody(req: IncomingMessage, limit = 1024 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new Error('request body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();
}

export interface SimServer {
  url: string;
  server: Server;
  stop(): Promise<void>;
}

/** Starts a handler on 127.0.0.1:port (0 = any free port), tracking sockets so stop() is immediate. */
export async function startSimServer(
  handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
  opts: { port?: number; host?: string } = {},
): Promise<SimServer> {
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    handler(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: { code: 'SIM/500', message: { lang: 'en', value: `simulator error: ${String(err)}` } } });
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5000;
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://${host}:${port}`,
    server,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
