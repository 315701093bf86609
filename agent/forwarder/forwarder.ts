import type { Agent as HttpAgent } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import got, { type Got } from 'got';
import pRetry, { AbortError } from 'p-retry';
import type { Logger } from 'pino';
import { Gauge, Histogram, type Registry } from 'prom-client';
import {
  ErrorCodes,
  PlantBridgeError,
  asErrorCode,
  schemaId,
  ulid,
  type AlarmCode,
  type IngestResult,
  type ItemResult,
  type Outcome,
  type OutcomesResponse,
  type Secret,
} from '../../contracts/index.ts';
import { backoffDelay } from '../drivers/driver.ts';
import type { ClaimedTx, Outbox, Settlement } from '../outbox/outbox.ts';
import { explainTlsError, hubAgents } from './hub-tls.ts';

/**
 * Claim -> ship -> settle (DESIGN.md §2). Items leave the outbox only with the hub's per-item result:
 * accepted and duplicate become `sent`, rejected ones become dead letters with the hub's code, and
 * anything unclear (network, 5xx, 429, a crash of this process) comes back later through the lease.
 *
 * Order: the outbox never leases one order's items twice at once, and one claim is split into lanes by
 * work center and order, so the items of one order travel in one lane, in outbox order, one request
 * after the other. Different orders travel in parallel lanes (up to `inFlight` requests).
 */
export interface ForwarderOptions {
  outbox: Pick<Outbox, 'claim' | 'settle' | 'stats'>;
  hubUrl: string;
  token: Secret;
  agentId: string;
  log: Logger;
  batchSize?: number;
  maxBatchBytes?: number;
  leaseMs?: number;
  requestTimeoutMs?: number;
  /** cap of the jittered exponential backoff (default 60 s) */
  retryMaxDelayMs?: number;
  /** attempts of one request before its items go back to the outbox with a delay */
  retries?: number;
  /** requests in flight at once (1-4); items of one order are never in two of them */
  inFlight?: number;
  /** PEM text of the CA that signed the hub's certificate */
  ca?: string;
  /** SHA-256 fingerprint of the hub's certificate, pinned */
  fingerprint?: string;
  /** PEM text of the agent's client certificate and key (a hub with mutual TLS) */
  clientCert?: string;
  clientKey?: string;
  /** allow http:// to a host that is not this machine (a trusted TLS-terminating proxy) */
  allowPlainHttp?: boolean;
  /** gzip request bodies (Content-Encoding: gzip) */
  gzip?: boolean;
  idleMs?: number;
  /** where the ERP outcomes of sent transactions go; without it they are not fetched */
  outcomes?: OutcomeSink;
  outcomesIntervalMs?: number;
  /** backlog, rate, ETA, in-flight and request-duration metrics are registered here when given */
  registry?: Registry;
  /** how often drain progress is measured and, while there is a backlog, logged */
  progressIntervalMs?: number;
  onForwarded?: (n: number) => void;
  onRejected?: (n: number) => void;
  onError?: (kind: string) => void;
}

/**
 * Receives the ERP outcomes of this agent's transactions (GET /v1/agents/me/outcomes) and marks the
 * sent rows posted or failed; it keeps the cursor with them (same commit), so a restart resumes.
 */
export interface OutcomeSink {
  cursor(): string;
  apply(items: Array<{ idempotencyKey: string; outcome: Outcome }>, cursor: string): void;
}

export interface ForwarderState {
  state: 'idle' | 'sending' | 'backoff' | 'unauthorised' | 'tls-refused' | 'stopped';
  lastError?: string;
  lastSuccessAt?: string;
  consecutiveFailures: number;
  /** set while an operator must act (credential refused, hub certificate refused) */
  alarm?: { code: AlarmCode; message: string; since: string };
}

export interface DrainProgress {
  backlog: number;
  ratePerS: number;
  /** seconds until the backlog is gone at the current rate; null while nothing moves */
  etaS: number | null;
}

