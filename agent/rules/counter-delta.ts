/**
 * Counter delta with unsigned wrap, reset handling and implausible-jump detection (erp-apis.md §5).
 *
 * Values are handled as bigint so that UInt64 registers (beyond 2^53) stay exact; the committed state
 * keeps the last value as a decimal string, which survives the JSON round trip the outbox does. The usual
 * reading (a safe integer after a last value of at most 15 digits) takes a Number path that gives the
 * same result: every operand and intermediate stays below 2^53 there, so the arithmetic is exact.
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

/** uint16 and uint32 maxima as numbers; uint64's is beyond 2^53 and has none */
const WRAP_MAX_NUMBER: Record<CounterWidth, number | undefined> = { uint16: 0xffff, uint32: 0xffffffff, uint64: undefined };

/** A last value as a number when it is a plain decimal of at most 15 digits (< 2^53), else undefined. */
function smallLast(last: bigint | number | string): number | undefined {
  if (typeof last === 'string') {
    const n = last.length;
    if (n === 0 || n > 15) return undefined;
    let x = 0;
    for (let i = 0; i < n; i++) {
      const c = last.charCodeAt(i) - 48;
      if (c < 0 || c > 9) return undefined;
      x = x * 10 + c;
    }
    return x;
  }
  if (typeof last === 'number') return Number.isSafeInteger(last) && Math.abs(last) < 1e15 ? last : undefined;
  return undefined;
}

/**
 * last: the previous reading (undefined on first sight); baseline: the reading must not produce a delta
 * (Sparkplug birth, reconnect, retained message).
 */
export function counterDelta(last: bigint | number | string | undefined, value: unknown, cfg: DeltaConfig, baseline = false): Delta {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && Number.isSafeInteger(cfg.maxJump)) {
    const max = WRAP_MAX_NUMBER[cfg.wrap];
    const v = value + 0; // -0 reads as 0, as BigInt(-0) does
    if (max !== undefined && v > max) return { kind: 'invalid', reason: `counter value ${v} exceeds ${cfg.wrap}` };
    if (last === undefined || baseline) return { kind: 'baseline' };
    const prev = smallLast(last);
    // |prev| < 1e15 and 0 <= v < 2^53: d, the wrapped delta (uint16/32 only) and the comparisons are exact
    if (prev !== undefined) {
      const jump = cfg.maxJump;
      const d = v - prev;
      if (d >= 0) return d <= jump ? { kind: 'delta', d, reset: false, wrapped: false } : { kind: 'jump', d: String(d), reason: `jumped by ${d} (from ${prev} to ${v})` };
      if (max !== undefined) return dropped(prev, v, max - prev + 1 + v, jump, cfg);
    }
  }
  return counterDeltaExact(last, value, cfg, baseline);
}

/** The value dropped: a wrap if the old value was near the top and the new one near zero, else a reset. */
function dropped(prev: number, v: number, wrapped: number, jump: number, cfg: DeltaConfig): Delta {
  // a wrap crosses the top: at most half the register (else maxJump >= the register, e.g. uint16 with the
  // default 100000, took every reset for a wrap and counted most of the register)
  if (wrapped <= jump && wrapped <= (WRAP_MAX_NUMBER[cfg.wrap]! + 1) / 2) return { kind: 'delta', d: wrapped, reset: false, wrapped: true };
  if (cfg.counts === 'total') return { kind: 'jump', d: String(v - prev), reason: `never-resetting total dropped from ${prev} to ${v}` };
  if (cfg.onReset === 'drop') return { kind: 'delta', d: 0, reset: true, wrapped: false };
  return v <= jump ? { kind: 'delta', d: v, reset: true, wrapped: false } : { kind: 'jump', d: String(v), reason: `reset from ${prev} to ${v}, more than maxJump after the reset` };
}

/** counterDelta in bigint throughout: any width, any reading (the reference the Number path must match). */
export function counterDeltaExact(last: bigint | number | string | undefined, value: unknown, cfg: DeltaConfig, baseline = false): Delta {
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
  if (wrapped <= jump && wrapped <= (max + 1n) / 2n) return { kind: 'delta', d: Number(wrapped), reset: false, wrapped: true };
  if (cfg.counts === 'total') return { kind: 'jump', d: String(d), reason: `never-resetting total dropped from ${prev} to ${v}` };
  if (cfg.onReset === 'drop') return { kind: 'delta', d: 0, reset: true, wrapped: false };
  return v <= jump ? { kind: 'delta', d: Number(v), reset: true, wrapped: false } : { kind: 'jump', d: String(v), reason: `reset from ${prev} to ${v}, more than maxJump after the reset` };
}
