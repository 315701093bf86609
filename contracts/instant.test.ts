import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { instantMs } from './instant.ts';

/** instantMs has a fast path for toISOString's form; whatever the string, it must say what Date.parse says. */

const RUNS = Number(process.env.PLANTBRIDGE_PROPERTY_RUNS ?? 150) * 20;
const same = (s: string) => assert.ok(Object.is(instantMs(s), Date.parse(s)), `${JSON.stringify(s)}: ${instantMs(s)} vs ${Date.parse(s)}`);

void test('instantMs equals Date.parse on every instant toISOString writes in years 0000-9999', () => {
  const min = Date.parse('0000-01-01T00:00:00.000Z');
  const max = Date.parse('9999-12-31T23:59:59.999Z');
  fc.assert(
    fc.property(fc.integer({ min, max }), (t) => {
      const iso = new Date(t).toISOString();
      same(iso);
      assert.equal(instantMs(iso), t);
    }),
    { numRuns: RUNS },
  );
  // every day boundary of 1899-2101 (leap days, century years) and each month's last millisecond
  for (let day = Date.parse('1899-01-01T00:00:00Z'); day < Date.parse('2101-01-01T00:00:00Z'); day += 86_400_000) {
    same(new Date(day).toISOString());
    same(new Date(day + 86_399_999).toISOString());
  }
});

void test('instantMs falls back to Date.parse on other forms and out-of-range fields', () => {
  for (const s of [
    '2026-02-29T00:00:00.000Z',
    '2024-02-29T12:00:00.000Z',
    '2024-02-30T00:00:00.000Z',
    '1900-02-29T00:00:00.000Z',
    '2000-02-29T00:00:00.000Z',
    '2026-04-31T00:00:00.000Z',
    '2026-12-31T24:00:00.000Z',
    '2026-12-31T23:60:00.000Z',
    '2026-12-31T23:59:60.000Z',
    '2026-13-01T00:00:00.000Z',
    '2026-00-01T00:00:00.000Z',
    '2026-01-00T00:00:00.000Z',
    '2026-01-01T00:00:00.000+',
    '2026-01-01 00:00:00.000Z',
    '2026-01-01T00:00:00,000Z',
    '2026-01-01T00:00:0a.000Z',
    '2026-01-01T00:00:00.00aZ',
    '-026-01-01T00:00:00.000Z',
    '+002026-01-01T00:00:00.000Z',
    '2026-01-01T00:00:00Z',
    '2026-01-01T00:00:00.000+02:00',
    '2026-01-01T01:00:00.123456Z',
    '2026-01-01',
    '',
    'not a time at all, 24 ch',
  ]) {
    same(s);
  }
  // any one character of a valid instant replaced
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 4e12 }), fc.nat({ max: 23 }), fc.integer({ min: 32, max: 126 }), (t, at, c) => {
      const iso = new Date(t).toISOString();
      same(iso.slice(0, at) + String.fromCharCode(c) + iso.slice(at + 1));
    }),
    { numRuns: RUNS },
  );
});
