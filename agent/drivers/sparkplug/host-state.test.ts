import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from '../../../contracts/index.ts';
import { sparkplugConfigSchema } from './config.ts';
import { signalSchema } from '../../../contracts/index.ts';
import { decodePayload, encodePayload } from './codec.ts';
import { SparkplugHost, type HostResult } from './host-state.ts';

const T = Date.UTC(2026, 2, 1, 8);

function host(onSeqGap: 'rebirth' | 'warn' = 'rebirth') {
  const warnings: string[] = [];
  const h = new SparkplugHost({ source: 'edge', maxPayloadBytes: 1 << 20, onSeqGap, rebirthOnUnknown: true, warn: (m) => warnings.push(m) });
  return { h, warnings };
}

const msg = (p: unknown) => encodePayload(p);
const signals = (r: HostResult) => (r.kind === 'signals' ? r.signals : []);

function birth(h: SparkplugHost, ts = T, bdSeq = 3) {
  return h.handle(
    'spBv1.0/G/NBIRTH/E',
    msg({ timestamp: ts, seq: 0, metrics: [{ name: 'bdSeq', type: 'UInt64', value: bdSeq }, { name: 'Good', alias: 1, type: 'Int64', value: 7 }, { name: 'Node Control/Rebirth', type: 'Boolean', value: false }] }),
    ts,
  );
}

void describe('sparkplug values', () => {
  void it('decodes signed, 64-bit, date and byte values', () => {
    const p = decodePayload(
      msg({
        timestamp: T,
        seq: 1,
        metrics: [
          { name: 'i8', type: 'Int8', value: -5 },
          { name: 'i16', type: 'Int16', value: -300 },
          { name: 'i32', type: 'Int32', value: -70000 },
          { name: 'i64', type: 'Int64', value: -9 },
          { name: 'u64', type: 'UInt64', value: '18446744073709551615' },
          { name: 'dt', type: 'DateTime', value: T },
          { name: 'raw', type: 'Bytes', value: new Uint8Array([1, 2, 3]) },
          { name: 'nul', type: 'Int32', value: null, isNull: true },
        ],
      }),
    );
    assert.deepEqual(
      Object.fromEntries(p.metrics.map((m) => [m.name, m.value])),
      { i8: -5, i16: -300, i32: -70000, i64: -9, u64: '18446744073709551615', dt: new Date(T).toISOString(), raw: 'AQID', nul: null },
    );
    assert.equal(p.timestamp, T);
    assert.equal(p.seq, 1);
  });
  void it('decompresses SPBV1.0_COMPRESSED payloads', () => {
    const inner = msg({ timestamp: T, seq: 2, metrics: [{ name: 'x', type: 'Double', value: 1.5 }] });
    const outer = msg({ uuid: 'SPBV1.0_COMPRESSED', body: deflateSync(inner), metrics: [{ name: 'algorithm', type: 'String', value: 'DEFLATE' }] });
    assert.deepEqual(decodePayload(outer).metrics.map((m) => m.value), [1.5]);
  });
});

void describe('sparkplug hostile input', () => {
  void it('a compressed payload that inflates past 16 x maxPayloadBytes is dead-lettered, not inflated', () => {
    const h = new SparkplugHost({ source: 'edge', maxPayloadBytes: 64 * 1024, onSeqGap: 'warn', rebirthOnUnknown: false, warn: () => {} });
    // 8 MiB of zeros: ~8 KB compressed, under maxPayloadBytes, but 128 x it once inflated
    const bomb = msg({ uuid: 'SPBV1.0_COMPRESSED', body: deflateSync(Buffer.alloc(8 << 20)), metrics: [{ name: 'algorithm', type: 'String', value: 'DEFLATE' }] });
    assert.ok(bomb.length < 64 * 1024);
    const r = h.handle('spBv1.0/G/NBIRTH/E', bomb, T);
    assert.equal(r.kind, 'dead');
    assert.match((r as { reason: string }).reason, /inflates to more than 1048576 bytes/);
  });

  void it('group, edge and device ids of ~280 characters still give one key per message and metric', () => {
    const { h } = host();
    const long = 'd'.repeat(280);
    signals(birth(h));
    const dbirth = h.handle(`spBv1.0/G/DBIRTH/E/${long}`, msg({ timestamp: T + 1, seq: 1, metrics: [{ name: 'Temp', alias: 5, type: 'Double', value: 1 }, { name: 'Press', alias: 6, type: 'Double', value: 2 }] }), T + 1);
    const data = (ts: number, seq: number) => signals(h.handle(`spBv1.0/G/DDATA/E/${long}`, msg({ timestamp: ts, seq, metrics: [{ alias: 5, type: 'Double', value: seq }] }), ts));
    const keys = [...signals(dbirth), ...data(T + 2, 2), ...data(T + 3, 3)].map((x) => x.sourceId);
    assert.equal(keys.length, 4);
    assert.equal(new Set(keys).size, 4, 'distinct keys');
    for (const k of keys) {
      assert.ok(k.length <= 300, `key of ${k.length} characters`);
      assert.ok(k.startsWith(`G/E/${long.slice(0, 100)}`), 'the head stays readable');
    }
    assert.deepEqual(data(T + 2, 2).map((x) => x.sourceId), [keys[2]], 'the same message again has the same key');
  });
});

