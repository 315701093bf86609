import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from '../../../contracts/index.ts';
import { signalSchema } from '../../../contracts/index.ts';
import { mqttConfigSchema } from './config.ts';
import { buildKey, deadLetterKey, keyKindOf, Mapper, parseTime } from './mapping.ts';
import { matchTopic, parseFilter } from './topic-filter.ts';
import { mqttConfig } from './test-kit.ts';

const base = { name: 'cells', url: 'mqtt://127.0.0.1:1883', clientId: 'agent-1' };
const T0 = Date.parse('2026-03-01T08:00:00.000Z');

void describe('topic filters with named levels', () => {
  void it('subscribes to the plain filter and names the levels', () => {
    const f = parseFilter('plant/+line/+machine/events');
    assert.equal(f.mqtt, 'plant/+/+/events');
    assert.deepEqual(matchTopic(f, 'plant/L7/M3/events'), { line: 'L7', machine: 'M3' });
    assert.equal(matchTopic(f, 'plant/L7/M3/other'), undefined);
    assert.equal(matchTopic(f, 'plant/L7/events'), undefined);
  });
  void it('supports # and named #rest, and keeps $ topics out of leading wildcards', () => {
    const f = parseFilter('site/#rest');
    assert.equal(f.mqtt, 'site/#');
    assert.deepEqual(matchTopic(f, 'site/a/b/c'), { rest: 'a/b/c' });
    assert.deepEqual(matchTopic(parseFilter('site/#'), 'site'), {});
    assert.equal(matchTopic(parseFilter('#'), '$SYS/broker/load'), undefined);
    assert.throws(() => parseFilter('a/#x/b'), /last level/);
    assert.throws(() => parseFilter('a/b+/c'), /whole level/);
  });
});

