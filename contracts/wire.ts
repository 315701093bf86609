import { z } from 'zod';
import { isWireText, wireTextMessage } from './wire-text.ts';

/**
 * Building blocks shared by every wire object. Objects are strict: an unknown field is an error that
 * names the field, so a typo or a newer minor version never passes silently (DESIGN.md §5).
 */
export const isoTime = z.iso.datetime({ offset: true, error: 'expected an ISO 8601 timestamp such as 2026-01-01T08:15:02.120Z' });
/** Free text of at most `max` characters under the wire text rule (contracts/wire-text.ts). */
export const wireText = (max: number) => z.string().max(max, `must be at most ${max} characters`).refine(isWireText, { error: (iss) => wireTextMessage(iss.input) });
/** Every string field of a wire object is one of these (or a stricter pattern): one text rule for both stores. */
export const nonEmpty = (max: number) => z.string().min(1, 'must not be empty').max(max, `must be at most ${max} characters`).refine(isWireText, { error: (iss) => wireTextMessage(iss.input) });
export const idString = nonEmpty(200).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces');
export const traceparent = z
  .string()
  .regex(/^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/, 'expected a W3C traceparent 00-<32 hex>-<16 hex>-<2 hex>');
export const postingDate = z.iso.date({ error: 'expected a date YYYY-MM-DD (plant time zone)' });

export const quantity = z.strictObject({
  qty: z.number().finite().nonnegative('quantities are never negative: a correction is a reversal'),
  uom: nonEmpty(8),
});
export type Quantity = z.infer<typeof quantity>;

export const source = z.strictObject({
  driver: nonEmpty(64),
  endpoint: nonEmpty(500).optional(),
  ref: nonEmpty(500).optional(),
  topic: nonEmpty(500).optional(),
});

/** The fields every transaction carries, whatever its type. */
export const envelopeFields = {
  id: idString,
  idempotencyKey: nonEmpty(300),
  correlationId: nonEmpty(200),
  traceparent,
  plant: nonEmpty(64),
  agentId: idString,
  workCenter: nonEmpty(64).optional(),
  eventTime: isoTime,
  observedTime: isoTime,
  source,
  /** shadow transactions are derived and stored on the agent but never forwarded */
};

/** What a transaction was derived from: capped list of event ids, with the first and last times. */
export const derivedFrom = z.strictObject({
  events: z.number().int().nonnegative(),
  sourceIds: z.array(nonEmpty(300)).max(50),
  firstEventTime: isoTime,
  lastEventTime: isoTime,
});

/** `plantbridge.<type>/<major>.<minor>`: a reader accepts its own major and any minor up to its own. */
export function schemaId(type: string, major: number, minor: number): string {
  return `plantbridge.${type}/${major}.${minor}`;
}

export function schemaField(type: string, major: number, maxMinor: number) {
  const re = new RegExp(`^plantbridge\\.${type.replace(/[.-]/g, '\\$&')}/${major}\\.(\\d+)$`);
  return z.string().refine(
    (s) => {
      const m = re.exec(s);
      return m !== null && Number(m[1]) <= maxMinor;
    },
    { error: `expected "plantbridge.${type}/${major}.0" (minor versions up to ${maxMinor})` },
  );
}

export function parseSchemaId(s: unknown): { type: string; major: number; minor: number } | undefined {
  if (typeof s !== 'string') return undefined;
  const m = /^plantbridge\.([a-z-]+)\/(\d+)\.(\d+)$/.exec(s);
  return m ? { type: m[1], major: Number(m[2]), minor: Number(m[3]) } : undefined;
}
