import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { counterDelta, counterDeltaExact, WRAP_MAX, type CounterWidth, type DeltaConfig } from './counter-delta.ts';

/**
 * counterDelta takes a Number path for the usual reading (a safe integer after a last value of at most 15
 * digits) and bigint otherwise; both must give exactly what the bigint reference gives, including the
 * reasons' text, around every width's top, 2^53 and the 15-digit edge of the Number path.
 */

const RUNS = Number(process.env.PLANTBRIDGE_PROPERTY_RUNS ?? 150) * 20;
const widths: CounterWidth[] = ['uint16', 'uint32', 'uint64'];

/** the Number path (or the reference's exception) must equal the bigint reference */
function same(last: bigint | number | string | undefined, value: unknown, cfg: DeltaConfig, baseline = false): void {
  let expected: unknown;
  try {
    expected = counterDeltaExact(last, value, cfg, baseline);
  } catch (err) {
    assert.throws(() => counterDelta(last, value, cfg, baseline), { name: (err as Error).name });
    return;
  }
  const got = counterDelta(last, value, cfg, baseline);
  assert.deepEqual(got, expected, `counterDelta(${String(last)}, ${String(value)}, ${JSON.stringify(cfg)}, ${baseline})`);
  if (got.kind === 'delta') assert.ok(!Object.is(got.d, -0), 'no -0 delta');
}

/** interesting magnitudes: small, each width's top, 2^53, the 15/16-digit edge, 2^64 */
const edges = [0n, 1n, 2n, 99n, 100n, 101n, 0xfffen, 0xffffn, 0x10000n, 0xfffffffen, 0xffffffffn, 0x100000000n, 999_999_999_999_999n, 1_000_000_000_000_000n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 64n - 2n, 2n ** 64n - 1n, 2n ** 64n];
const magnitude = fc.oneof(
  fc.constantFrom(...edges),
  fc.tuple(fc.constantFrom(...edges), fc.bigInt({ min: -1000n, max: 1000n })).map(([e, k]) => e + k),
  fc.bigInt({ min: 0n, max: 2n ** 64n }),
);
/** a reading in the forms drivers deliver: number, decimal string (UInt64 over OPC UA / JSON), bigint, junk */
const reading = fc.oneof(
  { weight: 6, arbitrary: magnitude.map((v) => Number(v)) },
  { weight: 2, arbitrary: magnitude.map((v) => v.toString()) },
  { weight: 1, arbitrary: magnitude },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(-1, -0, 1.5, NaN, Infinity, '', ' 7 ', '0x10', '1e3', null, true, 2 ** 60) },
);
/** a last value as the state keeps it (decimal string), or as a caller may pass it */
const lastArb = fc.oneof(
  { weight: 6, arbitrary: magnitude.map((v) => v.toString()) },
  { weight: 1, arbitrary: magnitude.map((v) => `00${v}`) },
  { weight: 1, arbitrary: magnitude.map((v) => Number(v)) },
  { weight: 1, arbitrary: magnitude },
  { weight: 1, arbitrary: fc.constantFrom<string | number | undefined>(undefined, '-5', '', ' 12 ', '1.0', -0, -3, 1.5) },
);
const cfgArb: fc.Arbitrary<DeltaConfig> = fc.record({
  wrap: fc.constantFrom(...widths),
  counts: fc.constantFrom('resetting' as const, 'total' as const),
  onReset: fc.constantFrom('count-from-zero' as const, 'drop' as const),
  maxJump: fc.oneof(fc.integer({ min: 1, max: 100_000 }), fc.constantFrom(1, 0xffff, 0xffffffff, Number.MAX_SAFE_INTEGER, 1.5)),
});

void test('counterDelta equals the bigint reference for every reading form, width and config', () => {
  fc.assert(
    fc.property(lastArb, reading, cfgArb, fc.boolean(), (last, value, cfg, baseline) => same(last, value, cfg, baseline)),
    { numRuns: RUNS },
  );
});

void test('counterDelta near the tops of the registers: wraps, resets and jumps as the reference says', () => {
  for (const wrap of widths) {
    const max = WRAP_MAX[wrap];
    for (const maxJump of [1, 100, 100_000]) {
      for (const counts of ['resetting', 'total'] as const) {
        for (const onReset of ['count-from-zero', 'drop'] as const) {
          const cfg = { wrap, counts, onReset, maxJump };
          for (const prev of [0n, 1n, 50n, max - 200n, max - 1n, max]) {
            for (const v of [0n, 1n, 7n, 99n, 101n, max - 100n, max, max + 1n]) {
              same(prev.toString(), Number.isSafeInteger(Number(v)) && BigInt(Number(v)) === v ? Number(v) : v.toString(), cfg);
            }
          }
        }
      }
    }
  }
  // the number path itself on the usual case
  assert.deepEqual(counterDelta('65535', 3, { wrap: 'uint16', counts: 'resetting', onReset: 'count-from-zero', maxJump: 100 }), { kind: 'delta', d: 4, reset: false, wrapped: true });
  assert.deepEqual(counterDelta('4294967290', 2, { wrap: 'uint32', counts: 'total', onReset: 'count-from-zero', maxJump: 100 }), { kind: 'delta', d: 8, reset: false, wrapped: true });
  assert.deepEqual(counterDelta('999999999999999', 1_000_000_000_000_005, { wrap: 'uint64', counts: 'total', onReset: 'count-from-zero', maxJump: 100 }), {
    kind: 'delta',
    d: 6,
    reset: false,
    wrapped: false,
  });
  assert.deepEqual(counterDelta('18446744073709551615', 4, { wrap: 'uint64', counts: 'resetting', onReset: 'count-from-zero', maxJump: 100 }), { kind: 'delta', d: 5, reset: false, wrapped: true });
});
