import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import type { Signal } from '../../../contracts/index.ts';
import { roundedInteger, roundedProblem } from '../../rules/field-pick.ts';
import type { FieldPick, MqttConfig, MqttSubscription } from './config.ts';
import { keyKindOf, unstorable, type KeyKind, type MappingResult } from './mapping.ts';
import { expandTemplate, matchTopic, parseFilter, type ParsedFilter } from './topic-filter.ts';

/**
 * The mapping as it was before the hot-path rewrite of mapping.ts (issue 4, ~2x cheaper per message), kept
 * unchanged as the oracle of mapping-equivalence.test.ts: the rewrite must give the same result for every
 * message and config. Not used by the driver. Change it only together with a deliberate change of results.
 */


type Getter = (payload: unknown, topicFields: Record<string, string>) => { found: boolean; value: unknown };

interface CompiledPick {
  get: Getter;
  optional: boolean;
  describe: string;
}

interface CompiledSubscription {
  sub: MqttSubscription;
  filter: ParsedFilter;
  keyKind: KeyKind;
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

function compileJsonPath(path: string): Array<string | number> {
  const out: Array<string | number> = [];
  const re = /\.([A-Za-z0-9_-]+)|\[(\d+)\]/g;
  for (const m of path.slice(1).matchAll(re)) out.push(m[1] !== undefined ? m[1] : Number(m[2]));
  return out;
}

function compilePick(pick: FieldPick): CompiledPick {
  if ('json' in pick) {
    const path = compileJsonPath(pick.json);
    return {
      optional: pick.optional,
      describe: pick.json,
      get: (payload) => {
        let v: unknown = payload;
        for (const seg of path) {
          if (v === null || typeof v !== 'object') return { found: false, value: undefined };
          if (typeof seg === 'number') {
            if (!Array.isArray(v) || seg >= v.length) return { found: false, value: undefined };
            v = v[seg];
          } else {
            if (Array.isArray(v) || !Object.prototype.hasOwnProperty.call(v, seg)) return { found: false, value: undefined };
            v = (v as Record<string, unknown>)[seg];
          }
        }
        return { found: true, value: v };
      },
    };
  }
  if ('topic' in pick) {
    const name = pick.topic;
    return { optional: false, describe: `topic level ${name}`, get: (_p, t) => ({ found: name in t, value: t[name] }) };
  }
  const value = pick.const;
  return { optional: false, describe: 'constant', get: () => ({ found: true, value }) };
}

export class ReferenceMapper {
  readonly subs: CompiledSubscription[];
  private readonly source: string;
  private readonly maxPayloadBytes: number;

