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
  let zone = dateFormats.get(timeZone);
  if (!zone) {
    // building a formatter costs far more than using one: it was the rules' largest cost per signal
    zone = { fmt: new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }), minute: NaN, date: '' };
    dateFormats.set(timeZone, zone);
  }
  const ms = typeof iso === 'number' ? iso : instantMs(iso);
  // Formatting costs ~4 µs. Since 1973 every zone's offset is a whole number of minutes and changes on a
  // minute boundary, so the local date cannot change inside one UTC minute: the last minute's answer is reused.
  const minute = Math.floor(ms / 60_000);
  if (minute === zone.minute && ms >= WHOLE_MINUTE_OFFSETS_SINCE) return zone.date;
  const date = zone.fmt.format(new Date(ms));
  zone.minute = minute;
  zone.date = date;
  return date;
}
const dateFormats = new Map<string, { fmt: Intl.DateTimeFormat; minute: number; date: string }>();
/** 1973-01-01: the last offset with seconds in the tz database (Africa/Monrovia, -0:44:30) ended in 1972 */
const WHOLE_MINUTE_OFFSETS_SINCE = Date.UTC(1973, 0, 1);

import { instantMs } from '../../contracts/instant.ts';

export { instantMs };
