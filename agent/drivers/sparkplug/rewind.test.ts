import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { parseConfig, PlantBridgeError, type Signal } from '../../../contracts/index.ts';
import { countEvents, outboxHarness, runningDriver, startBroker, uniq, waitFor, type TestBroker } from '../mqtt/test-kit.ts';
import { encodePayload } from './codec.ts';
import { sparkplugConfigSchema, type SparkplugConfig } from './config.ts';
import { create } from './sparkplug-driver.ts';

/**
 * The host state (births, deaths) changes when a message arrives; the message is committed later. These
 * tests hold or fail that commit and check that what is acknowledged, stored and saved still agrees.
 */

let broker: TestBroker;
before(async () => {
  broker = await startBroker();
});
after(async () => {
  await broker?.stop();
});

const config = (group: string): SparkplugConfig =>
  parseConfig(sparkplugConfigSchema, { type: 'sparkplug', name: 'edge', url: broker.url, clientId: uniq('sp-host'), groups: [group], rebirthMinInterval: '100ms', reconnectMaxDelay: '1s' }) as SparkplugConfig;
const T = Date.UTC(2026, 2, 1, 8);
const birth = (good: number) => encodePayload({ timestamp: T, seq: 0, metrics: [{ name: 'bdSeq', type: 'UInt64', value: 0 }, { name: 'Good', alias: 1, type: 'Int64', value: good }] });
const death = () => encodePayload({ timestamp: T + 2000, metrics: [{ name: 'bdSeq', type: 'UInt64', value: 0 }] });

void it('a failed commit of data and a death: after the redelivery both are stored (the death is not "already offline")', async (t) => {
  const group = uniq('G');
  const h = outboxHarness('edge');
  const emit = h.ctx.emit;
  let failNext = false;
  h.ctx.emit = async (signals: Signal[]) => {
    if (failNext) {
      failNext = false;
      await new Promise((r) => setTimeout(r, 300)); // the death arrives while this commit runs
      throw new PlantBridgeError('OUTBOX_IO', 'test: the disk hiccupped');
    }
    await emit(signals);
  };
  const d = create(config(group), h.ctx);
  const pub = await runningDriver(t, d, h, broker.url);
  await pub.publishAsync(`spBv1.0/${group}/NBIRTH/E1`, birth(10), { qos: 1 });
  await waitFor(() => countEvents(h.outbox) === 1, 5000, 'birth committed');
  failNext = true;
  await pub.publishAsync(`spBv1.0/${group}/NDATA/E1`, encodePayload({ timestamp: T + 1000, seq: 1, metrics: [{ alias: 1, type: 'Int64', value: 11 }] }), { qos: 1 });
  await pub.publishAsync(`spBv1.0/${group}/NDEATH/E1`, death(), { qos: 1 });
  await waitFor(() => countEvents(h.outbox) === 3, 10_000, 'data and death stored after the redelivery');
  const rows = h.outbox.query<{ value: string | null; quality: string }>('SELECT value, quality FROM events ORDER BY seq');
  assert.deepEqual(rows.map((r) => [r.value, r.quality]), [['10', 'good'], ['11', 'good'], [null, 'bad']]);
  assert.equal(h.outbox.listDeadLetters().length, 0);
  assert.ok(d.stats().commitFailures >= 1 && d.stats().connects >= 2, 'the commit failed and the session reconnected');
  assert.deepEqual(d.nodes().map((n) => n.online), [false]);
});

void it('the state file holds only committed births and deaths: a message without metrics does not save a death still being committed', async (t) => {
  const group = uniq('G');
  const h = outboxHarness('edge');
  const emit = h.ctx.emit;
  let hold: Promise<void> | undefined = undefined;
  let release!: () => void;
  let held!: () => void;
  const isHeld = new Promise<void>((r) => (held = r));
  h.ctx.emit = async (signals: Signal[]) => {
    if (hold && signals.some((s) => s.quality === 'bad')) {
      held();
      await hold;
    }
    await emit(signals);
  };
  const d = create(config(group), h.ctx);
  t.after(async () => release?.());
  const pub = await runningDriver(t, d, h, broker.url);
  await pub.publishAsync(`spBv1.0/${group}/NBIRTH/E1`, birth(10), { qos: 1 });
  await waitFor(() => countEvents(h.outbox) === 1, 5000, 'birth committed');
  const stateFile = join(h.ctx.stateDir, 'sparkplug-edge.state.json');
  await waitFor(() => /"online":true/.test(readFileSync(stateFile, 'utf8')), 5000, 'birth saved');
  hold = new Promise<void>((r) => (release = r));
  await pub.publishAsync(`spBv1.0/${group}/NDEATH/E1`, death(), { qos: 1 });
  await isHeld;
  // a message without metrics (a command to the node) while the death's commit is held
  await pub.publishAsync(`spBv1.0/${group}/NCMD/E1`, encodePayload({ timestamp: T + 3000, metrics: [{ name: 'Node Control/Rebirth', type: 'Boolean', value: true }] }), { qos: 1 });
  await new Promise((r) => setTimeout(r, 300));
  assert.match(readFileSync(stateFile, 'utf8'), /"online":true/, 'the death is not saved before it is committed');
  release();
  await waitFor(() => /"online":false/.test(readFileSync(stateFile, 'utf8')), 5000, 'the death saved once committed');
  assert.equal(countEvents(h.outbox), 2);
});