  constructor(config: Pick<MqttConfig, 'name' | 'subscriptions' | 'maxPayloadBytes'>) {
    this.source = config.name;
    this.maxPayloadBytes = config.maxPayloadBytes;
    this.subs = config.subscriptions.map((sub) => {
      const f = sub.fields;
      const extras: Array<[string, CompiledPick]> = [];
      for (const [k, p] of Object.entries(f)) if (!SPECIAL.has(k) && p) extras.push([k, compilePick(p)]);
      return {
        sub,
        filter: parseFilter(sub.filter),
        keyKind: keyKindOf(sub),
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
      const topicFields = matchTopic(sub.filter, topic);
      if (topicFields) return { sub, topicFields };
    }
    return undefined;
  }

  map(topic: string, payload: Buffer, retained: boolean, receivedAtMs: number): MappingResult {
    const routed = this.route(topic);
    if (!routed) return { kind: 'ignore', reason: `no subscription matches topic ${topic}` };
    const { sub, topicFields } = routed;
    if (retained && sub.sub.retained === 'ignore') return { kind: 'ignore', reason: 'retained message ignored by config' };
    if (payload.length > this.maxPayloadBytes) {
      return { kind: 'dead', code: 'PAYLOAD_INVALID', reason: `payload of ${payload.length} bytes exceeds maxPayloadBytes ${this.maxPayloadBytes}` };
    }
    if (!isUtf8(payload)) return { kind: 'dead', code: 'PAYLOAD_INVALID', reason: 'payload is not valid UTF-8' };
    const text = payload.toString('utf8');
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      return { kind: 'dead', code: 'PAYLOAD_INVALID', reason: `payload is not JSON: ${(err as Error).message.slice(0, 200)}` };
    }

    const problems: string[] = [];
    const pick = (name: string, p: CompiledPick | undefined): unknown => {
      if (!p) return undefined;
      const r = p.get(doc, topicFields);
      if (!r.found || r.value === undefined) {
        if (!p.optional) problems.push(`${name}: ${p.describe} is missing`);
        return undefined;
      }
      return r.value;
    };

    const idRaw = pick('id', sub.id);
    const timeRaw = pick('time', sub.time);
    const seqRaw = pick('sequence', sub.sequence);
    const valueRaw = pick('value', sub.value);
    const extras: Record<string, unknown> = {};
    for (const [k, p] of sub.extras) {
      const v = pick(k, p);
      if (v !== undefined) extras[k] = v;
    }

    let id: string | undefined;
    if (idRaw !== undefined) {
      // deliberate change (7f22c98): an integer beyond 2^53 was rounded when parsed
      if (roundedInteger(idRaw)) problems.push(roundedProblem('id', idRaw, sub.id!.describe));
      else if ((typeof idRaw === 'string' && idRaw.length > 0 && idRaw.length <= MAX_ID) || (typeof idRaw === 'number' && Number.isFinite(idRaw))) {
        const bad = unstorable(idRaw, 'id', sub.id!.describe);
        if (bad) problems.push(bad);
        else id = String(idRaw);
      } else problems.push(`id: expected a string of 1-${MAX_ID} characters or a number, got ${describe(idRaw)}`);
    }
    let timeMs: number | undefined;
    if (timeRaw !== undefined) {
      timeMs = parseTime(timeRaw);
      if (timeMs === undefined) problems.push(`time: expected an ISO 8601 timestamp or epoch milliseconds, got ${describe(timeRaw)}`);
    }
    let seq: number | undefined;
    if (seqRaw !== undefined) {
      const n = typeof seqRaw === 'string' && /^\d{1,15}$/.test(seqRaw) ? Number(seqRaw) : seqRaw;
      if (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0) seq = n;
      else problems.push(`sequence: expected a non-negative integer, got ${describe(seqRaw)}`);
    }
    let value: Signal['value'];
    // numbers beyond a double's range and strings that are not Unicode are refused where a field uses them
    const check = (v: unknown, field: string, where: string) => {
      const bad = unstorable(v, field, where);
      if (bad) problems.push(bad);
    };
    if (sub.extras.length > 0) {
      value = { ...(valueRaw !== undefined ? { value: valueRaw } : {}), ...extras };
      if (valueRaw !== undefined) check(valueRaw, 'value', sub.value!.describe);
      for (const [k, p] of sub.extras) if (k in extras) check(extras[k], k, p.describe);
    } else if (sub.value) {
      if (valueRaw !== undefined && !isSignalValue(valueRaw)) problems.push(`value: expected a number, string, boolean, null or object, got ${describe(valueRaw)}`);
      else if (valueRaw !== undefined) check(valueRaw, 'value', sub.value.describe);
      value = (valueRaw ?? null) as Signal['value'];
    } else {
      value = Array.isArray(doc) ? { payload: doc } : (doc as Signal['value']);
      check(doc, 'value', '$');
    }
    if (problems.length > 0) return { kind: 'dead', code: 'SCHEMA_INVALID', reason: `topic ${topic}: ${problems.join('; ')}`.slice(0, 1000) };

    const receivedAt = new Date(receivedAtMs).toISOString();
    const sourceTime = timeMs !== undefined ? new Date(timeMs).toISOString() : receivedAt;
    const ref = expandTemplate(sub.sub.ref, topicFields).slice(0, 500) || topic.slice(0, 500);
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
    const signal: Signal = {
      source: this.source,
      ref,
      value,
      quality: 'good',
      sourceTime,
      receivedAt,
      sourceId,
      ...(retained ? { baseline: true } : {}),
      meta: { topic, ...topicFields, ...(retained ? { retained: true } : {}) },
    };
    return { kind: 'signal', signal };
  }
}

/** source/scope + suffix, shortened in the middle (scope prefix kept for locality) when over 300 characters. */
function buildKey(source: string, scope: string, suffix: string): string {
  const full = `${source}/${scope}${suffix}`;
  if (full.length <= MAX_KEY) return full;
  const room = MAX_KEY - source.length - suffix.length - 14;
  const scopeDigest = createHash('sha256').update(scope).digest('hex').slice(0, 12);
  return `${source}/${scope.slice(0, Math.max(0, room))}~${scopeDigest}${suffix}`.slice(0, MAX_KEY);
}

function digest(payload: Buffer): string {
  return createHash('sha256').update(payload).digest('hex').slice(0, 16);
}

/** ISO 8601 string, or a number: epoch milliseconds (values below 1e11 are taken as epoch seconds). */
function parseTime(v: unknown): number | undefined {
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
