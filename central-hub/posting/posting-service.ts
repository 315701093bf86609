import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { erpMessageCode, isPlantBridgeError, type Transaction } from '../../contracts/index.ts';
import type { HubMetricsSet } from '../metrics.ts';
import type { HubStore, PostingJob, PostingOutcome } from '../store/hub-store.ts';
import { ErpError, type ErpAdapter } from '../erp/erp-adapter.ts';

/**
 * Claims accepted transactions and posts them to the ERP, exactly once (DESIGN.md §2 "Post").
 *
 * - One order posts in arrival order (the store leases only the oldest unfinished item per order);
 *   different orders post in parallel, at most `concurrency` calls at once.
 * - Any attempt after the first may follow an attempt whose effect is unknown (a timeout, a reset, or this
 *   hub dying mid-call with its lease expiring), so it looks the key up in the ERP before sending again.
 * - Business refusals become dead letters at once; transient failures retry with backoff up to
 *   maxAttempts, then become dead letters too. A replay after a fix looks up first as well.
 * - A posting whose ERP outcome is still unknown after the last attempt (in doubt, not looked up since)
 *   becomes a dead letter with code ERP_IN_DOUBT, not a failure: the ERP may hold the document.
 */
export interface PostingServiceOptions {
  store: HubStore;
  adapter: ErpAdapter;
  log: Logger;
  metrics?: HubMetricsSet;
  concurrency?: number;
  leaseMs?: number;
  maxAttempts?: number;
  retryMaxDelayMs?: number;
  idleMs?: number;
  /**
   * The least wait before an attempt whose outcome is unknown (a timeout after the request went out) is
   * looked up: the ERP may still be processing it, and a lookup that comes too early finds nothing and
   * posts it a second time. Longer than the ERP's slowest processing of one posting.
   */
  inDoubtWaitMs?: number;
  /** this hub instance; each claim's lease owner is this plus the claim's number */
  owner?: string;
  onOutcome?: (tx: Transaction, outcome: PostingOutcome) => void;
}

export class PostingService {
  private readonly o: Required<Omit<PostingServiceOptions, 'metrics' | 'onOutcome'>> & Pick<PostingServiceOptions, 'metrics' | 'onOutcome'>;
  private running = false;
  private loopDone: Promise<void> | undefined;
  /** ERP calls under way: bounded by `concurrency` */
  private readonly inFlight = new Set<Promise<void>>();
  /** outcomes being recorded after their ERP call ended: the call's slot is already free */
  private readonly recording = new Set<Promise<void>>();
  private readonly waiters = new Set<() => void>();
  private claims = 0;

  constructor(opts: PostingServiceOptions) {
    this.o = {
      concurrency: 4,
      leaseMs: 120_000,
      maxAttempts: 20,
      retryMaxDelayMs: 300_000,
      idleMs: 250,
      inDoubtWaitMs: 60_000,
      owner: `hub-${randomUUID()}`,
      ...opts,
    };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  /** New work arrived (ingest accepted something). */
  notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Stops claiming and waits for the calls in flight to finish and be recorded. */
  async stop(): Promise<void> {
    this.running = false;
    this.notify();
    await this.loopDone;
    await Promise.allSettled([...this.inFlight]);
    await Promise.allSettled([...this.recording]);
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
      const free = this.o.concurrency - this.inFlight.size;
      if (free <= 0) {
        await Promise.race(this.inFlight);
        continue;
      }
      let jobs: PostingJob[];
      // the owner names this claim, not only this instance: a call that outlived its lease cannot end the
      // lease of a later claim of the same posting, here or on another instance
      const owner = `${this.o.owner}#${++this.claims}`;
      try {
        jobs = await this.o.store.claimPostings(free, this.o.leaseMs, owner);
      } catch (err) {
        this.o.log.warn({ err }, 'Could not claim postings; will retry');
        await this.sleep(1000);
        continue;
      }
      if (jobs.length === 0) {
        if (this.inFlight.size > 0) await Promise.race([...this.inFlight, this.sleep(this.o.idleMs)]);
        else await this.sleep(this.o.idleMs);
        continue;
      }
      for (const job of jobs) {
        // the slot frees when the ERP call ends, not when its outcome is stored: concurrency bounds the ERP
        let callEnded!: () => void;
        const slot = new Promise<void>((resolve) => (callEnded = resolve));
        const p = slot.finally(() => this.inFlight.delete(p));
        this.inFlight.add(p);
        const all = this.process(job, owner, callEnded).finally(() => {
          callEnded();
          this.recording.delete(all);
        });
        this.recording.add(all);
      }
    }
  }

