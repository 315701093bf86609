/**
 * An agent-like child process for crash tests: an outbox (synchronous FULL) and one MQTT or Sparkplug
 * driver, and optionally rules (PB_TEST_RULES, a JSON array of rule configs). The parent SIGKILLs it at
 * random; "stop" on stdin shuts it down cleanly. The outbox's directory is the driver's state directory.
 *
 *   PB_TEST_OUTBOX=/tmp/x/outbox.db PB_TEST_DRIVER='{"type":"mqtt",...}' node agent/drivers/mqtt/test-agent.ts
 *
 * Prints "ready" once the driver is up, and "stopped" after a clean stop.
 */
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { parseConfig } from '../../../contracts/index.ts';
import { ruleConfigSchema } from '../../config/schema.ts';
import { openOutbox } from '../../outbox/outbox.ts';
import { RuleEngine, buildRules } from '../../rules/engine.ts';
import { testLogger } from '../../../test/helpers/log.ts';
import type { Driver, DriverContext } from '../driver.ts';
import { mqttConfigSchema } from './config.ts';
import type { MqttDriver } from './mqtt-driver.ts';

const outboxPath = process.env.PB_TEST_OUTBOX;
const raw = process.env.PB_TEST_DRIVER;
if (!outboxPath || !raw) throw new Error('PB_TEST_OUTBOX and PB_TEST_DRIVER are required');
const input = JSON.parse(raw) as { type: string; name: string };
const log = testLogger();
const rules = process.env.PB_TEST_RULES ? parseConfig(z.array(ruleConfigSchema), JSON.parse(process.env.PB_TEST_RULES)) : [];
const engine = rules.length > 0 ? new RuleEngine(buildRules(rules, 'live'), { plant: 'P1', agentId: 'crash-test', timeZone: 'UTC', mode: 'live' }) : undefined;
const outbox = openOutbox({ path: outboxPath, synchronous: 'full', log, ...(engine ? { rules: engine } : {}) });
const ctx: DriverContext = {
  agentId: 'crash-test',
  plant: 'P1',
  stateDir: dirname(outboxPath),
  log,
  emit: async (signals) => {
    await outbox.append(signals);
  },
  deadLetter: (code, reason, payload, dedupeKey) => void outbox.deadLetterInput(input.name, code, reason, payload, dedupeKey),
  // as in the agent: the MQTT driver commits on its own thread through a second connection, same rules
  writer: {
    spec: { outbox: { path: outboxPath, synchronous: 'full' }, rules, engine: { plant: 'P1', agentId: 'crash-test', timeZone: 'UTC', mode: 'live' } },
    committed: () => undefined,
  },
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
    const on = (driver as Partial<MqttDriver>).commitsOn?.();
    process.stdout.write(`ready${on ? ` commits-on=${on}` : ''}\n`);
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