void describe('mqtt config', () => {
  void it('example.yaml is valid and every mapping has a dedupe key', () => {
    const cfg = parseConfig(mqttConfigSchema, parseYaml(readFileSync(join(import.meta.dirname, 'example.yaml'), 'utf8')));
    assert.deepEqual(cfg.subscriptions.map(keyKindOf), ['id', 'sequence', 'time-digest']);
  });
  void it('rejects unknown levels, missing dedupe fields and TLS on a plain URL with their paths', () => {
    const r = mqttConfigSchema.safeParse({
      type: 'mqtt',
      ...base,
      tls: { ca: '/x/ca.pem' },
      subscriptions: [{ filter: 'plant/+line/events', ref: '{machine}', fields: { order: { topic: 'cell' } } }],
    });
    assert.equal(r.success, false);
    const msgs = r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n');
    assert.match(msgs, /subscriptions\.0\.ref: \{machine\} is not a named level/);
    assert.match(msgs, /subscriptions\.0\.fields\.order\.topic: the filter has no level named "cell"/);
    assert.match(msgs, /subscriptions\.0\.fields: a dedupe key/);
    assert.match(msgs, /url: tls is configured but the url uses mqtt:\/\//);
  });
  void it('needs a secret reference for the password, never the secret itself', () => {
    const r = mqttConfigSchema.safeParse({ type: 'mqtt', ...base, username: 'u', password: 'hunter2', subscriptions: [{ filter: 'a', ref: 'a', fields: { time: { json: '$.t' } } }] });
    assert.equal(r.success, false);
  });
});

void describe('mapping a message to a signal', () => {
  const cfg = mqttConfig({
    ...base,
    subscriptions: [
      {
        filter: 'plant/+line/+machine/events',
        ref: '{line}/{machine}/events',
        fields: {
          id: { json: '$.eventId' },
          time: { json: '$.ts' },
          order: { json: '$.order.number' },
          quantity: { json: '$.qty' },
          note: { json: '$.note', optional: true },
          workCenter: { topic: 'machine' },
          plant: { const: 'P1' },
        },
      },
      { filter: 'plant/+line/counter', ref: '{line}/count', fields: { sequence: { json: '$.seq' }, value: { json: '$.count' } } },
      { filter: 'plant/+line/temp', ref: '{line}/temp', fields: { time: { json: '$.t' }, value: { json: '$.v' } } },
    ],
  });
  const m = new Mapper(cfg);

  void it('picks JSON fields, topic levels and constants; keys by the event id', () => {
    const r = m.map('plant/L7/M3/events', Buffer.from(JSON.stringify({ eventId: 'E-1', ts: '2026-03-01T07:59:00Z', order: { number: '4711' }, qty: 5 })), false, T0);
    assert.equal(r.kind, 'signal');
    if (r.kind !== 'signal') return;
    assert.deepEqual(signalSchema.parse(r.signal), r.signal);
    assert.equal(r.signal.ref, 'L7/M3/events');
    assert.deepEqual(r.signal.value, { order: '4711', quantity: 5, workCenter: 'M3', plant: 'P1' });
    assert.equal(r.signal.sourceTime, '2026-03-01T07:59:00.000Z');
    assert.equal(r.signal.sourceId, 'cells/L7/M3/events@id=E-1');
    assert.equal(r.signal.baseline, undefined);
  });
  void it('keys by topic + zero-padded sequence when there is no id, and by time + digest otherwise', () => {
    const a = m.map('plant/L7/counter', Buffer.from('{"seq":42,"count":1000}'), false, T0);
    assert.equal(a.kind === 'signal' && a.signal.sourceId, 'cells/plant/L7/counter@seq=000000000000042');
    assert.equal(a.kind === 'signal' && a.signal.value, 1000);
    const b = m.map('plant/L7/temp', Buffer.from('{"t":1772352000000,"v":21.5}'), false, T0);
    assert.match(b.kind === 'signal' ? b.signal.sourceId : '', /^cells\/plant\/L7\/temp@t=2026-03-01T08:00:00\.000Z#[0-9a-f]{16}$/);
    // the same message later (a redelivery) gives the same key
    const c = m.map('plant/L7/temp', Buffer.from('{"t":1772352000000,"v":21.5}'), false, T0 + 60_000);
    assert.equal(b.kind === 'signal' && c.kind === 'signal' && b.signal.sourceId === c.signal.sourceId, true);
    assert.equal(keyKindOf(cfg.subscriptions[2]), 'time-digest');
  });
  void it('marks retained messages as baseline state', () => {
    const r = m.map('plant/L7/counter', Buffer.from('{"seq":1,"count":5}'), true, T0);
    assert.equal(r.kind === 'signal' && r.signal.baseline, true);
  });
  void it('dead-letters undecodable and mismatching payloads with a code', () => {
    const cases: Array<[string, Buffer, string, RegExp]> = [
      ['plant/L7/counter', Buffer.from('not json'), 'PAYLOAD_INVALID', /not JSON/],
      ['plant/L7/counter', Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), 'PAYLOAD_INVALID', /UTF-8/],
      ['plant/L7/counter', Buffer.alloc(300 * 1024, 0x20), 'PAYLOAD_INVALID', /exceeds maxPayloadBytes/],
      ['plant/L7/counter', Buffer.from('{"count":1}'), 'SCHEMA_INVALID', /sequence: \$\.seq is missing/],
      ['plant/L7/counter', Buffer.from('{"seq":-1,"count":1}'), 'SCHEMA_INVALID', /non-negative integer/],
      ['plant/L7/counter', Buffer.from('{"seq":1,"count":[1]}'), 'SCHEMA_INVALID', /value: expected/],
      ['plant/L7/temp', Buffer.from('{"t":"yesterday","v":1}'), 'SCHEMA_INVALID', /time: expected/],
      ['plant/L7/M1/events', Buffer.from('{"eventId":{"a":1},"ts":1772352000000,"order":{"number":"1"},"qty":1}'), 'SCHEMA_INVALID', /id: expected/],
    ];
    for (const [topic, payload, code, reason] of cases) {
      const r = m.map(topic, payload, false, T0);
      assert.equal(r.kind, 'dead', `${topic} ${payload.subarray(0, 20).toString()}`);
      if (r.kind === 'dead') {
        assert.equal(r.code, code);
        assert.match(r.reason, reason);
      }
    }
  });
  void it('dead-letters a number beyond the range of a double (1e400 parses to Infinity, stored as null) and names the field', () => {
    const cases: Array<[string, string, RegExp]> = [
      ['plant/L7/temp', '{"t":1772352000000,"v":1e400}', /value: \$\.v is a number beyond the range of a double \(it parses to Infinity\)/],
      ['plant/L7/temp', '{"t":1772352000000,"v":{"a":[1,-1e400]}}', /value: \$\.v\.a\[1\] is a number beyond the range of a double \(it parses to -Infinity\)/],
      ['plant/L7/M3/events', '{"eventId":"E-1","ts":"2026-03-01T07:59:00Z","order":{"number":"4711"},"qty":1E+999}', /quantity: \$\.qty is a number beyond/],
      ['plant/L7/M3/events', '{"eventId":1e400,"ts":"2026-03-01T07:59:00Z","order":{"number":"4711"},"qty":1}', /id: expected a string of 1-200 characters or a number, got number Infinity/],
    ];
    for (const [topic, payload, reason] of cases) {
      const r = m.map(topic, Buffer.from(payload), false, T0);
      assert.equal(r.kind, 'dead', payload);
      if (r.kind === 'dead') {
        assert.equal(r.code, 'SCHEMA_INVALID');
        assert.match(r.reason, reason);
      }
    }
    // a payload that is the value: the whole document is looked at
    const whole = new Mapper(mqttConfig({ ...base, subscriptions: [{ filter: 'raw', ref: 'raw', fields: { time: { json: '$.t' } } }] }));
    const r = whole.map('raw', Buffer.from('{"t":1772352000000,"x":{"y":1e999}}'), false, T0);
    assert.equal(r.kind === 'dead' && r.reason, 'topic raw: value: $.x.y is a number beyond the range of a double (it parses to Infinity)');
    // a part of the payload no field uses is not stored: it is not looked at
    const unused = m.map('plant/L7/temp', Buffer.from('{"t":1772352000000,"v":1,"other":1e400}'), false, T0);
    assert.equal(unused.kind === 'signal' && unused.signal.value, 1);
  });
  void it('dead-letters a numeric id beyond 2^53 (it lost digits in parsing: two events would share a key), and keeps ids up to 2^53 - 1', () => {
    const ev = (id: string) => m.map('plant/L7/M3/events', Buffer.from(`{"eventId":${id},"ts":"2026-03-01T07:59:00Z","order":{"number":"4711"},"qty":1}`), false, T0);
    for (const id of ['9007199254740993', '9007199254740992', '-9007199254740993', '1e21']) {
      const r = ev(id);
      assert.equal(r.kind, 'dead', id);
      assert.match(r.kind === 'dead' ? r.reason : '', /id: \$\.eventId holds the number .*, beyond 2\^53: it was rounded when parsed .*send it as a string/);
    }
    const ok = [ev('9007199254740991'), ev('9007199254740990'), ev('42.5')];
    assert.deepEqual(ok.map((r) => r.kind), ['signal', 'signal', 'signal']);
    const keys = ok.map((r) => (r.kind === 'signal' ? r.signal.sourceId : ''));
    assert.equal(new Set(keys).size, 3);
    assert.match(keys[0], /@id=9007199254740991$/);
  });
  void it('dead-letters strings that are not Unicode (an unpaired surrogate escape): two such ids were one key', () => {
    const ids = ['\\ud800', '\\udbff', 'x\\udc00'];
    const results = ids.map((id) => m.map('plant/L7/M3/events', Buffer.from(`{"eventId":"${id}","ts":"2026-03-01T07:59:00Z","order":{"number":"4711"},"qty":1}`), false, T0));
    for (const r of results) assert.equal(r.kind, 'dead');
    assert.match(results[0].kind === 'dead' ? results[0].reason : '', /id: \$\.eventId is a string with an unpaired surrogate \(\\ud800 at character 0\): not Unicode/);
    assert.match(results[2].kind === 'dead' ? results[2].reason : '', /\\udc00 at character 1/);
    const v = m.map('plant/L7/temp', Buffer.from('{"t":1772352000000,"v":{"name":"a\\ud800b"}}'), false, T0);
    assert.match(v.kind === 'dead' ? v.reason : '', /value: \$\.v\.name is a string with an unpaired surrogate/);
    const key = m.map('plant/L7/temp', Buffer.from('{"t":1772352000000,"v":{"\\udfff":1}}'), false, T0);
    assert.match(key.kind === 'dead' ? key.reason : '', /value: \$\.v has a key with an unpaired surrogate \(\\udfff at character 0\)/);
    // a pair (an escaped emoji) is Unicode: kept
    const pair = m.map('plant/L7/M3/events', Buffer.from('{"eventId":"\\ud83d\\ude00","ts":"2026-03-01T07:59:00Z","order":{"number":"4711"},"qty":1}'), false, T0);
    assert.equal(pair.kind === 'signal' && pair.signal.sourceId, 'cells/L7/M3/events@id=\u{1F600}');
  });
  void it('ignores topics no mapping claims', () => {
    assert.equal(m.map('other/topic', Buffer.from('{}'), false, T0).kind, 'ignore');
  });
  void it('never throws and always yields a valid signal or a reason, whatever the payload', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.constantFrom('plant/L7/counter', 'plant/L7/temp', 'plant/A/B/events'), (bytes, topic) => {
        const r = m.map(topic, Buffer.from(bytes), false, T0);
        if (r.kind === 'signal') signalSchema.parse(r.signal);
        else assert.ok(r.reason.length > 0);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.jsonValue(), (doc) => {
        const r = m.map('plant/L7/temp', Buffer.from(JSON.stringify(doc) ?? 'null'), false, T0);
        if (r.kind === 'signal') signalSchema.parse(r.signal);
      }),
      { numRuns: 500 },
    );
  });
});