class HttpStatusError extends Error {
  readonly status: number;
  readonly retryAfterMs: number | undefined;
  /** the hub's error code as it came (any string: another process) */
  readonly code: string | undefined;
  constructor(status: number, message: string, retryAfterMs?: number, code?: string) {
    super(message);
    this.status = status;
    this.retryAfterMs = retryAfterMs;
    this.code = code;
  }
}

class TlsRefused extends Error {}

export function parseRetryAfter(value: string | string[] | undefined, nowMs = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - nowMs);
}

const LOOPBACK = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/;
const ACCEPTED = { status: 'accepted' } as const;
const BATCH_OVERHEAD = 200;

type Resolved = Required<Omit<ForwarderOptions, 'ca' | 'fingerprint' | 'clientCert' | 'clientKey' | 'outcomes' | 'registry' | 'onForwarded' | 'onRejected' | 'onError'>> &
  Pick<ForwarderOptions, 'ca' | 'fingerprint' | 'clientCert' | 'clientKey' | 'outcomes' | 'registry' | 'onForwarded' | 'onRejected' | 'onError'>;

export class Forwarder {
  private readonly o: Resolved;
  private readonly http: Got;
  private running = false;
  private loopDone: Promise<void> | undefined;
  private outcomesDone: Promise<void> | undefined;
  private readonly active = new Set<Promise<void>>();
  private readonly waiters = new Set<() => void>();
  private status: ForwarderState = { state: 'idle', consecutiveFailures: 0 };
  private readonly agents: { http: HttpAgent; https: HttpsAgent };
  private forwardedTotal = 0;
  private pauseUntil = 0;
  private inFlightRequests = 0;
  private readonly progress = { backlog: 0, ratePerS: 0, etaS: null as number | null, at: 0, forwardedAt: 0, draining: false, drainStartedAt: 0, drainStartForwarded: 0, lastLogAt: 0 };
  private readonly m: { backlog: Gauge; rate: Gauge; eta: Gauge; inFlight: Gauge; seconds: Histogram } | undefined;

  constructor(opts: ForwarderOptions) {
    this.o = {
      batchSize: 500,
      maxBatchBytes: 4 * 1024 * 1024,
      // a lane may hold several batches, each retried for up to ~(retries + 1) x requestTimeout: the lease outlasts that
      leaseMs: 600_000,
      requestTimeoutMs: 30_000,
      retryMaxDelayMs: 60_000,
      retries: 4,
      inFlight: 2,
      allowPlainHttp: false,
      gzip: false,
      idleMs: 500,
      outcomesIntervalMs: 30_000,
      progressIntervalMs: 5_000,
      ...opts,
    };
    this.o.inFlight = Math.max(1, Math.min(4, this.o.inFlight));
    const url = new URL(this.o.hubUrl);
    if (url.protocol === 'http:' && !LOOPBACK.test(url.hostname) && !this.o.allowPlainHttp) {
      throw new PlantBridgeError('CONFIG_INVALID', `hub.url ${url.origin} is plain http to another machine: the credential would travel unencrypted. Use https://, or set hub.allowPlainHttp: true behind a trusted TLS-terminating proxy`);
    }
    this.agents = hubAgents({
      ...(opts.ca ? { ca: opts.ca } : {}),
      ...(opts.fingerprint ? { fingerprint: opts.fingerprint } : {}),
      ...(opts.clientCert && opts.clientKey ? { clientCert: opts.clientCert, clientKey: opts.clientKey } : {}),
    });
    this.http = got.extend({
      prefixUrl: this.o.hubUrl.replace(/\/+$/, ''),
      retry: { limit: 0 },
      throwHttpErrors: false,
      timeout: { request: this.o.requestTimeoutMs },
      agent: this.agents,
      // verification stays on in every mode; a pinned certificate is checked by the agent's socket factory
      https: {
        rejectUnauthorized: true,
        ...(this.o.ca ? { certificateAuthority: this.o.ca } : {}),
        ...(this.o.clientCert && this.o.clientKey ? { certificate: this.o.clientCert, key: this.o.clientKey } : {}),
      },
      headers: { 'user-agent': 'plantbridge-agent' },
      hooks: {
        beforeRequest: [
          (options) => {
            options.headers.authorization = `Bearer ${this.o.token.reveal()}`;
          },
        ],
      },
    });
    if (opts.registry) {
      const registers = [opts.registry];
      this.m = {
        backlog: new Gauge({ name: 'plantbridge_agent_forward_backlog_transactions', help: 'Transactions waiting to be forwarded (measured while forwarding)', registers }),
        rate: new Gauge({ name: 'plantbridge_agent_forward_rate_per_second', help: 'Transactions the hub confirmed per second, recent', registers }),
        eta: new Gauge({ name: 'plantbridge_agent_forward_eta_seconds', help: 'Seconds until the backlog is drained at the recent rate (-1: not moving)', registers }),
        inFlight: new Gauge({ name: 'plantbridge_agent_forward_in_flight_requests', help: 'Ingest requests in flight', registers }),
        seconds: new Histogram({
          name: 'plantbridge_agent_forward_request_seconds',
          help: 'Duration of ingest requests, by outcome',
          labelNames: ['outcome'],
          buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
          registers,
        }),
      };
    }
  }

