/**
 * An agent-like child process for crash tests: an outbox (synchronous FULL) and one MQTT or Sparkplug
 * driver, nothing else. The parent SIGKILLs it at random; "stop" on stdin shuts it down cleanly.
 *
 *   PB_TEST_OUTBOX=/tmp/x/outbox.db PB_TEST_DRIVER='{"type":"mqtt",...}' node agent/drivers/mqtt/test-agent.ts
 *
 * Prints "ready" once the driver is up, and "stopped" after a clean stop.
 */
import { createInterface } from 'node:readline';
import { parseConfig } from '../../../contracts/index.ts';
import { openOutbox } from '../../outbox/outbox.ts';
import { testLogger } from '../../../test/helpers/log.ts';
import type { Driver, DriverContext } from '../driver.ts';
import { mqttConfigSchema } from './config.ts';

const outboxPath = process.env.PB_TEST_OUTBOX;
const raw = process.env.PB_TEST_DRIVER;
if (!outboxPath || !raw) throw new Error('PB_TEST_OUTBOX and PB_TEST_DRIVER are required');
const input = JSON.parse(raw) as { type: string; name: string };
const log = testLogger();
const outbox = openOutbox({ path: outboxPath, synchronous: 'full', log });
const ctx: DriverContext = {
  agentId: 'crash-test',
  plant: 'P1',
  stateDir: outboxPath,
  log,
  emit: async (signals) => {
    await outbox.append(signals);
  },
  deadLetter: (code, reason, payload) => outbox.deadLetterInput(input.name, code, reason, payload),
};

let driver: Driver;
if (input.type === 'sparkplug') {
  const { sparkplugConfigSchema } = await import('../sparkplug/config.ts');
  const { create } = await import('../sparkplug/sparkplug-driver.ts');
  driver = create(parseConfig(sparkplugConfigSchema, input) as never, ctx);
} else {
  const { create } = await import('./mqtt-driver.ts');
  driver = create(parseConfig(mqttConfigSchema, input) as never, ctx);
}
await driver.start();
const ready = setInterval(() => {
  if (driver.health().state === 'up') {
    clearInterval(ready);
    process.stdout.write('ready\n');
  }
}, 10);

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() !== 'stop') return;
  void driver.stop().then(() => {
    outbox.close();
    process.stdout.write('stopped\n');
    process.exit(0);
  });
});
