import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { after, before, describe, test } from 'node:test';
import { canConnect, freePort } from '../../test/helpers/services.ts';
import { NATIVE_ADDON_ASSET } from './sea-runtime.ts';
import { REPO, SEA_FUSE, buildExecutable, type ExecutableResult } from './sea.ts';

/**
 * Builds the single executables once (Linux agent and hub, a probe of the addon extraction, the Windows
 * agent) into a temp folder outside the repo — no node_modules anywhere above them — and runs them there.
 */

const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

let root: string;
let probe: ExecutableResult;
let agent: ExecutableResult;
let hub: ExecutableResult;
let windows: ExecutableResult;
const children: ChildProcess[] = [];

function runExe(file: string, args: string[], opts: { cwd: string; env?: Record<string, string> }) {
  return spawnSync(file, args, {
    cwd: opts.cwd,
    encoding: 'utf8',
    timeout: 60_000,
    // nothing from this shell: no NODE_PATH, no NODE_OPTIONS, a HOME of its own
    env: { PATH: '/usr/bin:/bin', HOME: opts.cwd, ...opts.env },
  });
}

function workDir(name: string): string {
  const d = join(root, 'run', name);
  mkdirSync(d, { recursive: true });
  return d;
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'pb-sea-test-'));
  const outDir = join(root, 'bin');
  probe = await buildExecutable({ app: 'agent', target: 'linux-x64', outDir: join(root, 'probe'), entry: 'installers/build/fixtures/sea-probe.ts' });
  agent = await buildExecutable({ app: 'agent', target: 'linux-x64', outDir });
  hub = await buildExecutable({ app: 'hub', target: 'linux-x64', outDir });
  windows = await buildExecutable({ app: 'agent', target: 'win-x64', outDir });
});

after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('single executable: addon extraction (probe entry)', () => {
  test('extracts better-sqlite3 into the state dir and opens a database with it', () => {
    const cwd = workDir('probe');
    const state = join(cwd, 'state');
    const r = runExe(probe.file, [state], { cwd });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { sea: boolean; nativeBinding: string; sqlite: string; choice: string; argv: string[] };
    assert.equal(out.sea, true);
    assert.match(out.nativeBinding, /\/state\/lib\/better_sqlite3-[0-9a-f]{16}\.node$/);
    assert.match(out.sqlite, /^3\.\d+\.\d+$/);
    assert.equal(out.choice, 'better-sqlite3');
    assert.deepEqual(out.argv, [state], 'process.argv.slice(2) are the arguments');
    const expected = readFileSync(join(REPO, 'node_modules/better-sqlite3/prebuilds/linux-x64.node'));
    assert.deepEqual(readFileSync(out.nativeBinding), expected);
  });

  test('rewrites a damaged copy and removes copies of other versions', () => {
    const cwd = workDir('probe-damaged');
    const state = join(cwd, 'state');
    const first = JSON.parse(runExe(probe.file, [state], { cwd }).stdout) as { nativeBinding: string };
    writeFileSync(first.nativeBinding, 'truncated');
    writeFileSync(join(state, 'lib', 'better_sqlite3-0123456789abcdef.node'), 'an older version');
    const r = runExe(probe.file, [state], { cwd });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readdirSync(join(state, 'lib')), [first.nativeBinding.split('/').pop()]);
    assert.equal(readFileSync(first.nativeBinding).length, readFileSync(join(REPO, 'node_modules/better-sqlite3/prebuilds/linux-x64.node')).length);
  });
});