  state(): ForwarderState {
    return { ...this.status };
  }

  get forwarded(): number {
    return this.forwardedTotal;
  }

  /** Backlog, recent rate and ETA, as last measured (every progressIntervalMs while forwarding). */
  drainProgress(): DrainProgress {
    return { backlog: this.progress.backlog, ratePerS: this.progress.ratePerS, etaS: this.progress.etaS };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.progress.at = performance.now();
    this.loopDone = this.loop();
    if (this.o.outcomes) this.outcomesDone = this.outcomesLoop(this.o.outcomes);
  }

  /** New transactions were committed: ship them without waiting for the idle poll. */
  notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Stops claiming, lets in-flight requests finish and settle. */
  async stop(): Promise<void> {
    this.running = false;
    this.notify();
    await this.loopDone;
    await this.outcomesDone;
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
      this.measureProgress();
      const free = this.o.inFlight - this.active.size;
      if (free <= 0) {
        await Promise.race(this.active);
        continue;
      }
      const pause = this.pauseUntil - Date.now();
      if (pause > 0) {
        await Promise.race([...this.active, this.sleep(pause)]);
        continue;
      }
      let claimed: ClaimedTx[];
      try {
        claimed = this.o.outbox.claim(free * this.o.batchSize, this.o.leaseMs, free * this.o.maxBatchBytes);
      } catch (err) {
        this.o.log.warn({ err }, 'Could not claim from the outbox; will retry');
        await this.sleep(1000);
        continue;
      }
      if (claimed.length === 0) {
        if (this.active.size === 0 && this.status.state === 'sending') this.status.state = 'idle';
        await Promise.race([...this.active, this.sleep(this.o.idleMs)]);
        continue;
      }
      this.status.state = this.status.state === 'idle' || this.status.state === 'backoff' ? 'sending' : this.status.state;
      for (const lane of splitLanes(claimed, free)) {
        const p: Promise<void> = this.runLane(lane).finally(() => this.active.delete(p));
        this.active.add(p);
      }
    }
    await Promise.allSettled([...this.active]);
  }

  /** Ships one lane's batches one after the other; after a failure the rest goes back, keeping order. */
  private async runLane(items: ClaimedTx[]): Promise<void> {
    let rest = items;
    while (rest.length > 0) {
      const batch = this.cut(rest);
      rest = rest.slice(batch.length);
      const delay = await this.ship(batch);
      if (delay !== undefined) {
        if (rest.length) this.o.outbox.settle(rest.map((c) => ({ seq: c.seq, lease: c.lease, status: 'retry' as const, delayMs: delay })));
        return;
      }
    }
  }

  /** The longest prefix within batchSize and maxBatchBytes (at least one item). */
  private cut(items: ClaimedTx[]): ClaimedTx[] {
    let bytes = BATCH_OVERHEAD;
    let n = 0;
    while (n < items.length && n < this.o.batchSize) {
      bytes += items[n].bytes + 1;
      if (n > 0 && bytes > this.o.maxBatchBytes) break;
      n++;
    }
    return items.slice(0, n);
  }

  /** Ships one batch and settles every item. Returns undefined when done, else the delay its items got. */
  private async ship(claimed: ClaimedTx[]): Promise<number | undefined> {
    const batchId = ulid();
    const log = this.o.log.child({ batchId });
    const started = performance.now();
    this.inFlightRequests++;
    this.m?.inFlight.set(this.inFlightRequests);
    try {
      const body = batchParts(batchId, this.o.agentId, claimed);
      const result = await pRetry(() => this.post(body), {
        retries: this.o.retries,
        factor: 2,
        minTimeout: 250,
        maxTimeout: this.o.retryMaxDelayMs,
        randomize: true,
        shouldRetry: ({ error }) => this.running && isRetriable(error),
        onFailedAttempt: async ({ error, retriesLeft }) => {
          this.o.onError?.(errorKind(error));
          if (retriesLeft > 0 && this.running && error instanceof HttpStatusError && error.retryAfterMs !== undefined) {
            await this.sleep(Math.min(error.retryAfterMs, this.o.retryMaxDelayMs));
          }
        },
      });
      this.m?.seconds.observe({ outcome: 'ok' }, (performance.now() - started) / 1000);
      const retried = this.settleResult(claimed, result, log);
      if (this.status.state !== 'sending' || this.status.alarm) log.info({ previous: this.status.state }, 'Hub reachable again: forwarding');
      this.status = { state: 'sending', consecutiveFailures: 0, lastSuccessAt: new Date().toISOString() };
      // items the hub asked to retry wait in the outbox: the lane's later items must not overtake them
      return retried;
    } catch (err) {
      this.m?.seconds.observe({ outcome: 'failed' }, (performance.now() - started) / 1000);
      if (err instanceof HttpStatusError && err.status === 413) return this.tooLarge(claimed, err, log);
      return this.settleFailure(claimed, err, log);
    } finally {
      this.inFlightRequests--;
      this.m?.inFlight.set(this.inFlightRequests);
    }
  }

  /** 413: ship smaller batches from now on, and this one in halves, in order. */
  private async tooLarge(claimed: ClaimedTx[], err: HttpStatusError, log: Logger): Promise<number | undefined> {
    if (claimed.length === 1) {
      log.warn({ idempotencyKey: claimed[0].key, bytes: claimed[0].bytes }, 'A single transaction is larger than the hub accepts: dead-lettered');
      this.o.outbox.settle([{ seq: claimed[0].seq, lease: claimed[0].lease, status: 'dead', code: 'PAYLOAD_TOO_LARGE', reason: `413: ${err.message}` }]);
      this.o.onRejected?.(1);
      return undefined;
    }
    const bytes = claimed.reduce((s, c) => s + c.bytes, BATCH_OVERHEAD);
    this.o.maxBatchBytes = Math.max(16 * 1024, Math.min(this.o.maxBatchBytes, Math.floor(bytes / 2)));
    this.o.batchSize = Math.max(1, Math.min(this.o.batchSize, Math.floor(claimed.length / 2)));
    log.warn({ batchSize: this.o.batchSize, maxBatchBytes: this.o.maxBatchBytes }, 'The hub said the batch is too large: shipping smaller batches');
    const half = Math.ceil(claimed.length / 2);
    const first = await this.ship(claimed.slice(0, half));
    if (first !== undefined) {
      // the first half failed and went back: the second must not overtake it
      this.o.outbox.settle(claimed.slice(half).map((c) => ({ seq: c.seq, lease: c.lease, status: 'retry' as const, delayMs: first })));
      return first;
    }
    return this.ship(claimed.slice(half));
  }

  /**
   * `check-config --live`: is the hub reachable, is its certificate the one we trust, and does it accept
   * this agent's credential? A read-only authenticated call (one outcome at most); nothing is written.
   */
  async checkHub(): Promise<{ ok: boolean; message: string }> {
    try {
      const res = await this.http.get('v1/agents/me/outcomes', { searchParams: { since: '0', limit: '1' }, responseType: 'text' });
      if (res.statusCode === 200) return { ok: true, message: 'reachable, certificate trusted, credential accepted' };
      let code = '';
      try {
        code = JSON.parse(res.body)?.error?.code ?? '';
      } catch {
        // not our error body: the status says enough
      }
      return { ok: false, message: `hub answered ${res.statusCode}${code ? ` ${code}` : ''}${res.statusCode === 401 ? ': the credential is refused (enroll again?)' : ''}` };
    } catch (err) {
      return { ok: false, message: `not reachable: ${(err as Error).message}` };
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

  /** Fetches ERP outcomes after the sink's cursor until there are no more. Returns how many arrived. */
  async pollOutcomes(sink: OutcomeSink): Promise<number> {
    let n = 0;
    for (;;) {
      const res = await this.http.get('v1/agents/me/outcomes', { searchParams: { since: sink.cursor(), limit: '1000' }, responseType: 'text' });
      if (res.statusCode !== 200) throw new HttpStatusError(res.statusCode, `outcomes: hub answered ${res.statusCode}`);
      const body = JSON.parse(res.body) as OutcomesResponse;
      if (body.items.length > 0) sink.apply(body.items, body.cursor);
      n += body.items.length;
      if (!body.more || !this.running) return n;
    }
  }

  private async outcomesLoop(sink: OutcomeSink): Promise<void> {
    while (this.running) {
      try {
        const n = await this.pollOutcomes(sink);
        if (n > 0) this.o.log.debug({ outcomes: n }, 'ERP outcomes received');
      } catch (err) {
        this.o.log.debug({ err: err instanceof Error ? err.message : String(err) }, 'Could not fetch ERP outcomes; will try again');
      }
      await this.sleep(this.o.outcomesIntervalMs);
    }
  }

  /**
   * Posts one batch frame. Uncompressed, its parts (head, the items as one view of the outbox's buffer,
   * tail) are streamed as they are, with their length: no copy of the ~1 MB frame per request, which
   * cost the agent major garbage collections (external memory counts towards V8's GC triggers).
   */
  private async post(parts: Buffer[]): Promise<IngestResult> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    let payload: Buffer | Readable;
    if (this.o.gzip) {
      payload = gzipSync(Buffer.concat(parts), { level: 1 });
      headers['content-encoding'] = 'gzip';
    } else {
      payload = Readable.from(parts, { objectMode: false });
      headers['content-length'] = String(parts.reduce((n, p) => n + p.length, 0));
    }
    let res;
    try {
      res = await this.http.post('v1/ingest', { body: payload, headers, responseType: 'text' });
    } catch (err) {
      const why = explainTlsError(err, { ...(this.o.ca ? { ca: this.o.ca } : {}), ...(this.o.fingerprint ? { fingerprint: this.o.fingerprint } : {}) });
      // a certificate the agent refuses does not fix itself within seconds: no fast retries
      if (why) throw new AbortError(new TlsRefused(why));
      // network errors, timeouts: nothing is known about the batch, retry
      throw err instanceof Error ? err : new Error(String(err));
    }
    const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
    let parsed: any;
    try {
      parsed = JSON.parse(res.body);
    } catch {
      parsed = undefined;
    }
    if (res.statusCode === 200 && parsed && Array.isArray(parsed.results)) return parsed as IngestResult;
    const code: string | undefined = parsed?.error?.code;
    const message: string = parsed?.error?.message ?? `hub answered ${res.statusCode}`;
    throw new HttpStatusError(res.statusCode, message, retryAfterMs, code);
  }

  /** Settles each item by its result; returns the longest delay given to an item to retry, if any. */
  private settleResult(claimed: ClaimedTx[], result: IngestResult, log: Logger): number | undefined {
    // the hub answers in item order: each result is checked against its item's key, and only when one
    // does not match are the results looked up by key
    const results = result.results;
    let byKey: Map<string, ItemResult> | undefined;
    const resultFor = (c: ClaimedTx, i: number): ItemResult | undefined => {
      const r = results[i];
      if (r?.idempotencyKey === c.key) return r;
      byKey ??= new Map(results.map((x) => [x.idempotencyKey, x]));
      return byKey.get(c.key);
    };
    const settlements: Settlement[] = [];
    let sent = 0;
    let rejected = 0;
    let retryDelay: number | undefined;
    for (let i = 0; i < claimed.length; i++) {
      const c = claimed[i];
      const r = resultFor(c, i);
      if (!r) {
        // the hub did not answer for this item: it stays ours, try again soon
        settlements.push({ seq: c.seq, lease: c.lease, status: 'retry', delayMs: 1000, reason: 'no result for item' });
        retryDelay = Math.max(retryDelay ?? 0, 1000);
      } else if (r.status === 'accepted') {
        // the row has the id and key already: the result keeps what the hub said, nothing more
        settlements.push({ seq: c.seq, lease: c.lease, status: 'sent', result: ACCEPTED });
        sent++;
      } else if (r.status === 'duplicate') {
        settlements.push({ seq: c.seq, lease: c.lease, status: 'sent', result: { status: r.status, outcome: r.outcome } });
        sent++;
      } else if (r.code && ErrorCodes[r.code].retriable) {
        const delayMs = backoffDelay(c.attempts, 1000, this.o.retryMaxDelayMs);
        settlements.push({ seq: c.seq, lease: c.lease, status: 'retry', delayMs, ...(r.reason ? { reason: r.reason } : {}) });
        retryDelay = Math.max(retryDelay ?? 0, delayMs);
      } else {
        settlements.push({ seq: c.seq, lease: c.lease, status: 'dead', code: r.code ?? 'SCHEMA_INVALID', reason: r.reason ?? 'rejected by the hub' });
        rejected++;
        log.warn({ idempotencyKey: c.key, code: r.code, reason: r.reason }, 'Hub rejected a transaction: dead-lettered');
      }
    }
    this.o.outbox.settle(settlements);
    this.forwardedTotal += sent;
    if (sent) this.o.onForwarded?.(sent);
    if (rejected) this.o.onRejected?.(rejected);
    return retryDelay;
  }

  private settleFailure(claimed: ClaimedTx[], err: unknown, log: Logger): number | undefined {
    this.status.consecutiveFailures++;
    this.status.lastError = err instanceof Error ? err.message : String(err);
    const delay = backoffDelay(this.status.consecutiveFailures, 1000, this.o.retryMaxDelayMs);
    const putBack = (wait: number) => {
      this.o.outbox.settle(claimed.map((c) => ({ seq: c.seq, lease: c.lease, status: 'retry' as const, delayMs: wait })));
      this.pauseUntil = Math.max(this.pauseUntil, Date.now() + wait);
      return wait;
    };
    if (err instanceof TlsRefused) {
      // the operator must act; keep everything and look again slowly
      if (this.status.state !== 'tls-refused') log.error({ reason: err.message }, `Refusing the hub's TLS certificate: ${err.message}. Transactions are kept.`);
      this.status.state = 'tls-refused';
      this.status.alarm ??= { code: 'HUB_TLS_REFUSED', message: err.message, since: new Date().toISOString() };
      return putBack(this.o.retryMaxDelayMs);
    }
    if (err instanceof HttpStatusError && !isRetriable(err)) {
      if (err.status === 401) {
        // a credential problem is not the items' fault: keep them, alarm, and retry slowly
        if (this.status.state !== 'unauthorised') {
          log.error({ status: err.status, code: err.code, reason: err.message }, 'The hub refused this agent\'s credential: transactions are kept; fix the credential (plantbridge-agent enroll)');
        }
        this.status.state = 'unauthorised';
        this.status.alarm ??= { code: 'UNAUTHENTICATED', message: `the hub refuses this agent's credential: ${err.message}`, since: new Date().toISOString() };
        return putBack(Math.max(delay, Math.min(this.o.retryMaxDelayMs, 10_000)));
      }
      const code = asErrorCode(err.code) ?? 'SCHEMA_INVALID';
      log.warn({ status: err.status, code, reason: err.message, items: claimed.length }, 'Hub refused the batch: its items are dead-lettered with the hub\'s reason');
      this.o.outbox.settle(claimed.map((c) => ({ seq: c.seq, lease: c.lease, status: 'dead' as const, code, reason: `${err.status}: ${err.message}` })));
      this.o.onRejected?.(claimed.length);
      return undefined;
    }
    if (this.status.state !== 'backoff') log.warn({ err: this.status.lastError, retryInMs: delay, items: claimed.length }, 'Hub not reachable or busy; transactions stay in the outbox');
    this.status.state = 'backoff';
    const retryAfter = err instanceof HttpStatusError ? err.retryAfterMs : undefined;
    return putBack(Math.min(this.o.retryMaxDelayMs, Math.max(delay, retryAfter ?? 0)));
  }

  /** Backlog, rate and ETA: measured every progressIntervalMs; logged every 10 s while a backlog drains. */
  private measureProgress(force = false): void {
    const now = performance.now();
    const p = this.progress;
    const dt = (now - p.at) / 1000;
    if (!force && dt * 1000 < this.o.progressIntervalMs) return;
    let backlog = p.backlog;
    try {
      backlog = this.o.outbox.stats().pending;
    } catch {
      // a busy outbox: keep the last value
    }
    const moved = this.forwardedTotal - p.forwardedAt;
    const rate = dt > 0 ? moved / dt : 0;
    p.ratePerS = p.ratePerS === 0 ? rate : 0.5 * p.ratePerS + 0.5 * rate;
    p.backlog = backlog;
    p.etaS = p.ratePerS > 0.01 ? Math.round(backlog / p.ratePerS) : null;
    p.at = now;
    p.forwardedAt = this.forwardedTotal;
    this.m?.backlog.set(backlog);
    this.m?.rate.set(p.ratePerS);
    this.m?.eta.set(p.etaS ?? -1);
    const threshold = this.o.batchSize * this.o.inFlight * 4;
    if (!p.draining && backlog > threshold) {
      p.draining = true;
      p.drainStartedAt = now;
      p.drainStartForwarded = this.forwardedTotal;
      p.lastLogAt = now;
      this.o.log.info({ backlog }, 'Backlog to forward: draining');
    } else if (p.draining && backlog <= this.o.batchSize) {
      p.draining = false;
      const s = (now - p.drainStartedAt) / 1000;
      this.o.log.info({ forwarded: this.forwardedTotal - p.drainStartForwarded, seconds: Math.round(s), backlog }, 'Backlog drained');
    } else if (p.draining && now - p.lastLogAt >= 10_000) {
      p.lastLogAt = now;
      this.o.log.info({ backlog, ratePerS: Math.round(p.ratePerS), etaS: p.etaS }, 'Draining backlog');
    }
  }
}

