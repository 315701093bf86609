import { createHash } from 'node:crypto';
import type { Signal, SignalValue } from '../../../contracts/index.ts';
import { trimPlcPadding } from '../plc-text.ts';

/**
 * Pure conversions from OPC UA values to Signals. No node-opcua import here: the shapes below are the
 * parts of node-opcua's Variant / DataValue / StatusCode that we read, so this file is cheap to load
 * and to test.
 */

export interface StatusCodeLike {
  value: number;
  name?: string;
  toString(): string;
}

export interface VariantLike {
  dataType: number;
  arrayType?: number;
  value: unknown;
}

export interface DataValueLike {
  value?: VariantLike | null;
  statusCode?: StatusCodeLike | null;
  sourceTimestamp?: Date | null;
  serverTimestamp?: Date | null;
}

/** OPC UA built-in data type ids (Part 6, 5.1.2) */
const DT = {
  Null: 0,
  Boolean: 1,
  SByte: 2,
  Byte: 3,
  Int16: 4,
  UInt16: 5,
  Int32: 6,
  UInt32: 7,
  Int64: 8,
  UInt64: 9,
  Float: 10,
  Double: 11,
  String: 12,
  DateTime: 13,
  Guid: 14,
  ByteString: 15,
  XmlElement: 16,
  NodeId: 17,
  ExpandedNodeId: 18,
  StatusCode: 19,
  QualifiedName: 20,
  LocalizedText: 21,
  ExtensionObject: 22,
  DataValue: 23,
  Variant: 24,
  DiagnosticInfo: 25,
} as const;

export type Quality = Signal['quality'];

/** The two top bits of a status code are its severity: 00 good, 01 uncertain, 1x bad. */
export function qualityOf(status: StatusCodeLike | null | undefined): Quality {
  const v = (status?.value ?? 0) >>> 0;
  const sev = v >>> 30;
  return sev === 0 ? 'good' : sev === 1 ? 'uncertain' : 'bad';
}

/** The overflow bit (Part 4, 7.39.1): InfoType DataValue (0x400) and Overflow (0x80). */
export function overflowOf(status: StatusCodeLike | null | undefined): boolean {
  const v = (status?.value ?? 0) >>> 0;
  return (v & 0x480) === 0x480;
}

