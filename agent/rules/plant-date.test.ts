import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { plantDate } from './rule.ts';

/**
 * plantDate reuses the last answer within one UTC minute. It must say exactly what the time-zone formatter
 * says, also across DST changes at local midnight (America/Havana, America/Santiago), half-hour DST (Lord
 * Howe) and odd offsets (Kathmandu +5:45, Chatham +12:45), walking time forward in small and large steps.
 */
const ZONES = ['Europe/Berlin', 'America/Havana', 'America/Santiago', 'Australia/Lord_Howe', 'Asia/Kathmandu', 'Pacific/Chatham', 'Asia/Tehran', 'America/St_Johns', 'UTC'];
const reference = (ms: number, timeZone: string) => new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date(ms));

void test('plantDate equals the formatter on walks through DST changes and odd offsets', () => {
  const runs = Number(process.env.PLANTBRIDGE_PROPERTY_RUNS ?? 100);
  fc.assert(
    fc.property(
      fc.constantFrom(...ZONES),
      fc.integer({ min: Date.UTC(1990, 0, 1), max: Date.UTC(2040, 0, 1) }),
      fc.array(fc.integer({ min: 0, max: 7_200_000 }), { minLength: 1, maxLength: 200 }),
      (zone, start, steps) => {
        let t = start;
        for (const step of steps) {
          t += step;
          assert.equal(plantDate(t, zone), reference(t, zone), `${zone} ${new Date(t).toISOString()}`);
          assert.equal(plantDate(new Date(t).toISOString(), zone), reference(t, zone));
        }
      },
    ),
    { numRuns: runs },
  );
});

void test('plantDate is exact second by second around local midnight on DST-change days', () => {
  // Havana: DST starts at 00:00 local (clocks jump to 01:00), Santiago: DST ends at 24:00 (back to 23:00)
  for (const [zone, iso] of [
    ['America/Havana', '2025-03-09T04:30:00.000Z'],
    ['America/Havana', '2025-11-02T04:30:00.000Z'],
    ['America/Santiago', '2025-04-06T02:30:00.000Z'],
    ['America/Santiago', '2025-09-07T03:30:00.000Z'],
    ['Australia/Lord_Howe', '2025-04-05T13:00:00.000Z'],
  ] as const) {
    const from = Date.parse(iso);
    for (let t = from; t < from + 2 * 3_600_000; t += 997) assert.equal(plantDate(t, zone), reference(t, zone), `${zone} ${new Date(t).toISOString()}`);
  }
});

void test('plantDate before 1973 (offsets with seconds) and invalid input', () => {
  for (let t = Date.UTC(1960, 0, 1); t < Date.UTC(1960, 0, 3); t += 59_999) assert.equal(plantDate(t, 'Africa/Monrovia'), reference(t, 'Africa/Monrovia'));
  assert.throws(() => plantDate('not a time', 'UTC'), RangeError);
});
