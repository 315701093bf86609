import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import type { Signal } from '../../../contracts/index.ts';
import { roundedInteger, roundedProblem } from '../../rules/field-pick.ts';
import type { FieldPick, MqttConfig, MqttSubscription } from './config.ts';
import { compileMatcher, compileTemplate, parseFilter, type ParsedFilter } from './topic-filter.ts';

/**
 * Turns one MQTT message into a Signal, or says why it cannot be one. Pure: no I/O, no clock (the
 * arrival time is passed in), so the same message always gives the same dedupe key. (Its caches hold
 * derived strings only: the result never depends on the messages before.)
 */

export type MappingResult =
  | { kind: 'signal'; signal: Signal }
  | { kind: 'dead'; code: 'PAYLOAD_INVALID' | 'SCHEMA_INVALID'; reason: string }
  | { kind: 'ignore'; reason: string };

/** How a mapping builds Signal.sourceId (README: "Dedupe keys"). */
export type KeyKind = 'id' | 'sequence' | 'time-digest' | 'arrival';

/** A field's value, or undefined when it is missing (JSON has no undefined, so nothing is lost). */
type Getter = (payload: unknown, topicFields: Record<string, string>) => unknown;

interface CompiledPick {
  get: Getter;
  optional: boolean;
  describe: string;
}

interface CompiledSubscription {
  sub: MqttSubscription;
  filter: ParsedFilter;
  keyKind: KeyKind;
  match: (topic: string) => Record<string, string> | undefined;
  ref: (topicFields: Record<string, string>) => string;
  id?: CompiledPick;
  time?: CompiledPick;
  value?: CompiledPick;
  sequence?: CompiledPick;
  extras: Array<[string, CompiledPick]>;
}

const SPECIAL = new Set(['id', 'time', 'value', 'sequence']);
/** Signal.sourceId allows 300 characters; topics may be longer. */
const MAX_KEY = 300;
const MAX_ID = 200;
/** the form Date#toISOString writes: such a string is kept as it is once validated */
const CANONICAL_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

export function keyKindOf(sub: Pick<MqttSubscription, 'fields' | 'dedupe'>): KeyKind {
  if (sub.dedupe === 'arrival') return 'arrival';
  if (sub.fields.id) return 'id';
  if (sub.fields.sequence) return 'sequence';
  return 'time-digest';
}

export function compileJsonPath(path: string): Array<string | number> {
  const out: Array<string | number> = [];
  const re = /\.([A-Za-z0-9_-]+)|\[(\d+)\]/g;
  for (const m of path.slice(1).matchAll(re)) out.push(m[1] !== undefined ? m[1] : Number(m[2]));
  return out;
}

const hasOwn = Object.prototype.hasOwnProperty;

function compilePick(pick: FieldPick): CompiledPick {
  if ('json' in pick) {
    const path = compileJsonPath(pick.json);
    return {
      optional: pick.optional,
      describe: pick.json,
      get: (payload) => {
        let v: unknown = payload;
        for (const seg of path) {
          if (v === null || typeof v !== 'object') return undefined;
          if (typeof seg === 'number') {
            if (!Array.isArray(v) || seg >= v.length) return undefined;
            v = v[seg];
          } else {
            if (Array.isArray(v) || !hasOwn.call(v, seg)) return undefined;
            v = (v as Record<string, unknown>)[seg];
          }
        }
        return v;
      },
    };
  }
  if ('topic' in pick) {
    const name = pick.topic;
    return { optional: false, describe: `topic level ${name}`, get: (_p, t) => (name in t ? t[name] : undefined) };
  }
  const value = pick.const;
  return { optional: false, describe: 'constant', get: () => value };
}

/**
 * Turns one MQTT message into a Signal. This runs once per message on the ingest path, so the work that
 * depends only on the config is done here, once: topic filters and ref templates are compiled, field
 * picks return the value itself, and the ISO strings of the arrival time and of the last second of event
 * time seen are reused. mapping-reference.ts is the straightforward version it must agree with.
 */
export class Mapper {
  readonly subs: CompiledSubscription[];
  private readonly source: string;
  private readonly maxPayloadBytes: number;
  /** the arrival time's ISO string, for all messages of the same millisecond */
  private recvMs = NaN;
  private recvIso = '';
  /** "YYYY-MM-DDTHH:mm:ss." of the last canonical event time validated: every millisecond of it is valid */
  private secPrefix = '';
  /** the last numeric event time converted */
  private numMs = NaN;
  private numIso = '';

