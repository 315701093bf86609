import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { erpMessageCode } from '../contracts/errors.ts';
import { VERSION } from '../contracts/version.ts';
import { startSapSimulator, SAP_SIM_USER } from '../central-hub/erp/sap-odata/sap-simulator.ts';
import { freePort } from './helpers/services.ts';

const root = resolve(import.meta.dirname, '..');
const AGENT = join(root, 'agent', 'cli.ts');
const HUB = join(root, 'central-hub', 'cli.ts');

function run(cli: string, args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('--version, --help and usage errors answer with the documented exit codes', () => {
  for (const cli of [AGENT, HUB]) {
    const v = run(cli, ['--version']);
    assert.equal(v.code, 0);
    assert.equal(v.out.trim(), VERSION);
    const h = run(cli, ['--help']);
    assert.equal(h.code, 0);
    assert.match(h.out, /Usage:/);
    assert.match(h.out, /check-config/);
    const bad = run(cli, ['frobnicate']);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /unknown command "frobnicate"/);
    const none = run(cli, []);
    assert.equal(none.code, 1);
    const badFlag = run(cli, ['--no-such-flag']);
    assert.equal(badFlag.code, 1);
  }
});

const SUBCOMMANDS: [cli: string, prog: string, commands: string[]][] = [
  [AGENT, 'plantbridge-agent', ['run', 'check-config', 'enroll', 'outbox', 'opcua', 'pki', 'rules']],
  [HUB, 'plantbridge-hub', ['serve', 'check-config', 'agents', 'dead-letters']],
];

/** runs the CLIs concurrently (each is a fresh Node): a few at a time */
async function runAll(jobs: [cli: string, args: string[]][]): Promise<{ code: number | null; out: string; err: string }[]> {
  const { execFile } = await import('node:child_process');
  const one = ([cli, args]: [string, string[]]) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      execFile(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000 }, (e, out, err) => resolve({ code: e ? ((e as { code?: number }).code ?? null) : 0, out, err }));
    });
  const results: { code: number | null; out: string; err: string }[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await one(jobs[i]);
    }
  }));
  return results;
}

test('every subcommand of both CLIs: --help and "help <command>" print that command\'s own help', async () => {
  const jobs: [string, string[]][] = [];
  for (const [cli, , commands] of SUBCOMMANDS) for (const c of commands) jobs.push([cli, [c, '--help']], [cli, ['help', c]], [cli, [c, '-h']]);
  const results = await runAll(jobs);
  let i = 0;
  for (const [, prog, commands] of SUBCOMMANDS) {
    for (const c of commands) {
      for (const how of [`${c} --help`, `help ${c}`, `${c} -h`]) {
        const r = results[i++];
        assert.equal(r.code, 0, `${prog} ${how}: ${r.err}`);
        assert.match(r.out, new RegExp(`^(Usage: )?${prog} ${c}\\b`), `${prog} ${how} starts with its own usage`);
        assert.doesNotMatch(r.out, new RegExp(`^${prog} \\d`), `${prog} ${how} is not the top-level help`);
        assert.equal(r.err, '');
      }
    }
  }
});

