import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import got, { type Got } from 'got';
import pRetry, { AbortError } from 'p-retry';
import type { Logger } from 'pino';
import {
  ErrorCodes,
  PlantBridgeError,
  schemaId,
  ulid,
  type ErrorCode,
  type IngestBatch,
  type IngestResult,
  type Secret,
} from '../../contracts/index.ts';
import { backoffDelay } from '../drivers/driver.ts';
import type { ClaimedTx, Outbox, Settlement } from '../outbox/outbox.ts';

/**
 * Claim -> ship -> settle (DESIGN.md §2). Items leave the outbox only with the hub's per-item result:
 * accepted and duplicate become `sent`, rejected ones become dead letters with the hub's code, and
 * anything unclear (network, 5xx, 429, a crash of this process) comes back later through the lease.
 */
export interface ForwarderOptions {
  outbox: Outbox;
  hubUrl: string;
  token: Secret;
  agentId: string;
  log: Logger;
  batchSize?: number;
  maxBatchBytes?: number;
  leaseMs?: number;
  requestTimeoutMs?: number;
  retryMaxDelayMs?: number;
  /** requests in flight at once; items of one order are never in two of them */
  inFlight?: number;
  /** PEM text of the CA that signed the hub's certificate */
  ca?: string;
  idleMs?: number;
  onForwarded?: (n: number) => void;
  onRejected?: (n: number) => void;
  onError?: (kind: string) => void;
}

export interface ForwarderState {
  state: 'idle' | 'sending' | 'backoff' | 'unauthorised' | 'stopped';
  lastError?: string;
  lastSuccessAt?: string;
  consecutiveFailures: number;
}

class HttpStatusError extends Error {
  readonly status: number;
  readonly retryAfterMs: number | undefined;
  readonly code: string | undefined;
  constructor(status: number, message: string, retryAfterMs?: number, code?: string) {
    super(message);
    this.status = status;
    this.retryAfterMs = retryAfterMs;
    this.code = code;
  }
}

export function parseRetryAfter(value: string | string[] | undefined, nowMs = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - nowMs);
}

export class Forwarder {
  private readonly o: Required<Omit<ForwarderOptions, 'ca' | 'onForwarded' | 'onRejected' | 'onError'>> & Pick<ForwarderOptions, 'ca' | 'onForwarded' | 'onRejected' | 'onError'>;
  private readonly http: Got;
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly waiters = new Set<() => void>();
  private status: ForwarderState = { state: 'idle', consecutiveFailures: 0 };
  private readonly agents: { http: HttpAgent; https: HttpsAgent };
  private forwardedTotal = 0;

  constructor(opts: ForwarderOptions) {
    this.o = {
      batchSize: 500,
      maxBatchBytes: 4 * 1024 * 1024,
      leaseMs: 120_000,
      requestTimeoutMs: 30_000,
      retryMaxDelayMs: 60_000,
      inFlight: 2,
      idleMs: 500,
      ...opts,
    };
    this.agents = { http: new HttpAgent({ keepAlive: true, maxSockets: 8 }), https: new HttpsAgent({ keepAlive: true, maxSockets: 8, ...(opts.ca ? { ca: opts.ca } : {}) }) };
    this.http = got.extend({
      prefixUrl: this.o.hubUrl.replace(/\/+$/, ''),
      retry: { limit: 0 },
      throwHttpErrors: false,
      timeout: { request: this.o.requestTimeoutMs },
      agent: this.agents,
      https: this.o.ca ? { certificateAuthority: this.o.ca, rejectUnauthorized: true } : { rejectUnauthorized: true },
      headers: { 'user-agent': 'plantbridge-agent' },
      hooks: {
        beforeRequest: [
          (options) => {
            options.headers.authorization = `Bearer ${this.o.token.reveal()}`;
          },
        ],
      },
    });
  }

  state(): ForwarderState {
    return { ...this.status };
  }

  get forwarded(): number {
    return this.forwardedTotal;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loops = Array.from({ length: this.o.inFlight }, () => this.loop());
  }

