import type { Signal, Transaction } from '../../contracts/index.ts';
import type { Quarantined } from '../outbox/outbox.ts';
import type { Rule, RuleContext } from './rule.ts';

/** Helpers for the rules' tests: signals, and a runner that treats state exactly as the outbox does. */

export const T0 = Date.UTC(2026, 0, 5, 8, 0, 0);

export function signal(source: string, ref: string, value: Signal['value'], timeMs: number, sourceId?: string, extra: Partial<Signal> = {}): Signal {
  const iso = new Date(timeMs).toISOString();
  return { source, ref, value, quality: 'good', sourceTime: iso, receivedAt: iso, sourceId: sourceId ?? `${source}/${ref}/${timeMs}/${JSON.stringify(value)}`, ...extra };
}

export type Step = { kind: 'signal'; signal: Signal; now?: number } | { kind: 'tick'; now: number };

export interface RunResult {
  transactions: Transaction[];
  quarantined: Quarantined[];
  state: unknown;
}

export function ctxAt(now: number, timeZone = 'Europe/Berlin'): RuleContext {
  return { plant: 'P1010', agentId: 'edge-test', timeZone, now };
}

/** The committed state survives as JSON, exactly as the outbox stores it. */
export const roundTrip = <S>(s: S): S => JSON.parse(JSON.stringify(s)) as S;

/**
 * Runs steps against a rule. Every step's state goes through JSON (a restart may happen anywhere);
 * `crashes` lists step indexes where the process dies before committing the next `crashLength` steps:
 * their output is thrown away and they are replayed against the last committed state.
 */
export function run<S>(rule: Rule<S>, steps: Step[], opts: { timeZone?: string; crashes?: Array<{ at: number; length: number }> } = {}): RunResult {
  let committed: S = roundTrip(rule.initialState());
  const transactions: Transaction[] = [];
  const quarantined: Quarantined[] = [];
  const crashes = new Map((opts.crashes ?? []).map((c) => [c.at, c.length]));
  const once = (state: S, step: Step): { state: S; transactions: Transaction[]; quarantined: Quarantined[] } => {
    if (step.kind === 'tick') {
      const r = rule.tick ? rule.tick(state, ctxAt(step.now, opts.timeZone)) : { state, transactions: [] };
      return { state: r.state, transactions: r.transactions, quarantined: r.quarantined ?? [] };
    }
    const r = rule.apply(state, step.signal, ctxAt(step.now ?? Date.parse(step.signal.receivedAt), opts.timeZone));
    return { state: r.state, transactions: r.transactions, quarantined: r.quarantined ?? [] };
  };
  for (let i = 0; i < steps.length; i++) {
    const len = crashes.get(i);
    if (len) {
      // uncommitted work: computed, then lost with the process
      let scratch = committed;
      for (let k = i; k < Math.min(steps.length, i + len); k++) scratch = once(scratch, steps[k]).state;
      crashes.delete(i);
    }
    const r = once(committed, steps[i]);
    committed = roundTrip(r.state);
    transactions.push(...roundTrip(r.transactions));
    quarantined.push(...r.quarantined);
  }
  return { transactions, quarantined, state: committed };
}

/** A transaction without the fields that are per-message by design (id, traceparent, observedTime). */
export function identity(tx: Transaction): unknown {
  const { id: _id, traceparent: _tp, observedTime: _ot, ...rest } = tx;
  return rest;
}
