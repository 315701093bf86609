/**
 * The Windows executables under Wine (run by installers/windows/ci-wine-check.sh, after `npm test`; not part
 * of the suite: it needs root, a Debian 13 chroot with Wine 10 and the win-x64 build, see that script).
 *
 * From the release folder the build made (plantbridge-agent-<version>-win-x64/, as an operator unzips it):
 * --version and --help of both executables; check-config of the shipped example configs and of a config
 * named by C:\ and Z:\ paths; enroll against a hub on loopback; a short run with the simulator driver whose
 * confirmations reach the hub and the SAP simulator; Ctrl-C (SIGINT) stops it with exit 0.
 *
 * Wine's own caveats, handled here: the executable's stdout and stderr must be files (a Node pipe gives
 * `open EBADF` in the Windows process), and WINEDEBUG=-all keeps Wine's diagnostics out of them.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { VERSION } from '../../contracts/version.ts';
import { freePort } from '../../test/helpers/services.ts';
import { testLogger } from '../../test/helpers/log.ts';

const ROOT = process.env.PLANTBRIDGE_WINE_ROOT ?? '';
/** the work folder as the chroot sees it (/tmp/pb-wine.XXXXXX) */
const WORK = process.env.PLANTBRIDGE_WINE_WORK ?? '';
if (!ROOT || !WORK) throw new Error('run through installers/windows/ci-wine-check.sh (PLANTBRIDGE_WINE_ROOT and PLANTBRIDGE_WINE_WORK)');

const PREFIX = `${WORK}/prefix`;
/** host path of a path inside the chroot */
const onHost = (p: string) => join(ROOT, p);
/** host path of a path on the Wine prefix's C: drive */
const cDrive = (p: string) => onHost(join(PREFIX, 'drive_c', p.replace(/^C:\\/i, '').replaceAll('\\', '/')));
/** Windows path (Z: is the chroot's /) of a path inside the chroot */
const zPath = (p: string) => `Z:${p.replaceAll('/', '\\')}`;

const folder = (app: 'agent' | 'hub') => `${WORK}/dist/plantbridge-${app}-${VERSION}-win-x64`;
const exe = (app: 'agent' | 'hub') => `${folder(app)}/plantbridge-${app}.exe`;

const DATA = 'C:\\ProgramData\\PlantBridge\\agent';

interface WineRun {
  code: number | null;
  out: string;
  err: string;
}

let runs = 0;
/** Starts a Windows executable under Wine in the chroot, stdout and stderr into files. */
function startWine(app: 'agent' | 'hub', args: string[], env: Record<string, string> = {}) {
  const n = ++runs;
  const outFile = `${WORK}/run-${n}.out`;
  const errFile = `${WORK}/run-${n}.err`;
  const out = openSync(onHost(outFile), 'w');
  const err = openSync(onHost(errFile), 'w');
  const vars = Object.entries({ WINEPREFIX: PREFIX, WINEDEBUG: '-all', HOME: WORK, ...env }).map(([k, v]) => `${k}=${v}`);
  const child = spawn('chroot', [ROOT, '/usr/bin/env', '-i', 'PATH=/usr/bin:/bin', ...vars, 'wine', exe(app), ...args], { stdio: ['ignore', out, err] });
  closeSync(out);
  closeSync(err);
  const read = () => ({ out: readFileSync(onHost(outFile), 'utf8'), err: readFileSync(onHost(errFile), 'utf8') });
  const exited = new Promise<WineRun>((resolve) => child.once('exit', (code) => resolve({ code, ...read() })));
  return { child, exited, read };
}

async function wine(app: 'agent' | 'hub', args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<WineRun> {
  const r = startWine(app, args, env);
  const timer = setTimeout(() => r.child.kill('SIGKILL'), timeoutMs);
  try {
    return await r.exited;
  } finally {
    clearTimeout(timer);
  }
}

async function until(what: string, fn: () => Promise<boolean> | boolean, timeoutMs: number, diag: () => string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`${what}: not within ${timeoutMs} ms\n${diag()}`);
}