  /** New transactions were committed: ship them without waiting for the idle poll. */
  notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Stops claiming, lets in-flight requests finish and settle. */
  async stop(): Promise<void> {
    this.running = false;
    this.notify();
    await Promise.allSettled(this.loops);
    this.status.state = 'stopped';
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.waiters.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }

  private async loop(): Promise<void> {
    while (this.running) {
      let claimed: ClaimedTx[];
      try {
        claimed = this.o.outbox.claim(this.o.batchSize, this.o.leaseMs, this.o.maxBatchBytes);
      } catch (err) {
        this.o.log.warn({ err }, 'Could not claim from the outbox; will retry');
        await this.sleep(1000);
        continue;
      }
      if (claimed.length === 0) {
        if (this.status.state === 'sending') this.status.state = 'idle';
        await this.sleep(this.o.idleMs);
        continue;
      }
      this.status.state = 'sending';
      const delay = await this.ship(claimed);
      if (delay > 0 && this.running) await this.sleep(delay);
    }
  }

  /** Ships one batch and settles every item. Returns how long this loop should pause (backoff). */
  private async ship(claimed: ClaimedTx[]): Promise<number> {
    const batch: IngestBatch = {
      schema: schemaId('ingest-batch', 1, 0),
      batchId: ulid(),
      agentId: this.o.agentId,
      sentAt: new Date().toISOString(),
      items: claimed.map((c) => c.tx as unknown as Record<string, unknown>),
    };
    const log = this.o.log.child({ batchId: batch.batchId });
    try {
      const result = await pRetry(() => this.post(batch), {
        retries: 4,
        factor: 2,
        minTimeout: 250,
        maxTimeout: this.o.retryMaxDelayMs,
        randomize: true,
        shouldRetry: ({ error }) => this.running && isRetriable(error),
        onFailedAttempt: async ({ error, retriesLeft }) => {
          this.o.onError?.(errorKind(error));
          if (retriesLeft > 0 && error instanceof HttpStatusError && error.retryAfterMs !== undefined) {
            await this.sleep(Math.min(error.retryAfterMs, this.o.retryMaxDelayMs));
          }
        },
      });
      this.settleResult(claimed, result, log);
      this.status.consecutiveFailures = 0;
      this.status.lastSuccessAt = new Date().toISOString();
      delete this.status.lastError;
      return 0;
    } catch (err) {
      return this.settleFailure(claimed, err, log);
    }
  }

  /** Sends a heartbeat through the same authenticated, TLS-verified client. Best effort: never throws. */
  async sendHeartbeat(hb: unknown): Promise<{ ok: boolean; serverTime?: string; status?: number }> {
    try {
      const res = await this.http.post('v1/heartbeat', { json: hb, responseType: 'text' });
      let serverTime: string | undefined;
      try {
        serverTime = JSON.parse(res.body)?.serverTime;
      } catch {
        // not JSON: the status says enough
      }
      return { ok: res.statusCode === 200, status: res.statusCode, ...(serverTime ? { serverTime } : {}) };
    } catch {
      return { ok: false };
    }
  }

  private async post(batch: IngestBatch): Promise<IngestResult> {
    let res;
    try {
      res = await this.http.post('v1/ingest', { json: batch, responseType: 'text' });
    } catch (err) {
      // network errors, timeouts, TLS failures: nothing is known about the batch, retry
      throw err instanceof Error ? err : new Error(String(err));
    }
    const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
    let body: any;
    try {
      body = JSON.parse(res.body);
    } catch {
      body = undefined;
    }
    if (res.statusCode === 200 && body && Array.isArray(body.results)) return body as IngestResult;
    const code: string | undefined = body?.error?.code;
    const message: string = body?.error?.message ?? `hub answered ${res.statusCode}`;
    throw new HttpStatusError(res.statusCode, message, retryAfterMs, code);
  }

