import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { MqttConfig, MqttSubscription } from './config.ts';
import { Mapper } from './mapping.ts';
import { ReferenceMapper } from './mapping-reference.ts';
import { compileMatcher, compileTemplate, expandTemplate, matchTopic, parseFilter } from './topic-filter.ts';

/**
 * The compiled hot-path mapping (mapping.ts) against the straightforward one it replaced
 * (mapping-reference.ts): for generated configs and message sequences — topics that match or not, $
 * topics, empty levels, JSON and not, every kind of event time (canonical ISO strings of nearby
 * milliseconds, other ISO forms, impossible dates, epoch numbers), retained or not — both give deeply
 * equal results, message after message on the same instances (so the per-second and per-millisecond
 * caches are exercised).
 */

const level = fc.constantFrom('plant', 'a', 'b', 'L7', 'M1', '', 'events', 'x y', 'ü');
const topicArb = fc.oneof(
  fc.array(level, { minLength: 1, maxLength: 6 }).map((l) => l.join('/')),
  fc.array(level, { minLength: 1, maxLength: 5 }).map((l) => `$SYS/${l.join('/')}`),
  fc.string({ maxLength: 20 }),
);

const NAMES = ['line', 'machine', 'cell', 'rest', 'topic'];
const filterArb = fc
  .tuple(
    fc.array(fc.oneof(level.filter((l) => !l.includes(' ')), fc.constant('+'), fc.constantFrom(...NAMES).map((n) => `+${n}`)), { minLength: 1, maxLength: 5 }),
    fc.constantFrom('', '#', '#rest2'),
  )
  .map(([segs, tail]) => {
    const seen = new Set<string>();
    const out = segs.map((s) => (s.startsWith('+') && s.length > 1 ? (seen.has(s) ? '+' : (seen.add(s), s)) : s));
    return tail ? [...out, tail].join('/') : out.join('/');
  })
  .filter((f) => f.length > 0);

const T = Date.UTC(2026, 2, 1, 8);
const timeArb: fc.Arbitrary<unknown> = fc.oneof(
  // canonical strings close together: the same second again and again, then the next
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 5000 }).map((d) => new Date(T + d).toISOString()) },
  fc.date({ min: new Date(-62_000_000_000_000), max: new Date(250_000_000_000_000), noInvalidDate: true }).map((d) => d.toISOString()),
  fc.constantFrom(
    '2026-02-30T10:00:00.000Z',
    '2026-13-01T10:00:00.000Z',
    '2026-01-01T24:00:00.000Z',
    '2026-01-01T23:59:60.000Z',
    '0000-01-01T00:00:00.000Z',
    '2026-03-01T08:00:00Z',
    '2026-03-01T08:00:00.5Z',
    '2026-03-01T09:00:00.000+01:00',
    '2026-03-01T08:00:00.000z',
    '2026-03-01 08:00:00.000Z',
    'yesterday',
    '',
  ),
  fc.integer({ min: -10, max: 2_000_000_000_000 }),
  fc.double(),
  fc.constantFrom(null, true, [], {}),
);
const idArb: fc.Arbitrary<unknown> = fc.oneof({ weight: 6, arbitrary: fc.string({ minLength: 1, maxLength: 20 }) }, fc.string({ maxLength: 210 }), fc.integer(), fc.double(), fc.constantFrom(null, '', {}, [1]));
const seqArb: fc.Arbitrary<unknown> = fc.oneof({ weight: 6, arbitrary: fc.nat() }, fc.integer(), fc.constantFrom('42', '0001', '1234567890123456', '-1', 1.5, 2 ** 60, null));
const docArb = fc.record(
  { eventId: idArb, ts: timeArb, seq: seqArb, v: fc.jsonValue({ maxDepth: 2 }), order: fc.record({ number: fc.oneof(fc.string({ maxLength: 8 }), fc.nat()) }, { requiredKeys: [] }), items: fc.array(fc.record({ qty: fc.nat() }), { maxLength: 2 }) },
  { requiredKeys: ['eventId', 'ts', 'seq'] },
);
const payloadArb = fc.oneof(
  { weight: 8, arbitrary: docArb.map((d) => Buffer.from(JSON.stringify(d))) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }).map((d) => Buffer.from(JSON.stringify(d) ?? 'null')) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)) },
  // JSON text no JSON.stringify writes: numbers beyond a double, escapes of unpaired surrogates (and a pair)
  {
    weight: 1,
    arbitrary: fc
      .tuple(docArb, fc.constantFrom('eventId', 'ts', 'seq', 'v', 'order', 'items'), fc.constantFrom('1e400', '-1E+999', '"\\ud800"', '"a\\udfffb"', '{"\\udbff":1}', '[1,{"x":1e309}]', '"\\ud83d\\ude00"'))
      .map(([d, k, token]) => Buffer.from(JSON.stringify({ ...d, [k]: '__hostile__' }).replace('"__hostile__"', token))),
  },
);