  constructor(config: Pick<MqttConfig, 'name' | 'subscriptions' | 'maxPayloadBytes'>) {
    this.source = config.name;
    this.maxPayloadBytes = config.maxPayloadBytes;
    this.subs = config.subscriptions.map((sub) => {
      const f = sub.fields;
      const extras: Array<[string, CompiledPick]> = [];
      for (const [k, p] of Object.entries(f)) if (!SPECIAL.has(k) && p) extras.push([k, compilePick(p)]);
      const filter = parseFilter(sub.filter);
      return {
        sub,
        filter,
        keyKind: keyKindOf(sub),
        match: compileMatcher(filter),
        ref: compileTemplate(sub.ref),
        ...(f.id ? { id: compilePick(f.id) } : {}),
        ...(f.time ? { time: compilePick(f.time) } : {}),
        ...(f.value ? { value: compilePick(f.value) } : {}),
        ...(f.sequence ? { sequence: compilePick(f.sequence) } : {}),
        extras,
      };
    });
  }

  /** The first subscription (in config order) whose filter matches the topic. */
  route(topic: string): { sub: CompiledSubscription; topicFields: Record<string, string> } | undefined {
    for (const sub of this.subs) {
      const topicFields = sub.match(topic);
      if (topicFields) return { sub, topicFields };
    }
    return undefined;
  }