describe('single executable: plantbridge-agent for Linux', () => {
  const agentYaml = (state: string, extra = '') => `agent:
  id: edge-test-01
  plant: "1010"
  stateDir: ${state}
hub:
  url: http://127.0.0.1:9
  token: \${PB_TOKEN}
drivers:
  - type: simulator
    name: sim
${extra}`;

  test('--version prints the package version, without node_modules around', () => {
    const cwd = workDir('version');
    const r = runExe(agent.file, ['--version'], { cwd });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), VERSION);
    assert.ok(!agent.file.startsWith(REPO), 'built outside the repository');
  });

  test('--help lists the commands', () => {
    const r = runExe(agent.file, ['--help'], { cwd: workDir('help') });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /plantbridge-agent run/);
    assert.match(r.stdout, /check-config/);
    // the executable points at what ships with it, not at the repository's files
    assert.match(r.stdout, /Docs: INSTALL\.md and agent\.example\.yaml beside this executable in its release folder\n\(the \.deb puts them in \/usr\/share\/doc\/plantbridge-agent\/\)/);
    assert.doesNotMatch(r.stdout, /docs\/ARCHITECTURE\.md|config\/agent\.example\.yaml/);
    const sub = runExe(agent.file, ['outbox', '--help'], { cwd: workDir('help') });
    assert.equal(sub.status, 0, sub.stderr);
    assert.match(sub.stdout, /^Usage: plantbridge-agent outbox/);
  });

  test('check-config: a valid config exits 0', () => {
    const cwd = workDir('check-ok');
    writeFileSync(join(cwd, 'agent.yaml'), agentYaml(join(cwd, 'state')));
    const r = runExe(agent.file, ['check-config', '--config', 'agent.yaml'], { cwd, env: { PB_TOKEN: 'secret' } });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /valid/);
  });

  test('check-config: an invalid config exits 1 and names the key', () => {
    const cwd = workDir('check-bad');
    writeFileSync(join(cwd, 'agent.yaml'), agentYaml(join(cwd, 'state'), 'unknownSection: 1\n'));
    const r = runExe(agent.file, ['check-config', '--config', 'agent.yaml'], { cwd, env: { PB_TOKEN: 'secret' } });
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /unknownSection/);
  });

  test('a usage error exits 1', () => {
    const r = runExe(agent.file, ['no-such-command'], { cwd: workDir('usage') });
    assert.equal(r.status, 1);
  });

  test('the SEA fuse is flipped and the addon is embedded', () => {
    const bin = readFileSync(agent.file);
    assert.ok(bin.includes(`${SEA_FUSE}:1`), 'postject marks the fuse');
    assert.ok(bin.includes(NATIVE_ADDON_ASSET), 'asset name present');
  });
});

describe('bundles', () => {
  for (const app of ['agent', 'hub'] as const) {
    test(`${app}: every module is inside (no computed imports, no createRequire)`, () => {
      const warnings = (app === 'agent' ? agent : hub).warnings;
      assert.deepEqual(warnings, []);
    });
  }
});

describe('single executable: plantbridge-hub for Linux', () => {
  test('--version and check-config', () => {
    const cwd = workDir('hub-check');
    const v = runExe(hub.file, ['--version'], { cwd });
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stdout.trim(), VERSION);
    writeFileSync(join(cwd, 'hub.yaml'), hubYaml(8080, join(cwd, 'data'), 'http://127.0.0.1:9'));
    const ok = runExe(hub.file, ['check-config', '--config', 'hub.yaml'], { cwd, env: { PB_TOKEN: 'secret', PB_SAP_PASSWORD: 'x' } });
    assert.equal(ok.status, 0, ok.stderr);
    writeFileSync(join(cwd, 'bad.yaml'), 'hub:\n  port: "not a number"\n');
    const bad = runExe(hub.file, ['check-config', '--config', 'bad.yaml'], { cwd });
    assert.equal(bad.status, 1, bad.stdout + bad.stderr);
  });
});

function hubYaml(port: number, dataDir: string, erpUrl: string): string {
  return `hub:
  host: 127.0.0.1
  port: ${port}
  dataDir: ${dataDir}
agents:
  - id: edge-test-01
    plants: ["1010"]
    token: \${PB_TOKEN}
erp:
  type: sap-odata
  url: ${erpUrl}
  auth:
    type: basic
    username: PLANTBRIDGE
    password: \${PB_SAP_PASSWORD}
  timeout: 5s
posting:
  retryMaxDelay: 2s
`;
}

function start(file: string, args: string[], cwd: string, env: Record<string, string>): { child: ChildProcess; output: () => string } {
  let out = '';
  const child = spawn(file, args, { cwd, env: { PATH: '/usr/bin:/bin', HOME: cwd, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  children.push(child);
  return { child, output: () => out };
}

function exited(child: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      resolve(null);
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(t);
      resolve(code);
    });
  });
}

