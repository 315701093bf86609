import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { agentConfigSchema } from '../config/schema.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const node = join(root, 'node_modules', '.bin', 'node');
const run = promisify(execFile);

const SECRETS = { PLANTBRIDGE_AGENT_TOKEN: 'test-token', LINE7_OPCUA_PASSWORD: 'pw', CELL3_MQTT_PASSWORD: 'pw', PRESS_MQTT_PASSWORD: 'pw' };

for (const file of ['opcua-counter-line.yaml', 'mqtt-event-cell.yaml', 'sparkplug-press.yaml']) {
  void test(`check-config passes on config/examples/${file}`, async () => {
    const { stdout } = await run(node, [join(root, 'agent', 'cli.ts'), 'check-config', '--config', join(root, 'config', 'examples', file)], {
      env: { ...process.env, ...SECRETS },
      cwd: root,
    });
    assert.match(stdout, /: valid \(/);
  });
}

const base = {
  agent: { id: 'edge-1', plant: '1010' },
  hub: { url: 'http://127.0.0.1:9', token: '${T}' },
  drivers: [
    { type: 'opcua', name: 'plc', endpoint: 'opc.tcp://plc:4840', nodes: [{ ref: 'good', nodeId: 'ns=1;s=G' }, { ref: 'order', nodeId: 'ns=1;s=O' }] },
    { type: 'mqtt', name: 'mq', url: 'mqtt://broker:1883', clientId: 'c', subscriptions: [{ filter: 'p/+machine/+event', ref: '{machine}/{event}', fields: { id: { json: '$.id' } } }] },
    { type: 'sparkplug', name: 'spb', url: 'mqtt://broker:1883', clientId: 'd', groups: ['Plant1'] },
  ],
};
const count = (extra: Record<string, unknown> = {}) => ({ type: 'count-production', id: 'cp', workCenter: 'WC-1', counter: { source: 'plc', ref: 'good' }, activeOrder: { source: 'plc', ref: 'order' }, ...extra });
const consume = (extra: Record<string, unknown> = {}) => ({
  type: 'map-event',
  id: 'me',
  workCenter: 'WC-1',
  inputs: [{ source: 'mq', ref: 'm1/material' }],
  emit: 'material-consumption',
  fields: { order: { json: '$.order' }, material: { json: '$.material' }, quantity: { json: '$.qty' } },
  ...extra,
});
const issues = (rules: unknown[]) => {
  const r = agentConfigSchema.safeParse({ ...base, rules });
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
};

void test('rule references: unknown driver, unknown OPC UA ref, an MQTT ref no subscription produces', () => {
  assert.deepEqual(issues([count(), consume()]), []);
  const got = issues([count({ counter: { source: 'nope', ref: 'good' } }), count({ id: 'b', workCenter: 'WC-2', counter: { source: 'plc', ref: 'bad' } }), consume({ inputs: [{ source: 'mq', ref: 'm1/sub/material' }] })]);
  assert.equal(got.length, 3);
  assert.match(got[0], /rules\.0\.counter\.source: no driver named "nope"/);
  assert.match(got[1], /rules\.1\.counter\.ref: driver "plc" has no node with ref "bad"/);
  assert.match(got[2], /rules\.2\.inputs\.0\.ref: no subscription/);
  const spb = issues([count({ counter: { source: 'spb', ref: 'Plant2/Press/Good' } }), count({ id: 'ok', workCenter: 'WC-9', counter: { source: 'spb', ref: 'Plant1/Press/Good' } })]);
  assert.equal(spb.length, 1);
  assert.match(spb[0], /rules\.0\.counter\.ref: driver "spb" reads groups Plant1/);
});

void test('consumption is posted once: per unit or backflush next to consumption events is an error', () => {
  for (const mode of ['per-unit', 'backflush']) {
    const consumption = mode === 'per-unit' ? { mode, components: [{ material: 'X', perUnit: 1, uom: 'KG' }] } : { mode };
    const got = issues([count({ consumption }), consume()]);
    assert.equal(got.length, 1, got.join('\n'));
    assert.match(got[0], /rules\.0\.consumption\.mode: .*Use mode: events/);
  }
  assert.deepEqual(issues([count({ consumption: { mode: 'events' } }), consume()]), []);
});

void test('keys cannot collide: two rules on one counter, two event rules on one event without distinct suffixes', () => {
  assert.match(issues([count(), count({ id: 'cp2' })]).join('\n'), /already counts plc\/good for WC-1/);
  assert.match(issues([consume(), consume({ id: 'me2', workCenter: 'WC-2' })]).join('\n'), /keySuffix/);
  assert.deepEqual(issues([consume(), consume({ id: 'me2', workCenter: 'WC-2', keySuffix: 'copy' })]), []);
  assert.match(issues([count(), count()]).join('\n'), /duplicate rule id "cp"/);
});

void test('two event rules reading one source with ids from the payload need different keySuffix values', () => {
  const withIds = (extra: Record<string, unknown>) => consume({ eventId: { json: '$.eventId' }, ...extra });
  const got = issues([withIds({}), withIds({ id: 'me2', workCenter: 'WC-2', inputs: [{ source: 'mq', ref: 'm2/material' }] })]);
  assert.equal(got.length, 1, got.join('\n'));
  assert.match(got[0], /rules\.1\.keySuffix: rule "me" also maps events of mq with ids picked from the payload/);
  assert.deepEqual(issues([withIds({}), withIds({ id: 'me2', workCenter: 'WC-2', inputs: [{ source: 'mq', ref: 'm2/material' }], keySuffix: 'm2' })]), []);
  // without payload ids the keys come from the signals' own ids, which differ per input
  assert.deepEqual(issues([consume(), consume({ id: 'me2', workCenter: 'WC-2', inputs: [{ source: 'mq', ref: 'm2/material' }] })]), []);
});