  map(topic: string, payload: Buffer, retained: boolean, receivedAtMs: number): MappingResult {
    let sub: CompiledSubscription | undefined;
    let topicFields: Record<string, string> | undefined;
    for (const s of this.subs) {
      topicFields = s.match(topic);
      if (topicFields) {
        sub = s;
        break;
      }
    }
    if (!sub || !topicFields) return { kind: 'ignore', reason: `no subscription matches topic ${topic}` };
    if (retained && sub.sub.retained === 'ignore') return { kind: 'ignore', reason: 'retained message ignored by config' };
    if (payload.length > this.maxPayloadBytes) {
      return { kind: 'dead', code: 'PAYLOAD_INVALID', reason: `payload of ${payload.length} bytes exceeds maxPayloadBytes ${this.maxPayloadBytes}` };
    }
    if (!isUtf8(payload)) return { kind: 'dead', code: 'PAYLOAD_INVALID', reason: 'payload is not valid UTF-8' };
    let doc: unknown;
    try {
      doc = JSON.parse(payload.toString('utf8'));
    } catch (err) {
      return { kind: 'dead', code: 'PAYLOAD_INVALID', reason: `payload is not JSON: ${(err as Error).message.slice(0, 200)}` };
    }

    let problems: string[] | undefined;
    const pick = (name: string, p: CompiledPick | undefined): unknown => {
      if (!p) return undefined;
      const v = p.get(doc, topicFields);
      if (v === undefined && !p.optional) (problems ??= []).push(`${name}: ${p.describe} is missing`);
      return v;
    };

    const idRaw = pick('id', sub.id);
    const timeRaw = pick('time', sub.time);
    const seqRaw = pick('sequence', sub.sequence);
    const valueRaw = pick('value', sub.value);
    let extras: Record<string, unknown> | undefined;
    if (sub.extras.length > 0) {
      extras = {};
      for (const [k, p] of sub.extras) {
        const v = pick(k, p);
        if (v !== undefined) extras[k] = v;
      }
    }

    let id: string | undefined;
    if (idRaw !== undefined) {
      // 9007199254740993 parses to ...992: two events' ids would be one key and the second dropped as a duplicate
      if (roundedInteger(idRaw)) (problems ??= []).push(roundedProblem('id', idRaw, sub.id!.describe));
      else if ((typeof idRaw === 'string' && idRaw.length > 0 && idRaw.length <= MAX_ID) || (typeof idRaw === 'number' && Number.isFinite(idRaw))) {
        const bad = unstorable(idRaw, 'id', sub.id!.describe);
        if (bad) (problems ??= []).push(bad);
        else id = String(idRaw);
      } else (problems ??= []).push(`id: expected a string of 1-${MAX_ID} characters or a number, got ${describe(idRaw)}`);
    }
    let sourceTime: string | undefined;
    if (timeRaw !== undefined) {
      sourceTime = this.eventTime(timeRaw);
      if (sourceTime === undefined) (problems ??= []).push(`time: expected an ISO 8601 timestamp or epoch milliseconds, got ${describe(timeRaw)}`);
    }
    let seq: number | undefined;
    if (seqRaw !== undefined) {
      const n = typeof seqRaw === 'string' && /^\d{1,15}$/.test(seqRaw) ? Number(seqRaw) : seqRaw;
      if (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0) seq = n;
      else (problems ??= []).push(`sequence: expected a non-negative integer, got ${describe(seqRaw)}`);
    }
    let value: Signal['value'];
    let bad: string | undefined;
    if (extras) {
      value = valueRaw !== undefined ? { value: valueRaw, ...extras } : (extras as Signal['value']);
      if (valueRaw !== undefined && (bad = unstorable(valueRaw, 'value', sub.value!.describe))) (problems ??= []).push(bad);
      for (const [k, p] of sub.extras) if (k in extras && (bad = unstorable(extras[k], k, p.describe))) (problems ??= []).push(bad);
    } else if (sub.value) {
      if (valueRaw !== undefined && !isSignalValue(valueRaw)) (problems ??= []).push(`value: expected a number, string, boolean, null or object, got ${describe(valueRaw)}`);
      else if (valueRaw !== undefined && (bad = unstorable(valueRaw, 'value', sub.value.describe))) (problems ??= []).push(bad);
      value = (valueRaw ?? null) as Signal['value'];
    } else {
      value = Array.isArray(doc) ? { payload: doc } : (doc as Signal['value']);
      if ((bad = unstorable(doc, 'value', '$'))) (problems ??= []).push(bad);
    }
    if (problems) return { kind: 'dead', code: 'SCHEMA_INVALID', reason: `topic ${topic}: ${problems.join('; ')}`.slice(0, 1000) };

    if (receivedAtMs !== this.recvMs) {
      this.recvIso = new Date(receivedAtMs).toISOString();
      this.recvMs = receivedAtMs;
    }
    const receivedAt = this.recvIso;
    sourceTime ??= receivedAt;
    const ref = sub.ref(topicFields).slice(0, 500) || topic.slice(0, 500);
    let sourceId: string;
    switch (sub.keyKind) {
      case 'id':
        sourceId = buildKey(this.source, ref, `@id=${id}`);
        break;
      case 'sequence':
        sourceId = buildKey(this.source, topic, `@seq=${String(seq).padStart(15, '0')}`);
        break;
      case 'time-digest':
        sourceId = buildKey(this.source, topic, `@t=${sourceTime}#${digest(payload)}`);
        break;
      case 'arrival':
        sourceId = buildKey(this.source, topic, `@a=${receivedAt}#${digest(payload)}`);
        break;
    }
    const signal: Signal = retained
      ? { source: this.source, ref, value, quality: 'good', sourceTime, receivedAt, sourceId, baseline: true, meta: { topic, ...topicFields, retained: true } }
      : { source: this.source, ref, value, quality: 'good', sourceTime, receivedAt, sourceId, meta: { topic, ...topicFields } };
    return { kind: 'signal', signal };
  }

  /**
   * The event time as the ISO string the signal carries, or undefined when it is not a time. A canonical
   * string (what toISOString writes) is returned as it is: validated by a round trip once per second of
   * event time, and for the other messages of that second by its prefix.
   */
  private eventTime(v: unknown): string | undefined {
    if (typeof v === 'string' && v.length === 24 && CANONICAL_TIME.test(v)) {
      if (this.secPrefix !== '' && v.startsWith(this.secPrefix)) return v;
      const ms = Date.parse(v);
      if (!Number.isNaN(ms) && new Date(ms).toISOString() === v) {
        this.secPrefix = v.slice(0, 20);
        return v;
      }
    }
    const ms = parseTime(v);
    if (ms === undefined) return undefined;
    if (ms !== this.numMs) {
      this.numIso = new Date(ms).toISOString();
      this.numMs = ms;
    }
    return this.numIso;
  }
}

