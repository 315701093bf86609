import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { parseConfig, type Signal } from '../../../contracts/index.ts';
import { openOutbox, type Outbox } from '../../outbox/outbox.ts';
import { canConnect, freePort, MissingService, missing } from '../../../test/helpers/services.ts';
import { testLogger } from '../../../test/helpers/log.ts';
import type { DriverContext } from '../driver.ts';
import { mqttConfigSchema, type MqttConfig } from './config.ts';

/** Test helpers for the MQTT and Sparkplug drivers: a restartable Mosquitto, an outbox-backed ctx, publishers. */

export const uniq = (prefix: string): string => `${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`;

export interface TestBroker {
  url: string;
  port: number;
  dir: string;
  process: ChildProcess;
  /** SIGTERM (Mosquitto saves its persistence file) and start again on the same port and directory */
  restart(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

function hasMosquitto(): boolean {
  return spawnSync('sh', ['-c', 'command -v mosquitto'], { stdio: 'ignore' }).status === 0;
}

/**
 * A private Mosquitto with persistence in a temp dir that survives restarts. The dir is world-writable
 * because Mosquitto started as root drops to the `mosquitto` user before it writes its database.
 */
export async function startBroker(opts: { extraConf?: string; listenerConf?: string; port?: number } = {}): Promise<TestBroker> {
  if (!hasMosquitto()) throw new MissingService(missing('mosquitto', 'install it with `apt-get install mosquitto`'));
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'pb-mqtt-broker-'));
  chmodSync(dir, 0o777);
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      opts.listenerConf ?? '',
      'allow_anonymous true',
      'persistence true',
      `persistence_location ${dir}/`,
      'max_queued_messages 1000000',
      'max_inflight_messages 0',
      'log_dest none',
      opts.extraConf ?? '',
      '',
    ].join('\n'),
  );
  const launch = async (): Promise<ChildProcess> => {
    const proc = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      if (await canConnect('127.0.0.1', port, 200)) return proc;
      if (proc.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`mosquitto did not start on port ${port} (config ${conf})`);
  };
  const stopProc = (p: ChildProcess, signal: NodeJS.Signals = 'SIGTERM') =>
    new Promise<void>((resolve) => {
      if (p.exitCode !== null || p.signalCode !== null) return resolve();
      p.once('exit', () => resolve());
      p.kill(signal);
    });
  const broker: TestBroker = {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    dir,
    process: await launch(),
    async restart(downMs = 500) {
      await stopProc(broker.process);
      await new Promise((r) => setTimeout(r, downMs));
      broker.process = await launch();
    },
    stop: () => stopProc(broker.process),
  };
  return broker;
}

export interface OutboxHarness {
  outbox: Outbox;
  ctx: DriverContext;
  log: Logger;
  emitted: number;
  /** make the next emits fail (simulates OUTBOX_FULL) */
  failEmits: boolean;
  close(): void;
}

export function outboxHarness(source: string, dir = mkdtempSync(join(tmpdir(), 'pb-mqtt-outbox-'))): OutboxHarness {
  const log = testLogger();
  const outbox = openOutbox({ path: join(dir, 'outbox.db'), synchronous: 'full', log });
  const h: OutboxHarness = {
    outbox,
    log,
    emitted: 0,
    failEmits: false,
    ctx: {
      agentId: 'test-agent',
      plant: 'P1',
      stateDir: dir,
      log,
      emit: async (signals: Signal[]) => {
        if (h.failEmits) {
          const { PlantBridgeError } = await import('../../../contracts/index.ts');
          throw new PlantBridgeError('OUTBOX_FULL', 'test: outbox full');
        }
        await outbox.append(signals);
        h.emitted += signals.length;
      },
      deadLetter: (code, reason, payload, dedupeKey) => void outbox.deadLetterInput(source, code, reason, payload, dedupeKey),
      // the MQTT driver's commit thread opens its own connection to the same file (no rules here)
      writer: {
        spec: { outbox: { path: join(dir, 'outbox.db'), synchronous: 'full' }, rules: [], engine: { plant: 'P1', agentId: 'test-agent', timeZone: 'UTC', mode: 'live' } },
        committed: (r) => void (h.emitted += r.accepted + r.duplicates),
      },
    },
    close: () => outbox.close(),
  };
  return h;
}

export function mqttConfig(input: Record<string, unknown>): MqttConfig {
  return parseConfig(mqttConfigSchema, { type: 'mqtt', ...input }) as MqttConfig;
}

export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function publisher(url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const client = connect(url, { clientId: uniq('pub'), protocolVersion: 5, reconnectPeriod: 200, ...opts });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
}

/** Publishes QoS 1 messages with a bounded window of unacknowledged publishes. */
export async function publishAll(client: MqttClient, items: Array<{ topic: string; payload: string | Buffer; retain?: boolean }>, window = 500): Promise<void> {
  let i = 0;
  const inflight = new Set<Promise<unknown>>();
  while (i < items.length) {
    while (inflight.size < window && i < items.length) {
      const it = items[i++];
      const p = client.publishAsync(it.topic, it.payload, { qos: 1, retain: it.retain ?? false });
      inflight.add(p);
      void p.finally(() => inflight.delete(p)).catch(() => undefined);
    }
    await Promise.race(inflight);
  }
  await Promise.all(inflight);
}

/**
 * Starts a driver on a harness, with a publisher on the broker, and waits until it is up; stops both and
 * closes the harness when the test ends.
 */
export async function runningDriver(t: { after: (fn: () => Promise<void>) => void }, d: { start(): Promise<void>; stop(): Promise<void>; health(): { state: string } }, h: OutboxHarness, url: string): Promise<MqttClient> {
  const pub = await publisher(url);
  t.after(async () => {
    await d.stop();
    pub.end(true);
    h.close();
  });
  await d.start();
  await waitFor(() => d.health().state === 'up', 10_000, 'up');
  return pub;
}

export function countEvents(outbox: Outbox, source?: string): number {
  const rows = source
    ? outbox.query<{ n: number }>('SELECT COUNT(*) AS n FROM events WHERE source = ?', source)
    : outbox.query<{ n: number }>('SELECT COUNT(*) AS n FROM events');
  return rows[0].n;
}

export interface TestAgentProcess {
  proc: ChildProcess;
  /** resolves once the child printed "ready" (its drivers are started) */
  ready: Promise<void>;
  exited: Promise<void>;
  /** what the child printed on stdout so far ("ready commits-on=worker" …) */
  output(): string;
}

/** Runs test-agent.ts (an outbox and one driver, configured by PB_TEST_* variables) in a child process, for kill tests. */
export function startTestAgent(env: Record<string, string>): TestAgentProcess {
  const proc = spawn(process.execPath, [join(import.meta.dirname, 'test-agent.ts')], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const ready = new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('ready')) resolve();
    });
    proc.once('exit', (code, sig) => reject(new Error(`agent exited before ready (${code ?? sig})`)));
  });
  ready.catch(() => undefined);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return { proc, ready, exited, output: () => out };
}
