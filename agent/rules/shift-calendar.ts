import { z } from 'zod';

/**
 * The plant's shift calendar: shifts start at local wall-clock times in the plant's time zone, every day.
 * A shift ends where the next one starts, so a night shift 22:00-06:00 crosses midnight, and on a DST
 * change it is an hour shorter or longer. Wall times that do not exist (the spring-forward gap) move
 * forward by the gap; times that occur twice (fall back) take the first occurrence — the same
 * disambiguation as Temporal's "compatible".
 */

export const shiftSchema = z.strictObject({
  name: z.string().min(1).max(20),
  /** local start time HH:MM in the plant's time zone */
  start: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'expected a local time HH:MM such as 06:00'),
});
export type Shift = z.infer<typeof shiftSchema>;

export interface ShiftSpan {
  name: string;
  /** instant (ms) the shift started / ends */
  start: number;
  end: number;
  /** local date the shift started on, YYYY-MM-DD */
  date: string;
}

const fmtCache = new Map<string, Intl.DateTimeFormat>();
function fmt(timeZone: string): Intl.DateTimeFormat {
  let f = fmtCache.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    fmtCache.set(timeZone, f);
  }
  return f;
}

interface Local {
  y: number;
  m: number;
  d: number;
  hh: number;
  mm: number;
  ss: number;
}

export function localParts(t: number, timeZone: string): Local {
  const p: Record<string, number> = {};
  for (const part of fmt(timeZone).formatToParts(new Date(t))) if (part.type !== 'literal') p[part.type] = Number(part.value);
  return { y: p.year, m: p.month, d: p.day, hh: p.hour, mm: p.minute, ss: p.second };
}

/** UTC offset of the zone at instant t, in ms (local = utc + offset). */
export function offsetAt(t: number, timeZone: string): number {
  const l = localParts(t, timeZone);
  const asUtc = Date.UTC(l.y, l.m - 1, l.d, l.hh, l.mm, l.ss);
  return asUtc - Math.floor(t / 1000) * 1000;
}

/** The instant of a local wall-clock time in the zone (gap: forward; overlap: earlier). */
export function localToInstant(y: number, m: number, d: number, hh: number, mm: number, timeZone: string): number {
  const guess = Date.UTC(y, m - 1, d, hh, mm);
  const before = offsetAt(guess - 14 * 3_600_000, timeZone);
  const after = offsetAt(guess + 14 * 3_600_000, timeZone);
  const candidates = [guess - before, guess - after].filter((c) => offsetAt(c, timeZone) === guess - c);
  if (candidates.length > 0) return Math.min(...candidates);
  // a gap: the wall time does not exist; move it forward by the gap
  return guess - before;
}

function ymd(y: number, m: number, d: number): string {
  return `${String(y).padStart(4, '0')}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}`;
}

/** The shift that contains instant t (start <= t < end). */
export function shiftAt(t: number, shifts: readonly Shift[], timeZone: string): ShiftSpan {
  const l = localParts(t, timeZone);
  const boundaries: Array<{ at: number; name: string; date: string }> = [];
  for (let k = -2; k <= 2; k++) {
    const day = new Date(Date.UTC(l.y, l.m - 1, l.d + k));
    const [y, m, d] = [day.getUTCFullYear(), day.getUTCMonth() + 1, day.getUTCDate()];
    for (const s of shifts) {
      const [hh, mm] = s.start.split(':').map(Number);
      boundaries.push({ at: localToInstant(y, m, d, hh, mm, timeZone), name: s.name, date: ymd(y, m, d) });
    }
  }
  boundaries.sort((a, b) => a.at - b.at);
  let i = boundaries.length - 1;
  while (i > 0 && boundaries[i].at > t) i--;
  const cur = boundaries[i];
  const next = boundaries.slice(i + 1).find((b) => b.at > cur.at)!;
  return { name: cur.name, start: cur.at, end: next.at, date: cur.date };
}
