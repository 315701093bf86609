import { gunzipSync, inflateSync } from 'node:zlib';
import sparkplugPayload from 'sparkplug-payload';
import type { SignalValue } from '../../../contracts/index.ts';
import { trimPlcPadding } from '../plc-text.ts';

/** Sparkplug B payload decoding (Eclipse Tahu's sparkplug-payload) and value normalisation. */

// a static import, so that the single-executable bundle contains it (createRequire paths are not bundled)
const codec = (sparkplugPayload as unknown as { get(ns: string): SparkplugCodec }).get('spBv1.0');

interface SparkplugCodec {
  decodePayload(buf: Uint8Array): RawPayload;
  encodePayload(p: unknown): Uint8Array;
}

interface LongLike {
  low: number;
  high: number;
  unsigned: boolean;
  toNumber(): number;
  toString(): string;
  toSigned(): LongLike;
}

interface RawMetric {
  name?: string | null;
  alias?: LongLike | number | null;
  timestamp?: LongLike | number | null;
  type?: string;
  value?: unknown;
  isNull?: boolean | null;
}

interface RawPayload {
  timestamp?: LongLike | number | null;
  seq?: LongLike | number | null;
  uuid?: string | null;
  body?: Uint8Array | null;
  metrics?: RawMetric[] | null;
}

export interface Metric {
  name?: string;
  alias?: number;
  timestamp?: number;
  type: string;
  value: SignalValue;
}

export interface Payload {
  timestamp?: number;
  seq?: number;
  metrics: Metric[];
}

const COMPRESSED = 'SPBV1.0_COMPRESSED';

export function encodePayload(p: unknown): Buffer {
  return Buffer.from(codec.encodePayload(p));
}

/**
 * Decodes (and decompresses) a payload; throws on anything that is not Sparkplug B. A compressed body may
 * inflate to at most `maxBytes` (a 1 MB "bomb" inflating to 1 GB would otherwise hold the thread for
 * seconds and take gigabytes); more is an error, so the message is dead-lettered.
 */
export function decodePayload(buf: Buffer, maxBytes = 16 * 1024 * 1024): Payload {
  let raw = codec.decodePayload(buf);
  if (raw.uuid === COMPRESSED) {
    const algorithm = raw.metrics?.find((m) => m.name === 'algorithm')?.value;
    const body = Buffer.from(raw.body ?? new Uint8Array());
    const opts = { maxOutputLength: maxBytes };
    let inflated: Buffer;
    try {
      inflated = typeof algorithm === 'string' && algorithm.toUpperCase() === 'GZIP' ? gunzipSync(body, opts) : inflateSync(body, opts);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new Error(`compressed payload inflates to more than ${maxBytes} bytes`, { cause: err });
      throw err;
    }
    raw = codec.decodePayload(inflated);
  }
  return {
    ...(raw.timestamp != null ? { timestamp: toSafeNumber(raw.timestamp) } : {}),
    ...(raw.seq != null ? { seq: toSafeNumber(raw.seq) } : {}),
    metrics: (raw.metrics ?? []).map((m) => ({
      ...(m.name ? { name: m.name } : {}),
      ...(m.alias != null ? { alias: toSafeNumber(m.alias) } : {}),
      ...(m.timestamp != null ? { timestamp: toSafeNumber(m.timestamp) } : {}),
      type: m.type ?? 'Unknown',
      value: m.isNull ? null : toValue(m.type ?? 'Unknown', m.value),
    })),
  };
}

function isLong(v: unknown): v is LongLike {
  return typeof v === 'object' && v !== null && 'low' in v && 'high' in v && typeof (v as LongLike).toNumber === 'function';
}

function toSafeNumber(v: LongLike | number): number {
  return isLong(v) ? v.toNumber() : v;
}

/** A 64-bit integer as a number when it is exact, else as its decimal string. */
function int64(v: LongLike, signed: boolean): number | string {
  const x = signed ? v.toSigned() : v;
  const n = x.toNumber();
  return Number.isSafeInteger(n) ? n : x.toString();
}

export function toValue(type: string, v: unknown): SignalValue {
  if (v === null || v === undefined) return null;
  switch (type) {
    case 'Int8':
      return typeof v === 'number' ? (v << 24) >> 24 : Number(v);
    case 'Int16':
      return typeof v === 'number' ? (v << 16) >> 16 : Number(v);
    case 'Int32':
      return typeof v === 'number' ? v | 0 : Number(v);
    case 'Int64':
      return isLong(v) ? int64(v, true) : (v as number);
    case 'UInt64':
      return isLong(v) ? int64(v, false) : (v as number);
    case 'DateTime': {
      const ms = isLong(v) ? v.toNumber() : Number(v);
      return Number.isFinite(ms) ? new Date(ms).toISOString() : null;
    }
    case 'Bytes':
    case 'File':
      return Buffer.from(v as Uint8Array).toString('base64');
    default:
      if (typeof v === 'string') return trimPlcPadding(v);
      if (typeof v === 'number' || typeof v === 'boolean') return v;
      if (isLong(v)) return int64(v, !v.unsigned);
      // DataSet, Template, PropertySet: a JSON object (Longs as numbers or strings)
      return { [type]: JSON.parse(JSON.stringify(v, (_k, x: unknown) => (isLong(x) ? int64(x, !x.unsigned) : x instanceof Uint8Array ? Buffer.from(x).toString('base64') : x))) };
  }
}
