import type { Signal, Transaction } from '../../contracts/index.ts';
import type { Quarantined } from '../outbox/outbox.ts';

/**
 * A rule is a pure function over (state, signal) -> (state', transactions) (DESIGN.md §4). The outbox
 * commits the new state together with the signal and the transactions, so a crash anywhere either
 * replays the signal against the old state or has committed everything.
 */
export interface RuleContext {
  plant: string;
  agentId: string;
  timeZone: string;
  /** agent clock, ms: used for observedTime and interval-based windows only, never for identity */
  now: number;
}

export interface RuleOutput<S> {
  state: S;
  transactions: Transaction[];
  quarantined?: Quarantined[];
}

export interface Rule<S = unknown> {
  readonly id: string;
  readonly mode: 'live' | 'shadow';
  /** the (source, ref) pairs this rule listens to */
  readonly inputs: Array<{ source: string; ref: string }>;
  initialState(): S;
  apply(state: S, signal: Signal, ctx: RuleContext): RuleOutput<S>;
  /** time-based closing of windows; called on a timer */
  tick?(state: S, ctx: RuleContext): RuleOutput<S>;
}

/** YYYY-MM-DD of an instant in the plant's time zone (posting dates follow the plant's calendar). */
export function plantDate(iso: string | number, timeZone: string): string {
  let fmt = dateFormats.get(timeZone);
  if (!fmt) {
    // building a formatter costs far more than using one: it was the rules' largest cost per signal
    fmt = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' });
    dateFormats.set(timeZone, fmt);
  }
  return fmt.format(new Date(iso));
}
const dateFormats = new Map<string, Intl.DateTimeFormat>();

export { instantMs } from '../../contracts/instant.ts';