const COMMA = Buffer.from(',');
const ITEMS_END = Buffer.from(']}');

/**
 * One batch frame as UTF-8 JSON: the items are the outbox's stored bytes, spliced in as they are. Bytes, not
 * text: a string joined from 1,000 bodies costs ~3 µs per item to flatten and encode on the way out (measured).
 */
export function serialiseBatch(batchId: string, agentId: string, claimed: ClaimedTx[]): Buffer {
  return Buffer.concat(batchParts(batchId, agentId, claimed));
}

/** serialiseBatch's frame as its parts, to be sent without joining them. */
export function batchParts(batchId: string, agentId: string, claimed: ClaimedTx[]): Buffer[] {
  const head = JSON.stringify({ schema: schemaId('ingest-batch', 1, 0), batchId, agentId, sentAt: new Date().toISOString() });
  const parts: Buffer[] = [Buffer.from(`${head.slice(0, -1)},"items":[`)];
  const run = commaJoined(claimed);
  if (run) parts.push(run);
  else if (claimed.length > 0) {
    // bodies that do not lie joined (rows from before schema 4): one copy, so the frame stays three parts
    const items: Buffer[] = [];
    for (let i = 0; i < claimed.length; i++) {
      if (i > 0) items.push(COMMA);
      items.push(claimed[i].raw);
    }
    parts.push(Buffer.concat(items));
  }
  parts.push(ITEMS_END);
  return parts;
}