const jsonPick = fc.record({
  json: fc.constantFrom('$.eventId', '$.ts', '$.seq', '$.v', '$.order.number', '$.items[0].qty', '$.missing', '$'),
  optional: fc.boolean(),
});
const anyPick = fc.oneof(jsonPick, fc.record({ topic: fc.constantFrom(...NAMES) }), fc.record({ const: fc.oneof(fc.string({ maxLength: 5 }), fc.integer(), fc.boolean()) }));

const subArb: fc.Arbitrary<MqttSubscription> = fc
  .record({
    filter: filterArb,
    ref: fc.array(fc.oneof(fc.constantFrom('cells/', '/', 'x', '{'), fc.constantFrom(...NAMES, 'nope').map((n) => `{${n}}`)), { maxLength: 4 }).map((p) => p.join('') || 'r'),
    id: fc.option(fc.oneof({ weight: 4, arbitrary: fc.constant({ json: '$.eventId', optional: false }) }, anyPick), { nil: undefined }),
    time: fc.option(fc.oneof({ weight: 4, arbitrary: fc.constant({ json: '$.ts', optional: false }) }, jsonPick), { nil: undefined }),
    sequence: fc.option(fc.oneof({ weight: 4, arbitrary: fc.constant({ json: '$.seq', optional: false }) }, anyPick), { nil: undefined }),
    value: fc.option(anyPick, { nil: undefined }),
    extras: fc.oneof(fc.constant({}), fc.dictionary(fc.constantFrom('order', 'qty', 'workCenter', 'plant'), anyPick, { maxKeys: 3 })),
    dedupe: fc.constantFrom('auto', 'arrival'),
    retained: fc.constantFrom('state', 'ignore'),
  })
  .map((r) => ({
    filter: r.filter,
    qos: 1,
    format: 'json',
    ref: r.ref,
    fields: { ...r.extras, ...(r.id ? { id: r.id } : {}), ...(r.time ? { time: r.time } : {}), ...(r.sequence ? { sequence: r.sequence } : {}), ...(r.value ? { value: r.value } : {}) },
    dedupe: r.dedupe,
    retained: r.retained,
  }) as unknown as MqttSubscription);

/** a topic the filter matches, its wildcards filled from `fill` (a # takes 0-2 levels) */
function instantiate(filter: string, fill: string[]): string {
  let i = 0;
  const next = () => fill[i++ % fill.length];
  return filter
    .split('/')
    .flatMap((s) => (s.startsWith('+') ? [next()] : s.startsWith('#') ? fill.slice(0, i++ % 3) : [s]))
    .join('/');
}

const messageArb = fc.record({
  // mostly topics of one of the filters (-1: a random topic)
  from: fc.integer({ min: -1, max: 5 }),
  fill: fc.array(level, { minLength: 1, maxLength: 4 }),
  topic: topicArb,
  payload: payloadArb,
  retained: fc.boolean(),
  // arrival times close together, so that many messages share a millisecond
  dt: fc.nat({ max: 3 }),
});

void describe('the compiled mapping gives the same results as the reference mapping', () => {
  void it('topic matchers and ref templates', () => {
    fc.assert(
      fc.property(filterArb, fc.array(topicArb, { maxLength: 20 }), (filter, topics) => {
        const f = parseFilter(filter);
        const match = compileMatcher(f);
        for (const t of topics) assert.deepStrictEqual(match(t), matchTopic(f, t), `${filter} vs ${t}`);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), fc.dictionary(fc.constantFrom(...NAMES), fc.string({ maxLength: 5 })), (template, values) => {
        assert.equal(compileTemplate(template)(values), expandTemplate(template, values));
      }),
      { numRuns: 2000 },
    );
    // the matcher agrees on the edge cases the generator may miss
    for (const [filter, topic] of [['site/#rest', 'site'], ['site/#rest', 'site/'], ['#', '$SYS/x'], ['+/a', '/a'], ['a/+', 'a/'], ['a/+', 'a'], ['a', 'a/'], ['+', ''], ['#', '']]) {
      assert.deepStrictEqual(compileMatcher(parseFilter(filter))(topic), matchTopic(parseFilter(filter), topic), `${filter} vs ${topic}`);
    }
  });

  void it('signals, dead letters and ignores, message after message', () => {
    fc.assert(
      fc.property(
        fc.array(subArb, { minLength: 1, maxLength: 3 }),
        fc.oneof({ weight: 5, arbitrary: fc.constant(256 * 1024) }, fc.constant(64)),
        fc.array(messageArb, { minLength: 1, maxLength: 40 }),
        (subscriptions, maxPayloadBytes, messages) => {
          const config = { name: 'cells', subscriptions, maxPayloadBytes } as unknown as Pick<MqttConfig, 'name' | 'subscriptions' | 'maxPayloadBytes'>;
          const fast = new Mapper(config);
          const reference = new ReferenceMapper(config);
          let now = T;
          for (const m of messages) {
            now += m.dt;
            const topic = m.from < 0 ? m.topic : instantiate(subscriptions[m.from % subscriptions.length].filter, m.fill);
            assert.deepStrictEqual(fast.map(topic, m.payload, m.retained, now), reference.map(topic, m.payload, m.retained, now));
          }
        },
      ),
      { numRuns: 5000 },
    );
  });
});