void describe('dedupe keys', () => {
  void it('stay within 300 characters and keep the topic prefix for locality', () => {
    const long = `plant/${'x'.repeat(400)}`;
    const k = buildKey('cells', long, '@seq=000000000000001');
    assert.ok(k.length <= 300);
    assert.ok(k.startsWith('cells/plant/xxxx'));
    assert.ok(k.endsWith('@seq=000000000000001'));
    assert.notEqual(buildKey('cells', `${long}a`, '@seq=1'), buildKey('cells', `${long}b`, '@seq=1'));
  });
  void it('of a dead letter: topic and the digest of the whole payload, the same for a redelivery, within 300 characters', () => {
    const bytes = Buffer.from('not json');
    assert.equal(deadLetterKey('cells', 'plant/L1/ev', bytes), 'cells/plant/L1/ev@dl#7ccfa1fbf3940e6f');
    assert.equal(deadLetterKey('cells', 'plant/L1/ev', Buffer.from('not json')), deadLetterKey('cells', 'plant/L1/ev', bytes));
    assert.notEqual(deadLetterKey('cells', 'plant/L2/ev', bytes), deadLetterKey('cells', 'plant/L1/ev', bytes));
    // bytes past the 64 KiB kept with the dead letter still count
    const big = Buffer.alloc(70 * 1024, 0x20);
    const big2 = Buffer.from(big);
    big2[big2.length - 1] = 0x21;
    assert.notEqual(deadLetterKey('cells', 'plant/L1/ev', big), deadLetterKey('cells', 'plant/L1/ev', big2));
    const k = deadLetterKey('cells', `plant/${'x'.repeat(400)}`, bytes);
    assert.ok(k.length <= 300 && k.startsWith('cells/plant/xxxx') && k.endsWith('@dl#7ccfa1fbf3940e6f'));
  });
  void it('parse epoch seconds, milliseconds and ISO times', () => {
    assert.equal(parseTime(1772352000), 1772352000000);
    assert.equal(parseTime(1772352000123), 1772352000123);
    assert.equal(parseTime('2026-03-01T08:00:00+01:00'), Date.parse('2026-03-01T07:00:00Z'));
    assert.equal(parseTime('08:00'), undefined);
  });
});