  private async process(job: PostingJob, owner: string, callEnded: () => void): Promise<void> {
    const { adapter, store, metrics } = this.o;
    const log = this.o.log.child({ idempotencyKey: job.tx.idempotencyKey, traceparent: job.tx.traceparent, attempt: job.attempt });
    // The lease is renewed while the call runs (a lookup, a token, a CSRF fetch and a post may each take a
    // full ERP timeout). If it is lost anyway (the store unreachable for most of a lease), the call is
    // aborted: another claim may be posting the same key by now, so this one must not go on to a post.
    const abort = new AbortController();
    const ctx = { attempt: job.attempt, signal: abort.signal };
    const renewer = setInterval(
      () => {
        store.renewPosting(job.seq, owner, this.o.leaseMs).then(
          (held) => {
            if (!held && !abort.signal.aborted) {
              log.error('Lost the posting lease while the ERP call was running: the call is aborted, the next owner looks the key up first');
              abort.abort(new Error('posting lease lost'));
            }
          },
          (err: unknown) => log.warn({ err }, 'Could not renew the posting lease; trying again'),
        );
      },
      Math.max(20, Math.floor(this.o.leaseMs / 3)),
    );
    const started = performance.now();
    let outcome: PostingOutcome;
    /** the ERP answered this attempt's lookup: whatever earlier attempts did is known */
    let lookedUp = false;
    try {
      let done = false;
      outcome = { kind: 'retry', delayMs: 0, code: 'INTERNAL', message: 'not attempted', inDoubt: job.inDoubt };
      if (job.attempt > 1) {
        // an earlier attempt may have reached the ERP: look before sending again
        const found = await adapter.lookup(job.tx, ctx);
        lookedUp = true;
        if (found.found) {
          await adapter.completeFound?.(job.tx, found.erpRef, ctx);
          outcome = { kind: 'posted', erpRef: found.erpRef, detail: { resolvedBy: 'lookup' } };
          log.info({ erpRef: found.erpRef }, 'In-doubt posting found in the ERP: not sent again');
          done = true;
        }
      }
      if (!done) {
        const r = await adapter.post(job.tx, ctx);
        if (r.status === 'posted') outcome = { kind: 'posted', erpRef: r.erpRef, ...(r.detail ? { detail: r.detail } : {}) };
        else {
          outcome = { kind: 'failed', code: 'ERP_BUSINESS', message: r.reason, erpCode: erpMessageCode(r.code) };
          metrics?.erpFailed.inc({ adapter: adapter.name, class: 'business' });
          log.warn({ erpCode: r.code, reason: r.reason }, 'ERP refused the posting: dead letter, a person must act');
        }
      }
    } catch (err) {
      const inDoubt = isPlantBridgeError(err, 'ERP_IN_DOUBT');
      // the ERP may hold the posting: this call may have been applied, or an earlier one nobody has looked up since
      const unresolved = inDoubt || (job.inDoubt && !lookedUp);
      const cls = inDoubt ? 'in_doubt' : err instanceof ErpError ? 'transient' : 'internal';
      metrics?.erpFailed.inc({ adapter: adapter.name, class: cls });
      const message = err instanceof Error ? err.message : String(err);
      const code = isPlantBridgeError(err) ? err.code : 'INTERNAL';
      // the hub's own credentials failing is an operator problem, not the transaction's: never exhaust on it
      const authProblem = err instanceof ErpError && err.erpCode === 'AUTH';
      if (authProblem) log.error({ err: message }, 'The ERP refuses the hub\'s credentials: postings wait until they are fixed');
      if (job.attempt >= this.o.maxAttempts && !authProblem && unresolved) {
        // not a refusal: the ERP may hold the document, and posting it again by hand would double it
        outcome = {
          kind: 'failed',
          code: 'ERP_IN_DOUBT',
          message:
            `ERP outcome unknown after ${job.attempt} attempts: the ERP may hold this posting. Check the ERP for reference ` +
            `${job.tx.idempotencyKey} before acting; never post it by hand. A replay looks it up first and posts only if it is not there. Last error: ${message}`,
          // the ERP may still be processing this attempt (or the expired claim's): a replay at once must not look up early
          lookUpAfterMs: this.o.inDoubtWaitMs,
        };
        metrics?.erpFailed.inc({ adapter: adapter.name, class: 'in_doubt_unresolved' });
        log.error({ err: message }, 'ERP outcome still unknown after the last attempt: dead letter ERP_IN_DOUBT, check the ERP before replaying');
      } else if (job.attempt >= this.o.maxAttempts && !authProblem) {
        outcome = { kind: 'failed', code, message: `gave up after ${job.attempt} attempts: ${message}` };
        metrics?.erpFailed.inc({ adapter: adapter.name, class: 'exhausted' });
        log.error({ err: message }, 'ERP posting failed too often: dead letter');
      } else {
        const backoff = Math.min(this.o.retryMaxDelayMs, 1000 * 2 ** Math.min(job.attempt - 1, 20));
        const retryAfter = err instanceof ErpError ? (err.retryAfterMs ?? 0) : 0;
        const delayMs = Math.round(Math.max(retryAfter, inDoubt ? this.o.inDoubtWaitMs : 0, backoff / 2 + (Math.random() * backoff) / 2));
        outcome = { kind: 'retry', delayMs, code, message, inDoubt: unresolved };
        log.warn({ err: message, code, retryInMs: delayMs }, inDoubt ? 'ERP outcome unknown: will look the key up before any re-send' : 'ERP not available: will retry');
      }
    } finally {
      clearInterval(renewer);
    }
    metrics?.erpSeconds.observe({ adapter: adapter.name }, (performance.now() - started) / 1000);
    callEnded();
    try {
      const applied = await store.completePosting(job.seq, owner, outcome);
      if (!applied) {
        log.warn('Lease was lost before the outcome was recorded; the next owner will look the key up first');
        return;
      }
    } catch (err) {
      log.error({ err }, 'Could not record the ERP outcome; the lease will expire and the key is looked up first');
      return;
    }
    if (outcome.kind === 'posted') metrics?.erpPosted.inc({ adapter: adapter.name });
    this.o.onOutcome?.(job.tx, outcome);
  }
}