/** source/scope + suffix, shortened in the middle (scope prefix kept for locality) when over 300 characters. */
export function buildKey(source: string, scope: string, suffix: string): string {
  const full = `${source}/${scope}${suffix}`;
  if (full.length <= MAX_KEY) return full;
  const room = MAX_KEY - source.length - suffix.length - 14;
  const scopeDigest = createHash('sha256').update(scope).digest('hex').slice(0, 12);
  return `${source}/${scope.slice(0, Math.max(0, room))}~${scopeDigest}${suffix}`.slice(0, MAX_KEY);
}

/**
 * The dedupe key of a message's input dead letter (InputDeadLetter.dedupeKey): a redelivery has the same
 * topic and bytes, so it is not written twice. Built like the time-digest signal key (README: "Dedupe
 * keys"); `payload` is the whole payload, not the 64 KiB kept with the dead letter.
 */
export function deadLetterKey(source: string, topic: string, payload: Buffer): string {
  return buildKey(source, topic, `@dl#${digest(payload)}`);
}

function digest(payload: Buffer): string {
  return createHash('sha256').update(payload).digest('hex').slice(0, 16);
}

/** ISO 8601 string, or a number: epoch milliseconds (values below 1e11 are taken as epoch seconds). */
export function parseTime(v: unknown): number | undefined {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) return undefined;
    const ms = v < 1e11 ? v * 1000 : v;
    return ms <= 8.64e15 ? Math.round(ms) : undefined;
  }
  if (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(v)) {
    const ms = Date.parse(v);
    return Number.isNaN(ms) ? undefined : ms;
  }
  return undefined;
}

/**
 * What in a value taken from the payload cannot be stored as it is, or undefined. A JSON number beyond a
 * double's range (1e400, -1e400) parses to ±Infinity, which JSON stores as null; a string escape of an
 * unpaired surrogate (\ud800) makes a string that is not Unicode, which is stored with U+FFFD in its
 * place, so that different ids or values became one. Both are refused (SCHEMA_INVALID), naming the field
 * and where in it. `where` is the pick's JSON path (or what it picks). Parts of the payload no field uses
 * are not looked at: nothing of them is stored but the raw bytes' digest.
 */
export function unstorable(v: unknown, field: string, where: string): string | undefined {
  const found = firstUnstorable(v, 0);
  if (!found) return undefined;
  const inner = found.path.join('');
  const at = !inner ? where : where.startsWith('$') ? `${where}${inner}` : `${where} at $${inner}`;
  return `${field}: ${at} ${found.what}`;
}

/** deeper than this the outbox refuses the value anyway (it dead-letters what it cannot store) */
const MAX_CHECK_DEPTH = 256;

function firstUnstorable(v: unknown, depth: number): { path: string[]; what: string } | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? undefined : { path: [], what: `is a number beyond the range of a double (it parses to ${v})` };
  if (typeof v === 'string') return isWellFormed(v) ? undefined : { path: [], what: `is a string with an unpaired surrogate (${loneSurrogate(v)}): not Unicode` };
  if (v === null || typeof v !== 'object' || depth >= MAX_CHECK_DEPTH) return undefined;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const f = firstUnstorable(v[i], depth + 1);
      if (f) return (f.path.unshift(`[${i}]`), f);
    }
    return undefined;
  }
  for (const k in v) {
    if (!isWellFormed(k)) return { path: [], what: `has a key with an unpaired surrogate (${loneSurrogate(k)}): not Unicode` };
    const f = firstUnstorable((v as Record<string, unknown>)[k], depth + 1);
    if (f) return (f.path.unshift(/^[A-Za-z0-9_-]+$/.test(k) ? `.${k}` : `[${JSON.stringify(k).slice(0, 40)}]`), f);
  }
  return undefined;
}

/** String#isWellFormed (Node 20+; the project's TypeScript lib predates it) */
const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

/** the first unpaired surrogate as its JSON escape, with its position */
function loneSurrogate(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      i++;
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) return `\\u${c.toString(16)} at character ${i}`;
  }
  return '?';
}

function isSignalValue(v: unknown): boolean {
  return v === null || ['number', 'string', 'boolean'].includes(typeof v) || (typeof v === 'object' && !Array.isArray(v));
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  if (typeof v === 'number' && !Number.isFinite(v)) return `number ${v} (beyond the range of a double)`;
  const s = JSON.stringify(v) ?? String(v);
  return `${typeof v} ${s.length > 40 ? `${s.slice(0, 40)}…` : s}`;
}