/** secrets the shipped example configs reference */
const EXAMPLE_ENV = {
  PLANTBRIDGE_AGENT_TOKEN: 'example-token-0123456789',
  LINE7_OPCUA_PASSWORD: 'p',
  CELL3_MQTT_PASSWORD: 'p',
  PLANTBRIDGE_TOKEN_EDGE_P1010_01: 'example-token-0123456789',
  SAP_PASSWORD: 's',
};

before(async () => {
  for (const app of ['agent', 'hub'] as const) assert.ok(existsSync(onHost(exe(app))), `${exe(app)} was not built`);
  // the first start creates the Wine prefix (~10 s)
  const r = await wine('agent', ['--version']);
  assert.equal(r.code, 0, r.err);
});

describe('Windows executables under Wine: start-up', () => {
  for (const app of ['agent', 'hub'] as const) {
    test(`${app}: --version prints the package version`, async () => {
      const r = await wine(app, ['--version']);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out.trim(), VERSION);
    });

    test(`${app}: --help names the files beside the executable`, async () => {
      const r = await wine(app, ['--help']);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /Usage:/);
      assert.match(r.out, new RegExp(`${app}\\.example\\.yaml`));
      for (const f of [`${app}.example.yaml`, 'INSTALL.md']) assert.ok(existsSync(onHost(`${folder(app)}/${f}`)), `${f} is beside the executable`);
    });

    test(`${app}: the example config shipped in the Windows folder validates (with its secrets set)`, async () => {
      const r = await wine(app, ['check-config', '--config', zPath(`${folder(app)}/${app}.example.yaml`)], EXAMPLE_ENV);
      assert.equal(r.code, 0, r.out + r.err);
      assert.match(r.out, /valid/);
    });
  }

  test('the agent example for Windows keeps its state under %ProgramData%, not /var/lib', () => {
    const text = readFileSync(onHost(`${folder('agent')}/agent.example.yaml`), 'utf8');
    assert.match(text, /stateDir: C:\\ProgramData\\PlantBridge\\agent\\state/);
    assert.doesNotMatch(text, /\/var\/lib|\/etc\//);
  });

  test('check-config: C:\\ and Z:\\ paths; a broken config exits 1 naming the key', async () => {
    const cfg = `agent:\n  id: edge-wine-01\n  plant: "1010"\n  stateDir: ${DATA}\\state\nhub:\n  url: http://127.0.0.1:9\n  token: \${PB_TOKEN}\ndrivers:\n  - type: simulator\n    name: sim\n`;
    mkdirSync(cDrive(`${DATA}\\config`), { recursive: true });
    writeFileSync(cDrive(`${DATA}\\config\\check.yaml`), cfg);
    writeFileSync(onHost(`${WORK}/check.yaml`), `${cfg}unknownSection: 1\n`);
    const c = await wine('agent', ['check-config', '--config', `${DATA}\\config\\check.yaml`], { PB_TOKEN: 'x' });
    assert.equal(c.code, 0, c.out + c.err);
    const z = await wine('agent', ['check-config', '-c', zPath(`${WORK}/check.yaml`)], { PB_TOKEN: 'x' });
    assert.equal(z.code, 1, z.out + z.err);
    assert.match(z.err, /unknownSection: unknown key/);
  });
});