void describe('sparkplug host state', () => {
  void it('births give baseline signals with keys ordered by node, bdSeq, time and seq', () => {
    const { h } = host();
    const s = signals(birth(h));
    assert.equal(s.length, 1, 'bdSeq and Node Control metrics are not signals');
    signalSchema.parse(s[0]);
    assert.equal(s[0].baseline, true);
    assert.equal(s[0].sourceId, `G/E/-/b3/${T}/000/Good`);
    // the same message again (redelivery) gives the same key; a rebirth a new one
    assert.equal(signals(birth(h))[0].sourceId, s[0].sourceId);
    assert.notEqual(signals(birth(h, T + 1))[0].sourceId, s[0].sourceId);
  });
  void it('resolves aliases, wraps seq at 255 without a gap, and asks for a Rebirth on a real gap', () => {
    const { h, warnings } = host();
    birth(h);
    let seq = 0;
    for (let i = 0; i < 300; i++) {
      seq = (seq + 1) % 256;
      const r = h.handle('spBv1.0/G/NDATA/E', msg({ timestamp: T + i + 1, seq, metrics: [{ alias: 1, type: 'Int64', value: i }] }), T);
      assert.equal(r.kind === 'signals' && r.rebirth, undefined);
      assert.equal(signals(r)[0].ref, 'G/E/Good');
    }
    const gap = h.handle('spBv1.0/G/NDATA/E', msg({ timestamp: T + 999, seq: (seq + 3) % 256, metrics: [{ alias: 1, type: 'Int64', value: 1 }] }), T);
    assert.equal(gap.kind === 'signals' && gap.rebirth?.edge, 'E');
    assert.equal(signals(gap).length, 1, 'the message after a gap is still used');
    assert.equal(h.counters.seqGaps, 1);
    assert.equal(warnings.length, 1);
    const warnOnly = host('warn');
    birth(warnOnly.h);
    const r = warnOnly.h.handle('spBv1.0/G/NDATA/E', msg({ timestamp: T + 5, seq: 9, metrics: [] }), T);
    assert.equal(r.kind === 'signals' && r.rebirth, undefined);
    assert.equal(warnOnly.h.counters.seqGaps, 1);
  });
  void it('asks for a Rebirth for data before birth and for unknown aliases', () => {
    const { h } = host();
    const before = h.handle('spBv1.0/G/NDATA/E', msg({ timestamp: T, seq: 1, metrics: [{ alias: 1, type: 'Int64', value: 1 }] }), T);
    assert.equal(before.kind, 'ignore');
    assert.equal(before.kind === 'ignore' && before.rebirth?.edge, 'E');
    birth(h);
    const unknown = h.handle('spBv1.0/G/NDATA/E', msg({ timestamp: T + 1, seq: 1, metrics: [{ alias: 42, type: 'Int64', value: 1 }] }), T);
    assert.equal(unknown.kind === 'signals' && unknown.rebirth !== undefined, true);
    assert.equal(h.counters.unknownAlias, 1);
    const ddata = h.handle('spBv1.0/G/DDATA/E/D1', msg({ timestamp: T + 2, seq: 2, metrics: [{ alias: 1, type: 'Int64', value: 1 }] }), T);
    assert.equal(ddata.kind, 'ignore');
  });
  void it('marks metrics bad on the matching NDEATH only; a stale death is ignored', () => {
    const { h } = host();
    birth(h);
    h.handle('spBv1.0/G/DBIRTH/E/D1', msg({ timestamp: T + 1, seq: 1, metrics: [{ name: 'Temp', alias: 5, type: 'Float', value: 20 }] }), T);
    const stale = h.handle('spBv1.0/G/NDEATH/E', msg({ timestamp: T + 2, metrics: [{ name: 'bdSeq', type: 'UInt64', value: 2 }] }), T);
    assert.equal(stale.kind, 'ignore');
    assert.equal(h.counters.staleDeaths, 1);
    const death = signals(h.handle('spBv1.0/G/NDEATH/E', msg({ timestamp: T + 3, metrics: [{ name: 'bdSeq', type: 'UInt64', value: 3 }] }), T));
    assert.deepEqual(death.map((s) => [s.ref, s.quality, s.value]), [
      ['G/E/Good', 'bad', null],
      ['G/E/D1/Temp', 'bad', null],
    ]);
    death.forEach((s) => signalSchema.parse(s));
    assert.deepEqual(h.nodeStates(), [{ node: 'G/E', online: false, bdSeq: '3', devices: 1 }]);
  });
  void it('dead-letters payloads that do not decode and ignores foreign topics', () => {
    const { h } = host();
    assert.equal(h.handle('spBv1.0/G/NDATA/E', Buffer.from('{"json":true}'), T).kind, 'dead');
    assert.equal(h.handle('spBv1.0/STATE/host', Buffer.from('{"online":true}'), T).kind, 'ignore');
    assert.equal(h.handle('spBv1.0/G/NCMD/E', msg({ metrics: [] }), T).kind, 'ignore');
    assert.equal(h.handle('spBv1.0/G/DDATA/E', msg({ metrics: [] }), T).kind, 'ignore');
  });
});

