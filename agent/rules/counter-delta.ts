/**
 * Counter delta with unsigned wrap, reset handling and implausible-jump detection (erp-apis.md §5).
 *
 * Values are handled as bigint so that UInt64 registers (beyond 2^53) stay exact; the committed state
 * keeps the last value as a decimal string, which survives the JSON round trip the outbox does.
 */

export const WRAP_MAX = { uint16: 0xffffn, uint32: 0xffffffffn, uint64: 0xffffffffffffffffn } as const;
export type CounterWidth = keyof typeof WRAP_MAX;

export interface DeltaConfig {
  wrap: CounterWidth;
  /** resetting: a PLC counter that may be reset; total: never resets (PackML AccCount), a drop is suspicious */
  counts: 'resetting' | 'total' | 'increment';
  onReset: 'count-from-zero' | 'drop';
  maxJump: number;
}

export type Delta =
  | { kind: 'delta'; d: number; reset: boolean; wrapped: boolean }
  | { kind: 'baseline' }
  | { kind: 'jump'; d: string; reason: string }
  | { kind: 'invalid'; reason: string };

/** A counter reading as bigint, or undefined when it is not a non-negative integer. */
export function counterValue(v: unknown): bigint | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? BigInt(v) : undefined;
  if (typeof v === 'bigint') return v >= 0n ? v : undefined;
  if (typeof v === 'string' && /^\s*\d{1,20}\s*$/.test(v)) return BigInt(v.trim());
  return undefined;
}

/**
 * last: the previous reading (undefined on first sight); baseline: the reading must not produce a delta
 * (Sparkplug birth, reconnect, retained message).
 */
export function counterDelta(last: bigint | number | string | undefined, value: unknown, cfg: DeltaConfig, baseline = false): Delta {
  const v = counterValue(value);
  if (v === undefined) return { kind: 'invalid', reason: `counter value ${JSON.stringify(value)} is not a non-negative integer` };
  const max = WRAP_MAX[cfg.wrap];
  if (v > max) return { kind: 'invalid', reason: `counter value ${v} exceeds ${cfg.wrap}` };
  if (last === undefined || baseline) return { kind: 'baseline' };
  const prev = BigInt(last);
  const jump = BigInt(cfg.maxJump);
  const d = v - prev;
  if (d >= 0n) return d <= jump ? { kind: 'delta', d: Number(d), reset: false, wrapped: false } : { kind: 'jump', d: String(d), reason: `jumped by ${d} (from ${prev} to ${v})` };
  // the value dropped: a wrap if the old value was near the top and the new one near zero
  const wrapped = max - prev + 1n + v;
  if (wrapped <= jump) return { kind: 'delta', d: Number(wrapped), reset: false, wrapped: true };
  if (cfg.counts === 'total') return { kind: 'jump', d: String(d), reason: `never-resetting total dropped from ${prev} to ${v}` };
  if (cfg.onReset === 'drop') return { kind: 'delta', d: 0, reset: true, wrapped: false };
  return v <= jump ? { kind: 'delta', d: Number(v), reset: true, wrapped: false } : { kind: 'jump', d: String(v), reason: `reset from ${prev} to ${v}, more than maxJump after the reset` };
}
