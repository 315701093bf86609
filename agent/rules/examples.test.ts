import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { MaterialConsumption, ProductionConfirmation, Signal, Transaction } from '../../contracts/index.ts';
import { parseAgentConfig } from '../config/load.ts';
import { Mapper } from '../drivers/mqtt/mapping.ts';
import type { StateAccess } from '../outbox/outbox.ts';
import { RuleEngine, buildRules } from './engine.ts';

/** The MQTT example end to end in memory: real payloads through the driver's mapping and the rules. */

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const file = join(root, 'config', 'examples', 'mqtt-event-cell.yaml');

void test('mqtt-event-cell example: cycle events confirm per order, material events consume, order finished is final', () => {
  const { config } = parseAgentConfig(readFileSync(file, 'utf8'), file, { env: { PLANTBRIDGE_AGENT_TOKEN: 't', CELL3_MQTT_PASSWORD: 'p' }, readFile: () => '' });
  const driver = config.drivers[0];
  assert.equal(driver.type, 'mqtt');
  const mapper = new Mapper(driver as never);
  const t0 = Date.parse('2026-11-27T08:00:00Z');
  const store = new Map<string, unknown>();
  const state: StateAccess = { get: (id) => store.get(id), set: (id, s) => void store.set(id, JSON.parse(JSON.stringify(s))) };
  const engine = new RuleEngine(buildRules(config.rules, config.agent.mode), { plant: config.agent.plant, agentId: config.agent.id, timeZone: config.agent.timeZone, mode: 'live', now: () => t0 + 3_600_000 });
  const seen = new Set<string>();
  const txs: Transaction[] = [];
  const publish = (topic: string, payload: Record<string, unknown>) => {
    const r = mapper.map(topic, Buffer.from(JSON.stringify(payload)), false, t0);
    assert.equal(r.kind, 'signal', JSON.stringify(r));
    const sig = (r as { signal: Signal }).signal;
    if (seen.has(sig.sourceId)) return; // the outbox's dedupe
    seen.add(sig.sourceId);
    const d = engine.derive(sig, state);
    assert.deepEqual(d.quarantined, []);
    txs.push(...d.items.map((i) => i.tx));
  };
  const at = (s: number) => new Date(t0 + s * 1000).toISOString();
  for (let i = 0; i < 60; i++) publish('plant1010/cell3/robot1/cycle', { eventId: `c-${i}`, ts: at(i), order: '1000123', op: '0020', good: i % 10 === 9 ? 0 : 1, scrap: i % 10 === 9 ? 1 : 0 });
  publish('plant1010/cell3/robot1/cycle', { eventId: 'c-5', ts: at(5), order: '1000123', op: '0020', good: 1, scrap: 0 }); // QoS 1 redelivery
  publish('plant1010/cell3/robot1/material', { eventId: 'm-1', ts: at(30), order: '1000123', material: 'RM-SCREW-M4', batch: 'B2611', qty: 250, uom: 'EA' });
  publish('plant1010/cell3/robot1/order-finished', { eventId: 'f-1', ts: at(61), order: '1000123', op: '0020' });
  for (let i = 0; i < 5; i++) publish('plant1010/cell3/robot1/cycle', { eventId: `d-${i}`, ts: at(70 + i), order: '1000124', op: '0020', good: 1, scrap: 0 });

  const pcs = txs.filter((t) => t.schema.includes('production-confirmation')) as ProductionConfirmation[];
  assert.deepEqual(
    pcs.map((p) => [p.data.order, p.data.operation, p.data.yield.qty, p.data.scrap?.qty, p.data.final, p.idempotencyKey]),
    [
      ['1000123', '0020', 45, 5, 'none', '1010:WC-31:1000123:0020:cell3-mqtt/robot1/cycle:0-50'],
      ['1000123', '0020', 9, 1, 'final', '1010:WC-31:1000123:0020:cell3-mqtt/robot1/cycle:50-60'],
    ],
  );
  const [mc] = txs.filter((t) => t.schema.includes('material-consumption')) as MaterialConsumption[];
  assert.deepEqual([mc.idempotencyKey, mc.data.material, mc.data.batch, mc.data.quantity, mc.data.storageLocation], ['1010:cell3-mqtt:m-1', 'RM-SCREW-M4', 'B2611', { qty: 250, uom: 'EA' }, '0002']);
  // the next order's parts wait in their own window
  const st = store.get('cell3-yield') as { windows: Record<string, { good: number }> };
  assert.deepEqual(Object.entries(st.windows).map(([k, w]) => [k, w.good]), [['1000124/0020', 5]]);
});
