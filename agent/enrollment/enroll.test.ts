import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isPlantBridgeError, schemaId, ulid } from '../../contracts/index.ts';
import { agentsCommand } from '../../central-hub/enrollment/agents-cli.ts';
import { makeTestPki, removeDir, startTestHub, type TestHub, type TestPki } from '../../central-hub/api/test-hub.ts';
import { testTx } from '../../central-hub/store/test-tx.ts';
import { credentialPath, enroll, enrollCommand } from './enroll.ts';

function capture() {
  let out = '';
  let err = '';
  return { io: { out: (s: string) => void (out += s), err: (s: string) => void (err += s) }, get out() { return out; }, get err() { return err; } };
}

const ingestWith = (url: string, credential: string, agentId: string) =>
  fetch(`${url}/v1/ingest`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${credential}` },
    body: JSON.stringify({ schema: schemaId('ingest-batch', 1, 0), batchId: ulid(), agentId, sentAt: new Date().toISOString(), items: [testTx({ agentId })] }),
  });

async function addToken(t: TestHub, name: string, plants: string[], extra: string[] = [], now?: Date, sub: 'add' | 'rotate' = 'add'): Promise<string> {
  const c = capture();
  const code = await agentsCommand(undefined as never, [sub, '--name', name, ...plants.flatMap((p) => ['--plant', p]), ...extra], { ...c.io, store: t.hub.store, ...(now ? { now } : {}) });
  assert.equal(code, 0, c.err);
  const m = /\n {2}(pbe_[A-Za-z0-9_-]+)\n/.exec(c.out);
  assert.ok(m, c.out);
  // the hint keeps the token out of argv (issue #22)
  assert.match(c.out, /enroll --hub https:\/\/<this hub> --token-stdin/);
  assert.match(c.out, /PLANTBRIDGE_ENROLL_TOKEN/);
  assert.ok(!c.out.includes(`--token ${m[1]}`), 'the hint does not put the token on a command line');
  return m[1];
}

void describe('enrollment: one-time tokens -> credential in the state dir (hub on port 0)', () => {
  let t: TestHub;
  let dir: string;
  before(async () => {
    t = await startTestHub();
    dir = mkdtempSync(join(tmpdir(), 'pb-agent-enroll-'));
  });
  after(async () => {
    await t.stop();
    removeDir(t.dir);
    removeDir(dir);
  });

  void it('add -> enroll -> the stored credential works; the token cannot be reused', async () => {
    const token = await addToken(t, 'line-server-1', ['P1']);
    const stateDir = join(dir, 'a1');
    const r = await enroll({ hubUrl: t.url, token, stateDir, agentId: 'line-server-1' });
    assert.equal(r.agentId, 'line-server-1');
    assert.deepEqual(r.plants, ['P1']);
    const cred = readFileSync(credentialPath(stateDir), 'utf8').trim();
    assert.equal(cred, r.credential);
    if (process.platform !== 'win32') assert.equal(statSync(credentialPath(stateDir)).mode & 0o777, 0o600);
    assert.equal((await ingestWith(t.url, cred, 'line-server-1')).status, 200);
    // the hub keeps hashes only
    const audit = JSON.stringify(await t.hub.store.listAudit(50));
    assert.ok(!audit.includes(token) && !audit.includes(cred));
    await assert.rejects(enroll({ hubUrl: t.url, token, stateDir: join(dir, 'a1b') }), (e) => isPlantBridgeError(e, 'UNAUTHENTICATED') && /already used/.test(e.message));
  });

  void it('an expired token is refused with 401', async () => {
    const token = await addToken(t, 'line-server-2', ['P1'], ['--ttl', '1h'], new Date(Date.now() - 2 * 3600_000));
    await assert.rejects(enroll({ hubUrl: t.url, token, stateDir: join(dir, 'a2') }), (e) => isPlantBridgeError(e, 'UNAUTHENTICATED') && /expired/.test(e.message));
    const raw = await fetch(`${t.url}/v1/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ schema: schemaId('enroll-request', 1, 0), token }) });
    assert.equal(raw.status, 401);
  });

  void it('a token for another agent id is refused and spent', async () => {
    const token = await addToken(t, 'line-server-3', ['P1']);
    await assert.rejects(enroll({ hubUrl: t.url, token, stateDir: join(dir, 'a3'), agentId: 'someone-else' }), (e) => isPlantBridgeError(e, 'UNAUTHENTICATED') && /issued for agent "line-server-3"/.test(e.message));
  });

  void it('rotate: the old credential works until the new one is enrolled; revoke stops it at once', async () => {
    const t1 = await addToken(t, 'line-server-4', ['P1', 'P2']);
    const first = await enroll({ hubUrl: t.url, token: t1, stateDir: join(dir, 'a4') });
    const c = capture();
    assert.equal(await agentsCommand(undefined as never, ['add', '--name', 'line-server-4', '--plant', 'P1'], { ...c.io, store: t.hub.store }), 1);
    assert.match(c.err, /use "agents rotate/);
    const c2 = capture();
    assert.equal(await agentsCommand(undefined as never, ['rotate', '--name', 'line-server-4'], { ...c2.io, store: t.hub.store }), 0);
    const t2 = /\n {2}(pbe_[A-Za-z0-9_-]+)\n/.exec(c2.out)![1];
    assert.equal((await ingestWith(t.url, first.credential, 'line-server-4')).status, 200);
    const second = await enroll({ hubUrl: t.url, token: t2, stateDir: join(dir, 'a4') });
    assert.deepEqual(second.plants, ['P1', 'P2']);
    assert.equal((await ingestWith(t.url, first.credential, 'line-server-4')).status, 401);
    assert.equal((await ingestWith(t.url, second.credential, 'line-server-4')).status, 200);
    const c3 = capture();
    assert.equal(await agentsCommand(undefined as never, ['revoke', '--name', 'line-server-4'], { ...c3.io, store: t.hub.store }), 0);
    assert.equal((await ingestWith(t.url, second.credential, 'line-server-4')).status, 401);
    const c4 = capture();
    assert.equal(await agentsCommand(undefined as never, ['list'], { ...c4.io, store: t.hub.store }), 0);
    assert.match(c4.out, /line-server-4\s+P1,P2\s+revoked/);
    assert.match(c4.out, /line-server-1\s+P1\s+enrolled/);
    const actions = (await t.hub.store.listAudit(100)).map((e) => e.action);
    assert.ok(actions.includes('agent.revoked') && actions.includes('agent.enrolled') && actions.includes('agent.enrollment_refused'));
  });

  void it('the enroll command reads agent.yaml, stores the credential and says how to reference it', async () => {
    const token = await addToken(t, 'edge-cli', ['P1']);
    const cfgDir = join(dir, 'cli');
    const file = join(dir, 'agent.yaml');
    writeFileSync(
      file,
      `agent:\n  id: edge-cli\n  plant: P1\n  stateDir: ${cfgDir}\nhub:\n  url: ${t.url}\n  token: file:${cfgDir}/hub-credential\ndrivers:\n  - name: sim\n    type: simulator\n`,
    );
    const c = capture();
    const code = await enrollCommand(file, ['--token', token], c.io);
    assert.equal(code, 0, c.err);
    assert.match(c.out, /Enrolled as agent edge-cli for plant\(s\) P1/);
    assert.doesNotMatch(c.out, /Set this in/);
    const again = capture();
    assert.equal(await enrollCommand(file, ['--token', token], again.io), 1);
    assert.match(again.err, /UNAUTHENTICATED: .*already used/);

    // --token-stdin: the token comes from standard input, never from argv (issue #22)
    const token2 = await addToken(t, 'edge-cli', ['P1'], [], undefined, 'rotate');
    const viaStdin = capture();
    assert.equal(await enrollCommand(file, ['--token-stdin'], { ...viaStdin.io, stdin: async () => `${token2}\n` }), 0, viaStdin.err);
    assert.match(viaStdin.out, /Enrolled as agent edge-cli/);
    const both = capture();
    assert.equal(await enrollCommand(file, ['--token-stdin', '--token', token2], both.io), 1);
    assert.match(both.err, /give the token once/);
  });
});

