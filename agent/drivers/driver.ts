import type { Logger } from 'pino';
import type { DriverState, ErrorCode, Signal } from '../../contracts/index.ts';
import type { RuleConfig } from '../config/schema.ts';
import type { AppendResult, OutboxOptions } from '../outbox/outbox.ts';
import type { EngineOptions } from '../rules/engine.ts';

/**
 * The Driver contract (DESIGN.md §4). `create` validates and never connects; `start` connects and
 * retries with jittered backoff forever; `stop` drains; `health` reports {state, since, message}.
 *
 * The ack is in the types: `ctx.emit` resolves only after the outbox commit, so a driver acknowledges
 * its source (MQTT PUBACK, next OPC UA value) after `await ctx.emit(...)`. When emit rejects with
 * OUTBOX_FULL / OUTBOX_IO nothing was stored and the source must not be acknowledged.
 */
export interface DriverContext {
  agentId: string;
  plant: string;
  /** the agent's state directory (PKI folders, driver state) */
  stateDir: string;
  log: Logger;
  emit(signals: Signal[]): Promise<void>;
  /**
   * An input that cannot become a signal: acknowledged at the source, kept with its reason. `dedupeKey`
   * (optional, like Signal.sourceId: the same input delivered again gives the same key) keeps a redelivery
   * from writing it twice while the first is open (agent/outbox/README.md).
   */
  deadLetter(code: ErrorCode, reason: string, payload: Buffer | string | null, dedupeKey?: string): void;
  /**
   * For a driver that commits on a thread of its own (the MQTT driver): how to open a second appending
   * connection to the agent's outbox with the same rules, and where to report what it committed (metrics,
   * forwarder wake-up). Absent: the driver commits through `emit` only.
   */
  writer?: {
    spec: OutboxWriterSpec;
    committed(r: AppendResult): void;
  };
}

/** Everything a worker thread needs to append to the agent's outbox exactly as `emit` does; structured-cloneable. */
export interface OutboxWriterSpec {
  outbox: Pick<OutboxOptions, 'path' | 'synchronous' | 'maxBytes' | 'minFreeDiskBytes' | 'groupCommitRows' | 'driver' | 'nativeBinding'>;
  rules: RuleConfig[];
  engine: Omit<EngineOptions, 'now'>;
}

export interface DriverHealth {
  state: DriverState;
  since: string;
  message?: string;
  lastValueAt?: string;
}

export interface Driver {
  readonly name: string;
  readonly type: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  health(): DriverHealth;
}

export interface DriverModule<C> {
  create(config: C, ctx: DriverContext): Driver;
}

/** Small helper every driver uses to track its health transitions. */
export class HealthTracker {
  private current: DriverHealth;
  private readonly log: Logger;
  constructor(log: Logger) {
    this.log = log;
    this.current = { state: 'starting', since: new Date().toISOString() };
  }
  set(state: DriverState, message?: string): void {
    if (state === this.current.state && message === this.current.message) return;
    const lastValueAt = this.current.lastValueAt;
    this.current = { state, since: new Date().toISOString(), ...(message ? { message } : {}), ...(lastValueAt ? { lastValueAt } : {}) };
    const level = state === 'down' || state === 'degraded' ? 'warn' : 'info';
    this.log[level]({ state, reason: message }, `Driver is ${state}${message ? `: ${message}` : ''}`);
  }
  valueSeen(at = new Date()): void {
    this.current.lastValueAt = at.toISOString();
  }
  get(): DriverHealth {
    return { ...this.current };
  }
}

/** Exponential backoff with full jitter, capped: retry delays for connections that keep failing. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(exp / 2 + random() * (exp / 2));
}