describe('Windows agent under Wine: enroll, then a short run against a hub on loopback', () => {
  let hub: import('../../central-hub/build-hub.ts').Hub;
  let sap: Awaited<ReturnType<typeof import('../../central-hub/erp/sap-odata/sap-simulator.ts').startSapSimulator>>;
  let port: number;

  before(async () => {
    const { startSapSimulator, SAP_SIM_USER } = await import('../../central-hub/erp/sap-odata/sap-simulator.ts');
    const { parseHubConfig } = await import('../../central-hub/config/load.ts');
    const { buildHub } = await import('../../central-hub/build-hub.ts');
    sap = await startSapSimulator({ latencyMs: 0 });
    port = await freePort();
    const dir = onHost(`${WORK}/hub`);
    const yaml = `hub: { host: 127.0.0.1, port: ${port}, dataDir: ${dir} }\nerp: { type: sap-odata, url: "${sap.url}", auth: { type: basic, username: ${SAP_SIM_USER.username}, password: "\${SAP}" }, timeout: 5s }\nposting: { retryMaxDelay: 2s }\n`;
    hub = buildHub({ config: parseHubConfig(yaml, join(dir, 'hub.yaml'), { env: { SAP: SAP_SIM_USER.password }, readFile: () => '' }).config, log: testLogger() });
    await hub.start();
  });

  after(async () => {
    await hub?.stop();
    await sap?.stop();
  });

  const agentYaml = (token: string) => `agent:
  id: edge-wine-01
  plant: "1010"
  stateDir: ${DATA}\\state
status:
  port: 0
hub:
  url: http://127.0.0.1:${port}
  token: ${token}
  heartbeatInterval: 1s
drivers:
  - type: simulator
    name: sim
    interval: 100ms
    partsPerTick: 10
    orderSize: 1000
rules:
  - id: yield
    type: count-production
    workCenter: WC-01
    counter: { source: sim, ref: good }
    activeOrder: { source: sim, ref: order }
    emitEvery: { parts: 50 }
`;

  test('enroll writes the credential into the state folder; run posts confirmations; Ctrl-C stops with exit 0', async () => {
    const { agentsCommand } = await import('../../central-hub/enrollment/agents-cli.ts');
    let printed = '';
    const added = await agentsCommand(undefined as never, ['add', '--name', 'edge-wine-01', '--plant', '1010'], { out: (s) => void (printed += s), err: (s) => void (printed += s), store: hub.store });
    assert.equal(added, 0, printed);
    const token = /\b(pbe_[A-Za-z0-9_-]+)\b/.exec(printed)?.[1];
    assert.ok(token, printed);
    const config = `${DATA}\\config\\agent.yaml`;
    mkdirSync(cDrive(`${DATA}\\config`), { recursive: true });
    writeFileSync(cDrive(config), agentYaml(`file:${DATA}\\state\\hub-credential`));

    // --hub may be left out: hub.url from agent.yaml is used
    const e = await wine('agent', ['enroll', '--config', config], { PLANTBRIDGE_ENROLL_TOKEN: token });
    assert.equal(e.code, 0, e.out + e.err);
    assert.match(e.out, /Enrolled as agent edge-wine-01 for plant\(s\) 1010/);
    assert.match(readFileSync(cDrive(`${DATA}\\state\\hub-credential`), 'utf8'), /\S{20,}/);

    const a = startWine('agent', ['run', '--config', config]);
    const diag = () => {
      const { out, err } = a.read();
      return `stdout:\n${out.slice(-4000)}\nstderr:\n${err.slice(-4000)}`;
    };
    await until('a confirmation posted to the SAP simulator', () => sap.confirmations().length > 0, 180_000, diag);
    const counts = await hub.store.counts();
    assert.ok(counts.posted + counts.queued > 0, `the hub holds the agent's transactions: ${JSON.stringify(counts)}`);
    assert.ok(readdirSync(cDrive(`${DATA}\\state\\lib`)).some((f) => /^better_sqlite3-[0-9a-f]{16}\.node$/.test(f)), 'the addon was extracted into the state folder');
    assert.ok(existsSync(cDrive(`${DATA}\\state\\outbox.db`)));
    // the JSON log lines are the only thing on stdout
    for (const line of a.read().out.split('\n').filter(Boolean)) assert.doesNotThrow(() => JSON.parse(line), `not a JSON log line: ${line}`);

    a.child.kill('SIGINT');
    const timer = setTimeout(() => a.child.kill('SIGKILL'), 60_000);
    const end = await a.exited;
    clearTimeout(timer);
    assert.equal(end.code, 0, `exit after Ctrl-C\n${diag()}`);
    assert.match(end.out, /"msg":"[^"]*[Ss]topped/);
  });
});