void describe('TLS: the agent verifies the hub against hub.ca or a pinned fingerprint', () => {
  let pki: TestPki;
  let t: TestHub;
  let selfSigned: TestHub;
  let dir: string;
  before(async () => {
    pki = makeTestPki();
    t = await startTestHub({ tls: { cert: pki.serverCert, key: pki.serverKey } });
    selfSigned = await startTestHub({ tls: { cert: pki.selfSignedCert, key: pki.selfSignedKey } });
    dir = mkdtempSync(join(tmpdir(), 'pb-agent-tls-'));
  });
  after(async () => {
    await t.stop();
    await selfSigned.stop();
    for (const d of [t.dir, selfSigned.dir, pki.dir, dir]) removeDir(d);
  });

  void it('the right CA works; a wrong CA is refused, saying why, and the token stays unused', async () => {
    assert.match(t.url, /^https:/);
    const token = await addToken(t, 'tls-1', ['P1']);
    await assert.rejects(
      enroll({ hubUrl: t.url, token, stateDir: join(dir, 'x'), trust: { ca: readFileSync(pki.otherCaCert, 'utf8') } }),
      (e) => isPlantBridgeError(e) && /not signed by the CA in hub\.ca/.test(e.message),
    );
    await assert.rejects(enroll({ hubUrl: t.url, token, stateDir: join(dir, 'x') }), (e) => isPlantBridgeError(e) && /not trusted by this system/.test(e.message));
    const r = await enroll({ hubUrl: t.url, token, stateDir: join(dir, 'x'), trust: { ca: readFileSync(pki.caCert, 'utf8') } });
    assert.equal(r.agentId, 'tls-1');
  });

  void it('a pinned fingerprint accepts exactly that certificate (self-signed too), and nothing else', async () => {
    const token = await addToken(selfSigned, 'tls-2', ['P1']);
    await assert.rejects(
      enroll({ hubUrl: selfSigned.url, token, stateDir: join(dir, 'y'), trust: { fingerprint: pki.serverFingerprint } }),
      (e) => isPlantBridgeError(e) && /not the pinned one/.test(e.message),
    );
    const r = await enroll({ hubUrl: selfSigned.url, token, stateDir: join(dir, 'y'), trust: { fingerprint: pki.selfSignedFingerprint.replace(/:/g, '').toLowerCase() } });
    assert.equal(r.agentId, 'tls-2');
  });

  void it('plain http to another machine is refused before anything is sent', async () => {
    await assert.rejects(enroll({ hubUrl: 'http://hub.example.com:8080', token: 'pbe_xxxxxxxxxxxxxxxxxxxx', stateDir: join(dir, 'z') }), (e) => isPlantBridgeError(e, 'CONFIG_INVALID'));
  });
});