void describe('sparkplug config', () => {
  void it('example.yaml is valid', () => {
    const cfg = parseConfig(sparkplugConfigSchema, parseYaml(readFileSync(join(import.meta.dirname, 'example.yaml'), 'utf8')));
    assert.deepEqual(cfg.groups, ['Line7']);
    assert.equal(cfg.primaryHost?.hostId, 'plantbridge-p1010');
  });
});

void describe('sparkplug births across an agent restart', () => {
  void it('a restored host resolves queued data by alias with the same keys, and asks once for a Rebirth to confirm', () => {
    const { h: before } = host();
    birth(before);
    before.handle('spBv1.0/G/DBIRTH/E/D1', msg({ timestamp: T + 1, seq: 1, metrics: [{ name: 'Temp', alias: 10, type: 'Double', value: 20 }] }), T + 1);
    const data = (h: SparkplugHost, seq: number) => h.handle('spBv1.0/G/DDATA/E/D1', msg({ timestamp: T + 10 + seq, seq, metrics: [{ alias: 10, type: 'Double', value: seq }] }), T + 100);
    const first = signals(data(before, 2));
    assert.ok(before.version > before.savedVersion, 'births mark the state for saving');

    // the saved snapshot goes through JSON, like the state file
    const { h: after, warnings } = host();
    after.restore(JSON.parse(JSON.stringify(before.snapshot())));
    assert.deepEqual(after.nodeStates(), [{ node: 'G/E', online: true, bdSeq: '3', devices: 1 }]);
    const again = data(after, 2);
    assert.equal(again.kind, 'signals');
    assert.deepEqual(signals(again).map((s) => [s.ref, s.sourceId, s.value]), first.map((s) => [s.ref, s.sourceId, s.value]), 'a redelivered message gets the key it had');
    assert.match((again as { rebirth?: { why: string } }).rebirth?.why ?? '', /since the agent restarted/);
    const next = data(after, 3);
    assert.equal((next as { rebirth?: unknown }).rebirth, undefined, 'only the first message asks');
    assert.equal(signals(next)[0].ref, 'G/E/D1/Temp');
    assert.equal(after.counters.seqGaps, 0, 'seq is not persisted: no gap is reported across the restart');
    assert.deepEqual(warnings, []);
  });

  void it('a death before the restart stays a death; unreadable state is refused', () => {
    const { h: before } = host();
    birth(before);
    before.handle('spBv1.0/G/NDEATH/E', msg({ timestamp: T + 5, metrics: [{ name: 'bdSeq', type: 'UInt64', value: 3 }] }), T + 5);
    const { h: after } = host();
    after.restore(JSON.parse(JSON.stringify(before.snapshot())));
    assert.equal(after.nodeStates()[0].online, false);
    const r = after.handle('spBv1.0/G/NDATA/E', msg({ timestamp: T + 6, seq: 1, metrics: [{ alias: 1, type: 'Int64', value: 8 }] }), T + 6);
    assert.equal(r.kind, 'ignore');
    assert.throws(() => after.restore({ v: 2 } as never), /not a Sparkplug host state/);
  });

  void it('a malformed saved state is refused whole: nothing half-restored, the host keeps what it had', () => {
    const { h: before } = host();
    birth(before);
    const good = JSON.parse(JSON.stringify(before.snapshot()));
    const { h: target } = host();
    target.restore(JSON.parse(JSON.stringify(good)));
    const kept = JSON.stringify(target.snapshot());
    const broken = [
      { ...good, nodes: [...good.nodes, { node: 'E2', devices: 5 }] },
      { ...good, nodes: [{ ...good.nodes[0], metrics: [[7, 'Int64']] }] },
      { ...good, nodes: [{ ...good.nodes[0], metrics: [['Temp', 'Double', 'one']] }] },
      { ...good, nodes: [{ ...good.nodes[0], devices: [{ device: 'D1', birthTs: 'yesterday', online: true, metrics: [] }] }] },
      { ...good, nodes: [null] },
      { v: 1, nodes: 'E' },
      null,
    ];
    for (const b of broken) {
      assert.throws(() => target.restore(b as never), /not a Sparkplug host state/, JSON.stringify(b));
      assert.equal(JSON.stringify(target.snapshot()), kept, 'the earlier state is untouched');
    }
  });
});
