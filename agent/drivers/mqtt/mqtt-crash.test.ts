import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import Database from 'better-sqlite3';
import { openOutbox } from '../../outbox/outbox.ts';
import { publisher, startBroker, startTestAgent, uniq, waitFor, type TestBroker } from './test-kit.ts';

/**
 * Issue 4: QoS 1 events published while the agent process is SIGKILLed 5 times at random → every event
 * committed exactly once. PLANTBRIDGE_MQTT_KILL_EVENTS sets the size (default 20,000; the size),
 * PLANTBRIDGE_MQTT_KILLS the number of kills (default 5).
 */

const EVENTS = Number(process.env.PLANTBRIDGE_MQTT_KILL_EVENTS ?? 20_000);
const KILLS = Number(process.env.PLANTBRIDGE_MQTT_KILLS ?? 5);

let broker: TestBroker;
before(async () => {
  broker = await startBroker();
});
after(async () => {
  await broker?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

void it(`commits every one of ${EVENTS} QoS 1 events exactly once while the agent is SIGKILLed ${KILLS} times`, { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pb-mqtt-crash-'));
  const outboxPath = join(dir, 'outbox.db');
  const prefix = uniq('crash');
  const env = {
    PB_TEST_OUTBOX: outboxPath,
    PB_TEST_DRIVER: JSON.stringify({
      type: 'mqtt',
      name: 'cells',
      url: broker.url,
      clientId: uniq('crash-agent'),
      reconnectMaxDelay: '1s',
      subscriptions: [{ filter: `${prefix}/+machine/events`, ref: '{machine}/events', fields: { id: { json: '$.id' }, time: { json: '$.ts' } } }],
    }),
  };
  let agent = startTestAgent(env);
  t.after(() => agent.proc.kill('SIGKILL'));
  await agent.ready;
  // the agent's default: payloads decoded and committed on the driver's commit thread
  assert.match(agent.output(), /ready commits-on=worker/);

  const pub = await publisher(broker.url, { clientId: uniq('crash-pub'), clean: false, properties: { sessionExpiryInterval: 600 } });
  t.after(() => pub.end(true));
  // ~4,000 events/s in chunks, so that the kills land mid-stream
  const publishing = (async () => {
    for (let i = 0; i < EVENTS; i += 200) {
      const chunk: Promise<unknown>[] = [];
      for (let j = i; j < Math.min(EVENTS, i + 200); j++) {
        chunk.push(pub.publishAsync(`${prefix}/M${j % 8}/events`, JSON.stringify({ id: j, ts: new Date(Date.UTC(2026, 0, 1) + j).toISOString(), qty: 1 }), { qos: 1 }));
      }
      await Promise.all(chunk);
      await sleep(50);
    }
  })();

  const db = new Database(outboxPath, { readonly: true, fileMustExist: true });
  t.after(() => db.close());
  const count = () => (db.prepare('SELECT COUNT(*) AS n FROM events').get() as { n: number }).n;
  let kills = 0;
  for (let k = 0; k < KILLS; k++) {
    await sleep(150 + Math.random() * 900);
    agent.proc.kill('SIGKILL');
    await agent.exited;
    kills++;
    await sleep(Math.random() * 300);
    agent = startTestAgent(env);
    await agent.ready;
  }
  await publishing;
  await waitFor(() => count() >= EVENTS, 60_000, `${EVENTS} events in the outbox`);
  await sleep(300);
  agent.proc.stdin!.write('stop\n');
  await agent.exited;

  db.close();
  const outbox = openOutbox({ path: outboxPath });
  t.after(() => outbox.close());
  const [{ n, nd, lo, hi }] = outbox.query<{ n: number; nd: number; lo: number; hi: number }>(
    "SELECT COUNT(*) AS n, COUNT(DISTINCT source_id) AS nd, MIN(CAST(substr(source_id, instr(source_id, '@id=') + 4) AS INTEGER)) AS lo, MAX(CAST(substr(source_id, instr(source_id, '@id=') + 4) AS INTEGER)) AS hi FROM events",
  );
  assert.equal(kills, KILLS);
  assert.equal(n, EVENTS, 'every event committed once');
  assert.equal(nd, EVENTS);
  assert.equal(lo, 0);
  assert.equal(hi, EVENTS - 1);
});
