import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { ErpError } from '../erp-adapter.ts';
import { Secret, SecretRef, PlantBridgeError } from '../../../contracts/index.ts';

/**
 * The one HTTP client every ERP adapter uses. It exists (rather than got) because exactly-once needs
 * one fact that generic clients hide: whether the request could have reached the server. A failure
 * before a socket connected means nothing was applied (UPSTREAM_UNAVAILABLE); any failure after that,
 * on a request that changes data, is in doubt (ERP_IN_DOUBT) and is resolved by a lookup.
 *
 * It never follows redirects, never retries, caps the response body, and has one deadline for the
 * whole exchange (queueing for a socket included).
 */

export interface ErpHttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** the body was cut at maxResponseBytes: never parse it as a success */
  truncated: boolean;
}

export interface ErpRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: URL | string;
  headers?: OutgoingHttpHeaders;
  body?: string | Buffer;
  timeoutMs: number;
  maxResponseBytes: number;
  signal?: AbortSignal;
  /** false for reads: a failure after sending is then still "nothing applied" */
  mutating: boolean;
}

/** Connection pool for one adapter; maxSockets bounds parallel calls to the ERP. */
export class ErpHttpClient {
  readonly #http: HttpAgent;
  readonly #https: HttpsAgent;

  constructor(opts: { maxSockets: number }) {
    const common = { keepAlive: true, maxSockets: opts.maxSockets, maxFreeSockets: opts.maxSockets, scheduling: 'lifo' as const };
    this.#http = new HttpAgent(common);
    this.#https = new HttpsAgent(common);
  }

  request(req: ErpRequest): Promise<ErpHttpResponse> {
    const url = typeof req.url === 'string' ? new URL(req.url) : req.url;
    const isHttps = url.protocol === 'https:';
    const send = isHttps ? httpsRequest : httpRequest;
    const body = req.body === undefined ? undefined : Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body, 'utf8');
    const headers: OutgoingHttpHeaders = { ...req.headers };
    if (body) headers['content-length'] = body.length;

    return new Promise<ErpHttpResponse>((resolve, reject) => {
      let connected = false;
      let settled = false;
      const what = `${req.method} ${url.origin}${url.pathname}`;

      const fail = (reason: string, cause?: unknown, inDoubtPossible = true) => {
        if (settled) return;
        settled = true;
        cleanup();
        clientReq.destroy();
        const inDoubt = req.mutating && connected && inDoubtPossible;
        reject(
          new ErpError(
            inDoubt ? 'ERP_IN_DOUBT' : 'UPSTREAM_UNAVAILABLE',
            `${what}: ${reason}${inDoubt ? ' after the request was sent; the outcome is unknown' : ''}`,
            { cause, erpCode: 'TRANSPORT' },
          ),
        );
      };

      const timer = setTimeout(() => fail(`no complete answer within ${req.timeoutMs} ms`), req.timeoutMs);
      const onAbort = () => fail('aborted by the caller');
      const cleanup = () => {
        clearTimeout(timer);
        req.signal?.removeEventListener('abort', onAbort);
      };

      const clientReq = send(url, { method: req.method, headers, agent: isHttps ? this.#https : this.#http });
      if (req.signal) {
        if (req.signal.aborted) {
          queueMicrotask(onAbort);
        } else {
          req.signal.addEventListener('abort', onAbort, { once: true });
        }
      }
      clientReq.on('socket', (socket) => {
        // A reused keep-alive socket is already connected; a new one connects later (or is refused).
        // Over TLS no request byte leaves before the handshake, so that is the moment that counts.
        if (!socket.connecting) connected = true;
        else socket.once(isHttps ? 'secureConnect' : 'connect', () => (connected = true));
      });
      clientReq.on('error', (err: NodeJS.ErrnoException) => fail(err.code ?? err.message, err));
      clientReq.on('response', (res) => {
        connected = true;
        const chunks: Buffer[] = [];
        let size = 0;
        let truncated = false;
        const finish = () => {
          if (settled) return;
          settled = true;
          cleanup();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), truncated });
        };
        res.on('data', (chunk: Buffer) => {
          if (truncated) return;
          if (size + chunk.length > req.maxResponseBytes) {
            chunks.push(chunk.subarray(0, req.maxResponseBytes - size));
            size = req.maxResponseBytes;
            truncated = true;
            finish();
            // stop reading a hostile body: this socket is not reused
            res.destroy();
            return;
          }
          chunks.push(chunk);
          size += chunk.length;
        });
        res.on('end', finish);
        res.on('aborted', () => fail('the connection closed in the middle of the answer'));
        res.on('error', (err) => fail(`the answer broke off (${(err as NodeJS.ErrnoException).code ?? err.message})`, err));
        res.on('close', () => {
          if (!res.complete && !truncated) fail('the connection closed in the middle of the answer');
        });
      });
      clientReq.end(body);
    });
  }

  close(): void {
    this.#http.destroy();
    this.#https.destroy();
  }
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date; undefined when absent or unusable. */
export function retryAfterMs(headers: IncomingHttpHeaders, now = Date.now()): number | undefined {
  const v = headers['retry-after'];
  if (typeof v !== 'string' || v.trim() === '') return undefined;
  if (/^\s*\d+\s*$/.test(v)) return Math.min(Number(v) * 1000, 24 * 3_600_000);
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, Math.min(t - now, 24 * 3_600_000));
}