test('usage errors are one sentence of ours, name the command, and show its help (exit 1)', async () => {
  const cases: [cli: string, args: string[], first: string][] = [
    [AGENT, ['run', '--frob'], 'plantbridge-agent run: unknown option --frob'],
    [AGENT, ['run', '--json'], 'plantbridge-agent run: unknown option --json'],
    [AGENT, ['check-config', '--config'], 'plantbridge-agent check-config: --config needs a value'],
    [AGENT, ['check-config', '--live=yes'], 'plantbridge-agent check-config: --live takes no value'],
    [AGENT, ['outbox', '--limit', '--all'], 'plantbridge-agent outbox: --limit needs a value (one that starts with a dash goes as --limit=VALUE)'],
    [AGENT, ['outbox'], 'plantbridge-agent outbox: a subcommand is needed'],
    [AGENT, ['outbox', 'explode'], 'plantbridge-agent outbox: unknown subcommand "explode"'],
    [AGENT, ['enroll', '-x'], 'plantbridge-agent enroll: unknown option -x'],
    [AGENT, ['opcua'], 'plantbridge-agent opcua: expected browse <opc.tcp://host:port>'],
    [AGENT, ['help', 'frobnicate'], 'plantbridge-agent: no help for "frobnicate": not a command'],
    [AGENT, ['--frob'], 'plantbridge-agent: unknown option --frob'],
    [HUB, ['serve', '--port', '1'], 'plantbridge-hub serve: unknown option --port'],
    [HUB, ['dead-letters', 'list', '--limit'], 'plantbridge-hub dead-letters: --limit needs a value'],
    [HUB, ['dead-letters'], 'plantbridge-hub dead-letters: a subcommand is needed'],
    [HUB, ['agents', 'add', '--plants', 'P1'], 'plantbridge-hub agents: unknown option --plants'],
  ];
  const results = await runAll(cases.map(([cli, args]) => [cli, args]));
  for (const [i, [, args, first]] of cases.entries()) {
    const r = results[i];
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.err}`);
    assert.equal(r.err.split('\n')[0], first);
    assert.doesNotMatch(r.err, /To specify|positional argument|'--/, "no node:util parseArgs text");
    assert.match(r.err, /Usage:/, 'followed by the help');
    assert.equal(r.out, '');
  }
});

test('enroll: --hub is optional (hub.url is used), --token may come from the environment', () => {
  const h = run(AGENT, ['enroll', '--help']);
  assert.equal(h.code, 0);
  assert.match(h.out, /^Usage: plantbridge-agent enroll --token-stdin \| --token TOKEN \[--hub URL\] \[--config FILE\]$/m);
  assert.match(h.out, /--hub URL\s+the hub to enroll with \(default: hub\.url from agent\.yaml\)/);
  assert.match(h.out, /PLANTBRIDGE_ENROLL_TOKEN/);
  const top = run(AGENT, ['--help']);
  assert.match(top.out, /plantbridge-agent enroll --token-stdin \[--hub URL\] \[--config FILE\]/);
  assert.doesNotMatch(top.out, /enroll --hub URL --token/);
});

test("the README's commands from a checkout: npm run agent / hub run the CLIs through package.json's bin files, on the project's Node", () => {
  for (const [script, name] of [['agent', 'plantbridge-agent'], ['hub', 'plantbridge-hub']]) {
    const npm = (args: string[]) => spawnSync('npm', ['run', '-s', script, '--', ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    const v = npm(['--version']);
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stdout.trim(), VERSION);
    const bad = npm(['frobnicate']);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, new RegExp(`${name}: unknown command "frobnicate"`));
  }
  // package.json's bin entries exist and are the files the scripts run
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string>; scripts: Record<string, string> };
  assert.equal(pkg.scripts.agent, `node ${pkg.bin['plantbridge-agent']}`);
  assert.equal(pkg.scripts.hub, `node ${pkg.bin['plantbridge-hub']}`);
  for (const file of Object.values(pkg.bin)) assert.ok(existsSync(join(root, file)), file);
});

test('check-config: 0 for the examples, 1 with every problem named by path', () => {
  const env = { PLANTBRIDGE_AGENT_TOKEN: 't-0123456789abcdef', LINE7_OPCUA_PASSWORD: 'p', CELL3_MQTT_PASSWORD: 'p', PLANTBRIDGE_TOKEN_EDGE_P1010_01: 't', SAP_PASSWORD: 's' };
  const ok = run(AGENT, ['check-config', '--config', join(root, 'config', 'agent.example.yaml')], env);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /valid/);
  const hubOk = run(HUB, ['check-config', '-c', join(root, 'config', 'hub.example.yaml')], env);
  assert.equal(hubOk.code, 0, hubOk.err);

  const dir = mkdtempSync(join(tmpdir(), 'pb-cli-'));
  const broken = join(dir, 'agent.yaml');
  writeFileSync(
    broken,
    `agent: { id: a1, plant: "1010", stateDr: ./x }
hub: { url: "https://hub", token: "\${NOT_SET_ANYWHERE_4711}" }
drivers: [{ type: opcua, name: plc, endpoint: "http://plc7", nodes: [{ ref: good, nodeId: "ns=1;s=G" }] }]
`,
  );
  const bad = run(AGENT, ['check-config', '-c', broken]);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /agent\.stateDr: unknown key \(did you mean "stateDir"\?\)/);
  assert.match(bad.err, /drivers\[0\]\.endpoint: expected opc\.tcp:\/\/host:port, got "http:\/\/plc7"/);
  const missingFile = run(AGENT, ['check-config', '-c', join(dir, 'nope.yaml')]);
  assert.equal(missingFile.code, 1);
  assert.match(missingFile.err, /cannot read .*nope\.yaml: ENOENT/);
  writeFileSync(broken, `agent: { id: a1, plant: "1010" }\nhub: { url: "https://hub", token: "\${NOT_SET_ANYWHERE_4711}" }\ndrivers: [{ type: simulator, name: sim }]\n`);
  const missingSecret = run(AGENT, ['check-config', '-c', broken]);
  assert.equal(missingSecret.code, 1);
  assert.match(missingSecret.err, /hub\.token: environment variable NOT_SET_ANYWHERE_4711 is not set/);
  assert.ok(missingSecret.err.startsWith(`plantbridge-agent: ${broken}: invalid configuration\n`), 'the header names the file');
});

test('secrets never reach any output: hub and agent run with canary secrets, failing auth on purpose, at trace level', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pb-canary-'));
  const canary = {
    AGENT_TOKEN: 'CANARY-agent-token-7f3a9c1e5b',
    WRONG_TOKEN: 'CANARY-wrong-token-2d8e4f6a0c',
    SAP_PASSWORD: 'CANARY-sap-password-9b1d3f5h7j',
  };
  const sap = await startSapSimulator();
  try {
    const port = await freePort();
    writeFileSync(
      join(dir, 'hub.yaml'),
      `hub: { port: ${port}, dataDir: ${join(dir, 'hub')} }
log: { level: trace }
agents: [{ id: canary-edge, plants: ["1010"], token: "\${AGENT_TOKEN}" }]
erp: { type: sap-odata, url: "${sap.url}", auth: { type: basic, username: ${SAP_SIM_USER.username}, password: "\${SAP_PASSWORD}" }, timeout: 2s }
`,
    );
    const agentYaml = (token: string, name: string) => `agent: { id: canary-edge, plant: "1010", stateDir: ${join(dir, name)} }
log: { level: trace }
status: { port: 0 }
hub: { url: "http://127.0.0.1:${port}", token: "\${${token}}", heartbeatInterval: 200ms }
drivers: [{ type: simulator, name: sim, interval: 50ms, partsPerTick: 10, orderSize: 1000 }]
rules: [{ id: r, type: count-production, workCenter: WC, counter: { source: sim, ref: good }, activeOrder: { source: sim, ref: order }, emitEvery: { parts: 20 } }]
`;
    writeFileSync(join(dir, 'agent.yaml'), agentYaml('AGENT_TOKEN', 'a'));
    writeFileSync(join(dir, 'agent-wrong.yaml'), agentYaml('WRONG_TOKEN', 'b'));
    const env = { ...process.env, ...canary };
    const outputs: string[] = [];
    const start = (args: string[]) => {
      const p = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
      p.stdout.on('data', (d) => outputs.push(String(d)));
      p.stderr.on('data', (d) => outputs.push(String(d)));
      return { p, exited: new Promise<number | null>((r) => p.once('exit', (code) => r(code))) };
    };
    const hub = start([HUB, 'serve', '-c', join(dir, 'hub.yaml')]);
    await new Promise((r) => setTimeout(r, 1500));
    // the SAP simulator refuses the canary password: the hub logs ERP auth failures
    const agent = start([AGENT, 'run', '-c', join(dir, 'agent.yaml')]);
    const wrong = start([AGENT, 'run', '-c', join(dir, 'agent-wrong.yaml')]);
    await new Promise((r) => setTimeout(r, 4000));
    for (const x of [agent, wrong, hub]) x.p.kill('SIGTERM');
    const codes = await Promise.all([agent.exited, wrong.exited, hub.exited]);
    assert.deepEqual(codes, [0, 0, 0], 'SIGTERM stops each process gracefully with exit code 0');
    const all = outputs.join('');
    assert.ok(all.length > 1000, 'the processes did log (trace level)');
    assert.match(all, /UNAUTHENTICATED|401|refused this agent/, 'the wrong token was refused and said so');
    for (const [name, value] of Object.entries(canary)) assert.ok(!all.includes(value), `${name} leaked into the output`);
    for (const [name, value] of Object.entries(canary)) assert.ok(!all.includes(Buffer.from(value).toString('base64')), `${name} leaked base64-encoded`);
    assert.ok(!all.includes(Buffer.from(`${SAP_SIM_USER.username}:${canary.SAP_PASSWORD}`).toString('base64')), 'the basic auth header leaked');
  } finally {
    await sap.stop();
  }
});

test('hub dead-letters list | show | replay | discard work on the store and are audited', async () => {
  const { SqliteHubStore } = await import('../central-hub/store/sqlite/sqlite-store.ts');
  const { confirmation } = await import('../central-hub/erp/test-kit/transactions.ts');
  const dir = mkdtempSync(join(tmpdir(), 'pb-dl-'));
  const store = new SqliteHubStore(join(dir, 'hub', 'hub.db'));
  const a = confirmation('5000001', 0);
  const b = confirmation('5000002', 0);
  await store.ingest('test-agent', [a, b], new Date());
  for (const job of await store.claimPostings(10, 60_000, 'seed')) {
    await store.completePosting(job.seq, 'seed', { kind: 'failed', code: 'ERP_BUSINESS', message: 'Order closed', erpCode: erpMessageCode('RU/494') });
  }
  await store.close();
  writeFileSync(join(dir, 'hub.yaml'), `hub: { dataDir: ${join(dir, 'hub')} }\nerp: { type: sap-odata, url: "https://s4.example.com", auth: { type: basic, username: U, password: "\${X_SAP}" } }\n`);
  const env = { X_SAP: 'x' };
  const cfg = ['-c', join(dir, 'hub.yaml')];
  const list = run(HUB, ['dead-letters', 'list', ...cfg], env);
  assert.equal(list.code, 0, list.err);
  assert.match(list.out, /RU\/494: Order closed/);
  const seqs = [...list.out.matchAll(/^(\d+)\t/gm)].map((m) => m[1]);
  assert.equal(seqs.length, 2);
  const show = run(HUB, ['dead-letters', 'show', a.idempotencyKey, ...cfg], env);
  assert.equal(show.code, 0);
  assert.equal(JSON.parse(show.out).body.idempotencyKey, a.idempotencyKey);
  const noReason = run(HUB, ['dead-letters', 'discard', seqs[0], ...cfg], env);
  assert.equal(noReason.code, 1);
  assert.match(noReason.err, /--reason/);
  assert.equal(run(HUB, ['dead-letters', 'discard', seqs[0], '--reason', 'posted by hand in MIGO', ...cfg], env).code, 0);
  assert.equal(run(HUB, ['dead-letters', 'replay', seqs[1], ...cfg], env).code, 0);
  assert.equal(run(HUB, ['dead-letters', 'replay', seqs[1], ...cfg], env).code, 1, 'already queued again');
  const check = new SqliteHubStore(join(dir, 'hub', 'hub.db'));
  const audit = await check.listAudit(10);
  await check.close();
  assert.deepEqual(audit.map((e) => e.action).sort(), ['dead-letter.discard', 'dead-letter.replay']);
  assert.ok(audit.every((e) => e.actor.startsWith('cli:')));
});

test('opcua browse and --emit-config through the CLI against a real server; pki trust refuses a bad thumbprint', async () => {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const { startLineServer } = await import('./plant-sim/opcua-line-server.ts');
  const exec = promisify(execFile);
  const plc = await startLineServer({ params: { intervalMs: 1000, partsPerTick: 5, scrapEvery: 20, orderSize: 300, firstOrder: 1000100, operation: '0010', counterBits: 32 } });
  const stateDir = mkdtempSync(join(tmpdir(), 'pb-browse-'));
  try {
    const tree = await exec(process.execPath, [AGENT, 'opcua', 'browse', plc.endpoint, '--node', 'ns=1;s=Line1', '--depth', '1', '--state-dir', stateDir]);
    assert.match(tree.stdout, /GoodCount\s+ns=1;s=Line1\.GoodCount\s+Variable\s+UInt32/);
    assert.match(tree.stdout, /OrderNumber\s+ns=1;s=Line1\.OrderNumber\s+Variable\s+String/);
    const fragment = await exec(process.execPath, [AGENT, 'opcua', 'browse', plc.endpoint, '--node', 'ns=1;s=Line1', '--emit-config', '--state-dir', stateDir]);
    assert.match(fragment.stdout, /type: opcua/);
    assert.match(fragment.stdout, /nodeId: "ns=1;s=Line1\.ScrapCount"/);
    const half = await exec(process.execPath, [AGENT, 'opcua', 'browse', plc.endpoint, '--security-mode', 'Sign']).catch((e: { code: number; stderr: string }) => e);
    assert.equal((half as { code: number }).code, 1, 'mode without policy is a usage error');
  } finally {
    await plc.stop();
  }
  const dir = mkdtempSync(join(tmpdir(), 'pb-pki-'));
  writeFileSync(join(dir, 'agent.yaml'), `agent: { id: a1, plant: "1010", stateDir: ${join(dir, 'state')} }\nhub: { url: "https://hub", token: "\${T}" }\ndrivers: [{ type: simulator, name: sim }]\n`);
  const bad = run(AGENT, ['pki', 'trust', 'not-a-thumbprint', '-c', join(dir, 'agent.yaml')], { T: 'x' });
  assert.equal(bad.code, 1);
  assert.match(bad.err, /thumbprint/);
});

test('check-config --live asks the hub, read-only, whether it accepts the credential: 0 when it does, 2 when it refuses', async () => {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const { parseHubConfig } = await import('../central-hub/config/load.ts');
  const { buildHub } = await import('../central-hub/build-hub.ts');
  const { testLogger } = await import('./helpers/log.ts');
  const exec = promisify(execFile);
  const dir = mkdtempSync(join(tmpdir(), 'pb-live-'));
  const good = 'live-check-token-0123456789';
  const hub = buildHub({
    config: parseHubConfig(
      `hub: { port: 0, dataDir: ${join(dir, 'hub')} }\nagents: [{ id: live-1, plants: ["1010"], token: "\${T}" }]\nerp: { type: sap-odata, url: "http://127.0.0.1:9", auth: { type: basic, username: U, password: "\${T}" } }\n`,
      join(dir, 'hub.yaml'),
      { env: { T: good }, readFile: () => '' },
    ).config,
    log: testLogger(),
  });
  await hub.start();
  try {
    writeFileSync(join(dir, 'agent.yaml'), `agent: { id: live-1, plant: "1010", stateDir: ${join(dir, 'state')} }\nhub: { url: "${hub.url}", token: "\${AGENT_T}" }\ndrivers: [{ type: simulator, name: sim }]\n`);
    const ok = await exec(process.execPath, [AGENT, 'check-config', '--live', '-c', join(dir, 'agent.yaml')], { env: { ...process.env, AGENT_T: good } });
    assert.match(ok.stdout, /sim \(simulator\): nothing to connect to/);
    assert.match(ok.stdout, /hub .*: ok — reachable, certificate trusted, credential accepted/);
    assert.match(ok.stdout, /live checks passed/);
    const refused = await exec(process.execPath, [AGENT, 'check-config', '--live', '-c', join(dir, 'agent.yaml')], { env: { ...process.env, AGENT_T: 'not-the-right-token-000000' } }).catch(
      (e: { code: number; stdout: string }) => e,
    );
    assert.equal((refused as { code: number }).code, 2);
    assert.match((refused as { stdout: string }).stdout, /hub .*: FAILED — hub answered 401 UNAUTHENTICATED: the credential is refused/);
    assert.equal((await hub.store.counts()).queued, 0, 'nothing was written');
  } finally {
    await hub.stop();
  }
});

test('hub serve: a posting summary line and "Stopped" at the end, at info', async () => {
  const { schemaId, ulid } = await import('../contracts/index.ts');
  const { testTx } = await import('../central-hub/store/test-tx.ts');
  const dir = mkdtempSync(join(tmpdir(), 'pb-hub-summary-'));
  const sap = await startSapSimulator();
  try {
    const port = await freePort();
    const token = 'summary-test-token-0123456789';
    writeFileSync(
      join(dir, 'hub.yaml'),
      `hub: { port: ${port}, dataDir: ${join(dir, 'hub')} }\nagents: [{ id: summary-edge, plants: ["P1"], token: "\${T}" }]\nerp: { type: sap-odata, url: "${sap.url}", auth: { type: basic, username: ${SAP_SIM_USER.username}, password: "\${SAP}" }, timeout: 2s }\n`,
    );
    let out = '';
    const p = spawn(process.execPath, [HUB, 'serve', '-c', join(dir, 'hub.yaml')], { env: { ...process.env, T: token, SAP: SAP_SIM_USER.password }, stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout.on('data', (d) => (out += String(d)));
    p.stderr.on('data', (d) => (out += String(d)));
    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    const until = async (what: string, ok: () => boolean | Promise<boolean>) => {
      for (let i = 0; i < 300 && !(await ok()); i++) await new Promise((r) => setTimeout(r, 100));
      assert.ok(await ok(), `${what}\n${out}`);
    };
    await until('listening', () => /listening/i.test(out));
    const items = [testTx({ agentId: 'summary-edge', order: '1000001' }), testTx({ agentId: 'summary-edge', order: '1000002' })];
    const res = await fetch(`http://127.0.0.1:${port}/v1/ingest`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ schema: schemaId('ingest-batch', 1, 0), batchId: ulid(), agentId: 'summary-edge', sentAt: new Date().toISOString(), items }),
    });
    assert.equal(res.status, 200, await res.text());
    await until('both posted', () => sap.confirmations().length === 2);
    p.kill('SIGTERM');
    assert.equal(await exited, 0, out);
    const lines = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number; msg: string; posted?: number });
    const summary = lines.find((l) => l.msg.startsWith('Posting in the last'));
    assert.ok(summary, out);
    assert.equal(summary.level, 30);
    assert.equal(summary.posted, 2);
    assert.match(summary.msg, /: 2 posted to the ERP$/);
    assert.equal(lines.at(-1)?.msg, 'Stopped');
    assert.equal(lines.at(-1)?.level, 30);
  } finally {
    await sap.stop();
  }
});

test("the executables' help points at the files that ship with them, per platform", async () => {
  const { docsLine } = await import('../contracts/cli-kit.ts');
  assert.equal(docsLine('agent', false), 'Docs: README.md, docs/INSTALL.md, config/agent.example.yaml');
  assert.equal(docsLine('agent', true, 'win32'), 'Docs: INSTALL.md and agent.example.yaml beside this executable in its release folder\n(install.ps1 copies agent.example.yaml to %ProgramData%\\PlantBridge\\agent\\config\\).');
  assert.equal(docsLine('hub', true, 'linux'), 'Docs: INSTALL.md and hub.example.yaml beside this executable in its release folder\n(the .deb puts them in /usr/share/doc/plantbridge-hub/).');
  // and from a checkout, those files exist
  for (const f of ['README.md', 'docs/INSTALL.md', 'config/agent.example.yaml', 'config/hub.example.yaml']) assert.ok(existsSync(join(root, f)), f);
});