/**
 * The items' bodies joined by commas as one view, when they already lie that way in one buffer (the
 * outbox reads a claim's bodies joined, in seq order: a batch of consecutive items is one slice).
 */
function commaJoined(claimed: ClaimedTx[]): Buffer | undefined {
  if (claimed.length === 0) return undefined;
  const first = claimed[0].raw;
  const whole = new Uint8Array(first.buffer);
  let end = first.byteOffset + first.length;
  for (let i = 1; i < claimed.length; i++) {
    const r = claimed[i].raw;
    if (r.buffer !== first.buffer || r.byteOffset !== end + 1 || whole[end] !== 0x2c) return undefined;
    end = r.byteOffset + r.length;
  }
  return Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset);
}

/**
 * Splits a claim into at most `lanes` lanes: every work center + order goes whole into one lane, in
 * outbox order; the biggest orders are placed first on the emptiest lane so lanes finish together.
 */
export function splitLanes(claimed: ClaimedTx[], lanes: number): ClaimedTx[][] {
  if (lanes <= 1) return [claimed];
  const byOrder = new Map<string, ClaimedTx[]>();
  for (const c of claimed) {
    const k = c.orderKey;
    const list = byOrder.get(k);
    if (list) list.push(c);
    else byOrder.set(k, [c]);
  }
  const out: ClaimedTx[][] = Array.from({ length: Math.min(lanes, byOrder.size) }, () => []);
  for (const group of [...byOrder.values()].sort((a, b) => b.length - a.length)) {
    let best = out[0];
    for (const l of out) if (l.length < best.length) best = l;
    best.push(...group);
  }
  // within a lane, keep outbox order across orders too (not required, but predictable)
  for (const l of out) l.sort((a, b) => a.seq - b.seq);
  return out.filter((l) => l.length > 0);
}

function isRetriable(err: unknown): boolean {
  if (err instanceof AbortError || err instanceof TlsRefused) return false;
  if (err instanceof HttpStatusError) return err.status === 429 || err.status >= 500;
  if (err instanceof PlantBridgeError) return err.retriable;
  // got's RequestError, TimeoutError, connection errors
  return true;
}

function errorKind(err: unknown): string {
  if (err instanceof HttpStatusError) return `http_${err.status}`;
  if (err instanceof TlsRefused) return 'tls';
  const code = (err as { code?: string }).code;
  return code ? code.toLowerCase() : 'network';
}