async function until(what: string, fn: () => Promise<boolean> | boolean, timeoutMs: number, diag: () => string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await fn()) return;
    const dead = children.find((c) => c.exitCode !== null && c.exitCode !== 0);
    if (dead) assert.fail(`${what}: ${dead.spawnfile.split('/').pop()} exited with ${dead.exitCode}\n${diag()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`${what}: not within ${timeoutMs} ms\n${diag()}`);
}

describe('single executables: a short real run', () => {
  test(
    'agent executable reads a node-opcua server and delivers through the hub executable to the ERP',
    async () => {
      const { startLineServer } = await import('../../test/plant-sim/opcua-line-server.ts');
      const { startSapSimulator, SAP_SIM_USER } = await import('../../central-hub/erp/sap-odata/sap-simulator.ts');
      const sap = await startSapSimulator({ latencyMs: 0 });
      const plc = await startLineServer({
        params: { intervalMs: 100, partsPerTick: 5, scrapEvery: 20, orderSize: 300, firstOrder: 1000100, operation: '0010', counterBits: 32 },
      });
      const { startBroker, publisher, publishAll } = await import('../../agent/drivers/mqtt/test-kit.ts');
      const broker = await startBroker();
      const cwd = workDir('real-run');
      const hubPort = await freePort();
      const env = { PB_TOKEN: 'a-test-token-of-enough-length-0123456789', PB_SAP_PASSWORD: SAP_SIM_USER.password };
      try {
        writeFileSync(join(cwd, 'hub.yaml'), hubYaml(hubPort, join(cwd, 'hub-data'), sap.url));
        writeFileSync(
          join(cwd, 'agent.yaml'),
          `agent:
  id: edge-test-01
  plant: "1010"
  stateDir: ${join(cwd, 'agent-state')}
status:
  port: 0
hub:
  url: http://127.0.0.1:${hubPort}
  token: \${PB_TOKEN}
  heartbeatInterval: 1s
drivers:
  - name: line1-plc
    type: opcua
    endpoint: ${plc.endpoint}
    securityMode: None
    securityPolicy: None
    allowInsecure: true
    publishingInterval: 100ms
    nodes:
      - { ref: good, nodeId: "${plc.nodeIds.good}", samplingInterval: 100ms }
      - { ref: scrap, nodeId: "${plc.nodeIds.scrap}", samplingInterval: 100ms }
      - { ref: order, nodeId: "${plc.nodeIds.order}", samplingInterval: 100ms }
  - name: cells
    type: mqtt
    url: ${broker.url}
    clientId: sea-agent
    subscriptions:
      - filter: sea/+machine/events
        ref: "{machine}/events"
        fields: { id: { json: $.id }, time: { json: $.ts } }
rules:
  - id: line1-yield
    type: count-production
    workCenter: WC-01
    counter: { source: line1-plc, ref: good }
    scrapCounter: { source: line1-plc, ref: scrap }
    activeOrder: { source: line1-plc, ref: order }
    uom: EA
    emitEvery: { parts: 20, maxInterval: 2s }
`,
        );
        const h = start(hub.file, ['serve', '--config', 'hub.yaml'], cwd, env);
        await until('hub listening', () => canConnect('127.0.0.1', hubPort, 200), 60_000, h.output);
        // the SQLite store's checkpoint thread runs from its bundled asset
        await until('hub checkpoints on their own thread', () => /"checkpoints":"worker"/.test(h.output()), 30_000, h.output);
        const a = start(agent.file, ['run', '--config', 'agent.yaml'], cwd, env);
        const diag = () => `agent:\n${a.output()}\nhub:\n${h.output()}`;
        await until('a confirmation posted to the ERP', () => sap.confirmations().length > 0, 120_000, diag);
        assert.ok(readdirSync(join(cwd, 'agent-state', 'lib')).some((f) => f.startsWith('better_sqlite3-')));
        // MQTT through the executable's commit thread (its code is a bundled asset): 300 events, each once
        await until('the MQTT driver up', () => /MQTT commit thread started/.test(a.output()) && /"driver":"cells".*Driver is up/.test(a.output()), 60_000, diag);
        const pub = await publisher(broker.url);
        const items = Array.from({ length: 300 }, (_, i) => ({ topic: `sea/M${i % 3}/events`, payload: JSON.stringify({ id: i, ts: new Date(Date.UTC(2026, 0, 1) + i).toISOString() }) }));
        await publishAll(pub, items);
        await publishAll(pub, items.slice(0, 50));
        await pub.endAsync();
        const mqttEvents = () => {
          const db = new Database(join(cwd, 'agent-state', 'outbox.db'), { readonly: true, fileMustExist: true });
          try {
            return (db.prepare("SELECT COUNT(*) AS n FROM events WHERE source = 'cells'").get() as { n: number }).n;
          } finally {
            db.close();
          }
        };
        await until('300 MQTT events in the outbox', () => mqttEvents() >= 300, 30_000, diag);
        a.child.kill('SIGTERM');
        assert.equal(await exited(a.child, 30_000), 0, `agent exit\n${a.output()}`);
        assert.equal(mqttEvents(), 300);
        assert.doesNotMatch(a.output(), /commit thread unavailable/);
        h.child.kill('SIGTERM');
        assert.equal(await exited(h.child, 30_000), 0, `hub exit\n${h.output()}`);
      } finally {
        await plc.stop();
        await sap.stop();
        await broker.stop();
      }
    },
  );
});

describe('single executable: plantbridge-agent for Windows', () => {
  test('is a PE executable with the SEA blob and the Windows addon', () => {
    const bin = readFileSync(windows.file);
    assert.equal(bin.subarray(0, 2).toString('latin1'), 'MZ');
    assert.ok(bin.includes(`${SEA_FUSE}:1`), 'postject marks the fuse');
    assert.ok(windows.file.endsWith('plantbridge-agent-win-x64.exe'));
  });
  // Run for real under Wine 10 (--version, check-config, enroll, a short run posting to a hub): that needs
  // root and a Debian 13 chroot, so it is installers/windows/ci-wine-check.sh, which .ci/run calls after npm test.
});