  private settleResult(claimed: ClaimedTx[], result: IngestResult, log: Logger): void {
    const byKey = new Map(result.results.map((r) => [r.idempotencyKey, r]));
    const settlements: Settlement[] = [];
    let sent = 0;
    let rejected = 0;
    for (const c of claimed) {
      const r = byKey.get(c.tx.idempotencyKey);
      if (!r) {
        // the hub did not answer for this item: it stays ours, try again soon
        settlements.push({ seq: c.seq, status: 'retry', delayMs: 1000, reason: 'no result for item' });
      } else if (r.status === 'accepted' || r.status === 'duplicate') {
        settlements.push({ seq: c.seq, status: 'sent', result: r });
        sent++;
      } else if (r.code && (ErrorCodes as Record<string, { retriable: boolean }>)[r.code]?.retriable) {
        settlements.push({ seq: c.seq, status: 'retry', delayMs: backoffDelay(c.attempts, 1000, this.o.retryMaxDelayMs), reason: r.reason });
      } else {
        settlements.push({ seq: c.seq, status: 'dead', code: r.code ?? 'SCHEMA_INVALID', reason: r.reason ?? 'rejected by the hub' });
        rejected++;
        log.warn({ idempotencyKey: c.tx.idempotencyKey, code: r.code, reason: r.reason }, 'Hub rejected a transaction: dead-lettered');
      }
    }
    this.o.outbox.settle(settlements);
    this.forwardedTotal += sent;
    if (sent) this.o.onForwarded?.(sent);
    if (rejected) this.o.onRejected?.(rejected);
  }

  private settleFailure(claimed: ClaimedTx[], err: unknown, log: Logger): number {
    this.status.consecutiveFailures++;
    this.status.lastError = err instanceof Error ? err.message : String(err);
    const delay = backoffDelay(this.status.consecutiveFailures, 1000, this.o.retryMaxDelayMs);
    if (err instanceof HttpStatusError && !isRetriable(err)) {
      if (err.status === 401) {
        // a credential problem is not the items' fault: keep them, alarm, and retry slowly
        this.status.state = 'unauthorised';
        log.error({ status: err.status, code: err.code }, 'The hub refused this agent\'s credential: transactions are kept; fix the credential (enroll again)');
        this.o.outbox.settle(claimed.map((c) => ({ seq: c.seq, status: 'retry' as const, delayMs: delay })));
        return delay;
      }
      if (err.status === 413 && claimed.length > 1) {
        // too large for the hub: put back and ship smaller batches
        this.o.maxBatchBytes = Math.max(64 * 1024, Math.floor(this.o.maxBatchBytes / 2));
        this.o.batchSize = Math.max(1, Math.floor(claimed.length / 2));
        log.warn({ batchSize: this.o.batchSize }, 'Hub said the batch is too large; shipping smaller batches');
        this.o.outbox.settle(claimed.map((c) => ({ seq: c.seq, status: 'retry' as const, delayMs: 0 })));
        return 0;
      }
      const code = (err.code && err.code in ErrorCodes ? err.code : 'SCHEMA_INVALID') as ErrorCode;
      log.warn({ status: err.status, code, reason: err.message }, 'Hub refused the batch: its items are dead-lettered with the hub\'s reason');
      this.o.outbox.settle(claimed.map((c) => ({ seq: c.seq, status: 'dead' as const, code, reason: `${err.status}: ${err.message}` })));
      this.o.onRejected?.(claimed.length);
      return 0;
    }
    this.status.state = 'backoff';
    log.warn({ err: this.status.lastError, retryInMs: delay, items: claimed.length }, 'Hub not reachable or busy; transactions stay in the outbox');
    const retryAfter = err instanceof HttpStatusError ? err.retryAfterMs : undefined;
    const wait = Math.min(this.o.retryMaxDelayMs, Math.max(delay, retryAfter ?? 0));
    this.o.outbox.settle(claimed.map((c) => ({ seq: c.seq, status: 'retry' as const, delayMs: wait })));
    return wait;
  }
}

function isRetriable(err: unknown): boolean {
  if (err instanceof AbortError) return false;
  if (err instanceof HttpStatusError) return err.status === 429 || err.status >= 500;
  if (err instanceof PlantBridgeError) return err.retriable;
  // got's RequestError, TimeoutError, connection errors
  return true;
}

function errorKind(err: unknown): string {
  if (err instanceof HttpStatusError) return `http_${err.status}`;
  const code = (err as { code?: string }).code;
  return code ? code.toLowerCase() : 'network';
}
