import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

/**
 * Finds or starts the real servers tests talk to. On a developer machine a missing service skips the
 * tests that need it, saying what is missing and how to get it; in CI (CI=true) it is a failure.
 */

export const inCI = process.env.CI === 'true' || process.env.CI === '1';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export function canConnect(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

export class MissingService extends Error {}

/** Skips (or fails in CI) with a message that says what is missing. Use as `t.skip(...)` guard. */
export function missing(what: string, how: string): string {
  const msg = `${what} is not available: ${how}`;
  if (inCI) throw new MissingService(`${msg} (CI=true: a missing service is a failure)`);
  return msg;
}

export interface Broker {
  url: string;
  host: string;
  port: number;
  /** the broker process when this helper started one (restart tests); undefined for the shared broker */
  process?: ChildProcess;
  stop(): Promise<void>;
}

function hasBinary(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
}

/** Starts a private Mosquitto on a free port (for tests that restart or reconfigure the broker). */
export async function startMosquitto(extraConf = '', port?: number): Promise<Broker> {
  if (!hasBinary('mosquitto')) {
    throw new MissingService(missing('mosquitto', 'install it with `apt-get install mosquitto`'));
  }
  const p = port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'pb-mosquitto-'));
  // mosquitto started as root drops to the mosquitto user: it must be able to write its persistence file
  chmodSync(dir, 0o777);
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    `listener ${p} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location ${dir}/\nmax_queued_messages 1000000\nmax_inflight_messages 0\n${extraConf}\n`,
  );
  const proc = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    if (await canConnect('127.0.0.1', p, 200)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!(await canConnect('127.0.0.1', p))) throw new Error(`mosquitto did not start on port ${p}`);
  return {
    url: `mqtt://127.0.0.1:${p}`,
    host: '127.0.0.1',
    port: p,
    process: proc,
    stop: () =>
      new Promise((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}

/** The machine's Mosquitto on 127.0.0.1:1883, else a private one. */
export async function mqttBroker(): Promise<Broker> {
  if (await canConnect('127.0.0.1', 1883)) {
    return { url: 'mqtt://127.0.0.1:1883', host: '127.0.0.1', port: 1883, stop: async () => {} };
  }
  return startMosquitto();
}

/** trust auth on this machine kind: the user is whoever runs the tests (root in CI) unless the URL names one */
export const POSTGRES_URL = (() => {
  const u = new URL(process.env.PLANTBRIDGE_TEST_POSTGRES ?? 'postgres://127.0.0.1:5432/test');
  if (!u.username) u.username = process.env.PGUSER ?? userInfo().username;
  return u.toString();
})();

/** PostgreSQL for the scale-out store: tries to start the local cluster once if it is down. */
export async function postgresUrl(): Promise<string> {
  const u = new URL(POSTGRES_URL);
  const port = Number(u.port || 5432);
  if (await canConnect(u.hostname, port)) return POSTGRES_URL;
  if (hasBinary('pg_ctlcluster')) {
    spawnSync('sh', ['-c', 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -1) main start'], { stdio: 'ignore' });
    for (let i = 0; i < 50; i++) {
      if (await canConnect(u.hostname, port)) return POSTGRES_URL;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new MissingService(
    missing(`PostgreSQL at ${POSTGRES_URL}`, 'apt-get install postgresql, start it, or set PLANTBRIDGE_TEST_POSTGRES'),
  );
}