/** The status code's name without its info bits, e.g. "Good", "BadNodeIdUnknown", "UncertainLastUsableValue". */
export function statusName(status: StatusCodeLike | null | undefined): string {
  if (!status) return 'Good';
  const s = status.name ?? status.toString();
  return s.replace(/#.*$/, '').replace(/\s*\(.*\)$/, '');
}

/** node-opcua gives Int64/UInt64 as [high, low] 32-bit words. */
function int64ToValue(v: unknown, signed: boolean): number | string {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (Array.isArray(v) && v.length === 2) {
    const hi = BigInt(v[0] >>> 0);
    const lo = BigInt(v[1] >>> 0);
    let big = (hi << 32n) | lo;
    if (signed && hi & 0x80000000n) big -= 1n << 64n;
    const n = Number(big);
    return Number.isSafeInteger(n) ? n : big.toString();
  }
  return String(v);
}

function scalar(dataType: number, v: unknown): unknown {
  if (v === null || v === undefined) return null;
  switch (dataType) {
    case DT.Boolean:
      return Boolean(v);
    case DT.SByte:
    case DT.Byte:
    case DT.Int16:
    case DT.UInt16:
    case DT.Int32:
    case DT.UInt32:
    case DT.Float:
    case DT.Double:
      return typeof v === 'number' ? (Number.isFinite(v) ? v : String(v)) : Number(v);
    case DT.Int64:
      return int64ToValue(v, true);
    case DT.UInt64:
      return int64ToValue(v, false);
    case DT.String:
    case DT.XmlElement:
      return trimPlcPadding(String(v));
    case DT.DateTime:
      return v instanceof Date ? (Number.isNaN(v.getTime()) ? null : v.toISOString()) : String(v);
    case DT.ByteString:
      return Buffer.isBuffer(v) ? v.toString('base64') : String(v);
    case DT.LocalizedText:
      return (v as { text?: string | null }).text ?? null;
    case DT.QualifiedName:
      return (v as { toString(): string }).toString();
    case DT.StatusCode:
      return statusName(v as StatusCodeLike);
    case DT.ExtensionObject: {
      const o = v as { toJSON?: () => unknown };
      return typeof o.toJSON === 'function' ? o.toJSON() : { ...(v as object) };
    }
    default:
      return typeof v === 'object' && typeof (v as { toString?: unknown }).toString === 'function' ? String(v) : v;
  }
}

/**
 * A Variant as a Signal value: numbers as JS numbers (64-bit integers as numbers when safe, else as
 * decimal strings), strings, booleans; arrays and structures as an object (`{ array: [...] }`).
 */
export function variantToValue(variant: VariantLike | null | undefined): SignalValue {
  if (!variant || variant.dataType === DT.Null) return null;
  const isArray = (variant.arrayType ?? 0) !== 0 || (Array.isArray(variant.value) && variant.dataType !== DT.Int64 && variant.dataType !== DT.UInt64) || ArrayBuffer.isView(variant.value);
  if (isArray) {
    // a null array (length -1 on the wire) is legal OPC UA: no value, not a crash
    if (variant.value === null || variant.value === undefined) return null;
    const items = Array.from(variant.value as ArrayLike<unknown>, (x) => scalar(variant.dataType, x));
    return { array: items };
  }
  const v = scalar(variant.dataType, variant.value);
  if (v === null || typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'object') return v as Record<string, unknown>;
  return String(v);
}

/** The value part of a sourceId: short values as they are, long ones as a prefix and a digest. */
function idPart(value: SignalValue): string {
  const s = value === null ? 'null' : typeof value === 'object' ? JSON.stringify(value) : String(value);
  if (s.length <= 80) return s;
  return `${s.slice(0, 40)}~${createHash('sha1').update(s).digest('hex').slice(0, 16)}`;
}

export interface ToSignalInput {
  source: string;
  ref: string;
  dataValue: DataValueLike;
  receivedAt: Date;
}

/**
 * One notification as a Signal. sourceTime is the sourceTimestamp (the machine's time), else the
 * serverTimestamp, else the time we received it. The sourceId is `source/ref/sourceTime/value`: time
 * ordered per source and ref (cheap dedupe, DESIGN §2), and identical for a value the server sends
 * again after a reconnect, so such a repeat is dropped by the outbox instead of counted twice.
 */
export function toSignal(input: ToSignalInput): Signal {
  const { source, ref, dataValue, receivedAt } = input;
  const value = variantToValue(dataValue.value);
  const quality = qualityOf(dataValue.statusCode);
  const st = validDate(dataValue.sourceTimestamp) ?? validDate(dataValue.serverTimestamp) ?? receivedAt;
  const sourceTime = st.toISOString();
  const serverTs = validDate(dataValue.serverTimestamp);
  return {
    source,
    ref,
    value,
    quality,
    sourceTime,
    receivedAt: receivedAt.toISOString(),
    sourceId: `${source}/${ref}/${sourceTime}/${quality === 'good' ? '' : `${statusName(dataValue.statusCode)}:`}${idPart(value)}`,
    meta: {
      statusCode: statusName(dataValue.statusCode),
      serverTimestamp: serverTs ? serverTs.toISOString() : null,
      overflow: overflowOf(dataValue.statusCode),
    },
  };
}

/** The signal that marks a node stale: the connection is gone, its last value is no longer current. */
export function staleSignal(source: string, ref: string, at: Date, reason: string): Signal {
  const t = at.toISOString();
  return {
    source,
    ref,
    value: null,
    quality: 'bad',
    sourceTime: t,
    receivedAt: t,
    sourceId: `${source}/${ref}/${t}/stale`,
    meta: { statusCode: reason, serverTimestamp: null, overflow: false, stale: true },
  };
}

function validDate(d: Date | null | undefined): Date | undefined {
  if (!d || !(d instanceof Date)) return undefined;
  const t = d.getTime();
  // node-opcua uses 1601-01-01 (the OPC UA null DateTime) when a timestamp is absent
  if (Number.isNaN(t) || t <= Date.UTC(1601, 0, 2)) return undefined;
  return d;
}
