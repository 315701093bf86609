import type { Logger } from 'pino';
import type { PostingOutcome } from './store/hub-store.ts';

/**
 * The hub's posting activity as one info line per interval (only when something happened), and a last
 * one at stop: what an operator tailing the log wants between "listening" and "Stopping". The counts
 * themselves are metrics (plantbridge_hub_erp_*); this line says in words that posting is moving.
 */
export class PostingSummary {
  private posted = 0;
  private failed = 0;
  private retried = 0;
  private inDoubt = 0;
  private readonly failedByCode = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private since = Date.now();
  private readonly log: Logger;
  private readonly intervalMs: number;

  constructor(log: Logger, intervalMs = 60_000) {
    this.log = log;
    this.intervalMs = intervalMs;
  }

  /** Pass as buildHub's onOutcome. */
  readonly record = (outcome: PostingOutcome): void => {
    if (outcome.kind === 'posted') this.posted++;
    else if (outcome.kind === 'failed') {
      this.failed++;
      this.failedByCode.set(outcome.code, (this.failedByCode.get(outcome.code) ?? 0) + 1);
    } else {
      this.retried++;
      if (outcome.inDoubt) this.inDoubt++;
    }
  };

  start(): void {
    this.since = Date.now();
    this.timer = setInterval(() => this.flush(), this.intervalMs);
    this.timer.unref();
  }

  /** Logs what happened since the last line, if anything did. */
  flush(): void {
    const seconds = Math.round((Date.now() - this.since) / 1000);
    this.since = Date.now();
    if (this.posted + this.failed + this.retried === 0) return;
    const failedByCode = Object.fromEntries(this.failedByCode);
    const parts = [`${this.posted} posted to the ERP`];
    if (this.failed) parts.push(`${this.failed} dead-lettered (${[...this.failedByCode].map(([c, n]) => `${c} ${n}`).join(', ')})`);
    if (this.retried) parts.push(`${this.retried} to retry${this.inDoubt ? ` (${this.inDoubt} in doubt: looked up before any re-send)` : ''}`);
    this.log.info({ posted: this.posted, failed: this.failed, failedByCode, retried: this.retried, inDoubt: this.inDoubt, seconds }, `Posting in the last ${seconds} s: ${parts.join(', ')}`);
    this.posted = this.failed = this.retried = this.inDoubt = 0;
    this.failedByCode.clear();
  }

  /** The last line, for the time since the previous one. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.flush();
  }
}