/** JSON from a response only when it says it is JSON and parses completely; otherwise undefined. */
export function jsonBody(res: ErpHttpResponse): unknown {
  if (res.truncated) return undefined;
  const ct = String(res.headers['content-type'] ?? '');
  if (!/\bjson\b/i.test(ct)) return undefined;
  try {
    return JSON.parse(res.body.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** A short, single-line excerpt of a body for error messages and dead letters (never the whole thing). */
export function excerpt(body: Buffer | string, max = 200): string {
  const s = (typeof body === 'string' ? body : body.subarray(0, max * 4).toString('utf8')).replace(/\s+/g, ' ').trim();
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** The secret's value; config holds a SecretRef until the entry point resolved it. */
export function reveal(s: Secret | SecretRef | string): string {
  if (s instanceof Secret) return s.reveal();
  if (typeof s === 'string') return s;
  throw new PlantBridgeError('CONFIG_INVALID', `secret ${s.ref} was not resolved; call resolveSecrets() on the config first`);
}

/** A minimal cookie jar: name=value pairs from Set-Cookie, sent back on every call (SAP CSRF needs them). */
export class CookieJar {
  readonly #cookies = new Map<string, string>();

  store(headers: IncomingHttpHeaders): void {
    const set = headers['set-cookie'];
    if (!set) return;
    for (const line of set) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => {
        const [k, v] = a.split('=').map((x) => x?.trim());
        if (/^max-age$/i.test(k ?? '')) return Number(v) <= 0;
        if (/^expires$/i.test(k ?? '')) return Date.parse(v ?? '') < Date.now();
        return false;
      });
      if (expired || value === '') this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }

  header(): string | undefined {
    if (this.#cookies.size === 0) return undefined;
    return [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  clear(): void {
    this.#cookies.clear();
  }
}

export interface ClientCredentialsOptions {
  http: ErpHttpClient;
  tokenUrl: string;
  clientId: string;
  clientSecret: () => string;
  scope?: string;
  resource?: string;
  timeoutMs: number;
}

/**
 * OAuth 2.0 client credentials with a cached token. One fetch at a time (single flight); the token is
 * renewed a minute before it expires, or at once after a 401.
 */
export class ClientCredentialsToken {
  #token: { value: string; expiresAt: number } | undefined;
  #inflight: Promise<string> | undefined;
  readonly #opts: ClientCredentialsOptions;

  constructor(opts: ClientCredentialsOptions) {
    this.#opts = opts;
  }

  invalidate(value?: string): void {
    if (value === undefined || this.#token?.value === value) this.#token = undefined;
  }

  async get(signal?: AbortSignal): Promise<string> {
    if (this.#token && this.#token.expiresAt > Date.now()) return this.#token.value;
    this.#inflight ??= this.#fetch(signal).finally(() => (this.#inflight = undefined));
    return this.#inflight;
  }

  async #fetch(signal?: AbortSignal): Promise<string> {
    const o = this.#opts;
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (o.scope) form.set('scope', o.scope);
    if (o.resource) form.set('resource', o.resource);
    const basic = Buffer.from(`${encodeURIComponent(o.clientId)}:${encodeURIComponent(o.clientSecret())}`).toString('base64');
    const res = await o.http.request({
      method: 'POST',
      url: o.tokenUrl,
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: form.toString(),
      timeoutMs: o.timeoutMs,
      maxResponseBytes: 64 * 1024,
      signal,
      mutating: false,
    });
    const json = jsonBody(res) as { access_token?: unknown; expires_in?: unknown } | undefined;
    if (res.status !== 200 || !json || typeof json.access_token !== 'string' || json.access_token === '') {
      const auth = res.status === 400 || res.status === 401 || res.status === 403;
      throw new ErpError(
        'UPSTREAM_UNAVAILABLE',
        `token endpoint ${o.tokenUrl} answered ${res.status}${auth ? ' (check clientId and clientSecret)' : ''}: ${excerpt(res.body)}`,
        { erpCode: auth ? 'AUTH' : `HTTP_${res.status}`, retryAfterMs: retryAfterMs(res.headers) },
      );
    }
    const ttl = typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : 300;
    this.#token = { value: json.access_token, expiresAt: Date.now() + Math.max(ttl - 60, ttl / 2) * 1000 };
    return json.access_token;
  }
}
