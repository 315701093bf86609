import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent as HttpsAgent, request } from 'node:https';
import { join } from 'node:path';
import { connect, createServer, type ConnectionOptions } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { enroll } from '../../agent/enrollment/enroll.ts';
import { parseAgentConfig } from '../../agent/config/load.ts';
import { isPlantBridgeError } from '../../contracts/index.ts';
import { issueEnrollmentToken } from '../enrollment/enrollment.ts';
import { heartbeatOf, makeTestPki, removeDir, startTestHub, type TestHub, type TestPki } from './test-hub.ts';

/**
 * Issue #22 §4: the hub's listener refuses TLS 1.1 and suites without forward secrecy (an RSA certificate,
 * so RSA key exchange would be possible at all), and with hub.tls.clientCa an agent's routes need a client
 * certificate of that CA naming the agent.
 */

function pkiExtras(pki: TestPki) {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: pki.dir, stdio: 'pipe' });
  const san = 'subjectAltName=IP:127.0.0.1,DNS:localhost';
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rsa.key', '-out', 'rsa.csr', '-subj', '/CN=127.0.0.1', '-addext', san);
  run('x509', '-req', '-in', 'rsa.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'rsa.crt', '-days', '2', '-copy_extensions', 'copy');
  const client = (name: string, ca: 'ca' | 'other', cn: string) => {
    run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    run('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2');
    return { cert: readFileSync(join(pki.dir, `${name}.crt`)), key: readFileSync(join(pki.dir, `${name}.key`)) };
  };
  return { client, rsaCert: join(pki.dir, 'rsa.crt'), rsaKey: join(pki.dir, 'rsa.key'), clientA: client('client-a', 'ca', 'agent-a'), clientB: client('client-b', 'ca', 'agent-b'), foreign: client('client-x', 'other', 'agent-a') };
}

/** a TLS handshake to port with these client options: the negotiated suite, or the error's code */
function handshake(port: number, opts: ConnectionOptions): Promise<{ ok: true; cipher: string; version: string } | { ok: false; code: string }> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ...opts }, () => {
      const r = { ok: true as const, cipher: s.getCipher().name, version: String(s.getProtocol()) };
      s.end();
      resolve(r);
    });
    s.on('error', (err: NodeJS.ErrnoException) => resolve({ ok: false, code: err.code ?? err.message }));
  });
}

void describe('hub TLS: minimum version, forward-secret suites, mutual TLS for agents', () => {
  let pki: TestPki;
  let extra: ReturnType<typeof pkiExtras>;
  let t: TestHub;
  let m: TestHub;
  let tokA: string;
  before(async () => {
    pki = makeTestPki();
    extra = pkiExtras(pki);
    t = await startTestHub({ tls: { cert: extra.rsaCert, key: extra.rsaKey } });
    m = await startTestHub({ tls: { cert: pki.serverCert, key: pki.serverKey, clientCa: pki.caCert } });
    tokA = await m.addAgent('agent-a', ['1010']);
  });
  after(async () => {
    await t?.stop();
    await m?.stop();
    removeDir(pki.dir);
  });

  void it('refuses TLS 1.1 and RSA-key-exchange or CBC/SHA-1 suites; TLS 1.2 with ECDHE + AES-GCM and TLS 1.3 work', async () => {
    const port = Number(new URL(t.url).port);
    // SECLEVEL=0 lets this client offer TLS 1.1 and old suites at all: the refusal is the hub's
    const old = 'DEFAULT:@SECLEVEL=0';
    const tls11 = await handshake(port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: old });
    assert.equal(tls11.ok, false, JSON.stringify(tls11));
    for (const suite of ['AES128-SHA', 'AES128-GCM-SHA256', 'AES256-SHA256', 'ECDHE-RSA-AES128-SHA']) {
      const r = await handshake(port, { maxVersion: 'TLSv1.2', ciphers: `${suite}:@SECLEVEL=0` });
      assert.equal(r.ok, false, `${suite}: ${JSON.stringify(r)}`);
    }
    const fs12 = await handshake(port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' });
    assert.deepEqual(fs12, { ok: true, cipher: 'ECDHE-RSA-AES128-GCM-SHA256', version: 'TLSv1.2' });
    const tls13 = await handshake(port, {});
    assert.equal(tls13.ok && tls13.version, 'TLSv1.3');

    // the control: Node's defaults (what the hub used before) do accept RSA key exchange from this client
    const plain = createServer({ cert: readFileSync(extra.rsaCert), key: readFileSync(extra.rsaKey) }, (s) => s.end());
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    try {
      const r = await handshake((plain.address() as { port: number }).port, { maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA:@SECLEVEL=0' });
      assert.equal(r.ok && r.cipher, 'AES128-SHA', 'the control server negotiates the old suite, so the refusal above is the config');
    } finally {
      plain.close();
    }
  });

  void it('mutual TLS: no client certificate, one of another CA, or one naming another agent is refused (401); the right one is accepted', async () => {
    const ca = readFileSync(pki.caCert);
    const beat = (client?: { cert: Buffer; key: Buffer }) =>
      new Promise<{ status: number; body: any }>((resolve, reject) => {
        const agent = new HttpsAgent({ ca, ...(client ?? {}) });
        const req = request(`${m.url}/v1/heartbeat`, { method: 'POST', agent, headers: { 'content-type': 'application/json', authorization: `Bearer ${tokA}` } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            agent.destroy();
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
          });
        });
        req.on('error', reject);
        req.end(JSON.stringify(heartbeatOf('agent-a', '1010')));
      });
    const none = await beat();
    assert.equal(none.status, 401);
    assert.match(none.body.error.message, /client certificate/);
    const foreign = await beat(extra.foreign);
    assert.equal(foreign.status, 401);
    assert.match(foreign.body.error.message, /not signed by/);
    const other = await beat(extra.clientB);
    assert.equal(other.status, 401);
    assert.match(other.body.error.message, /for agent "agent-b"/);
    const ok = await beat(extra.clientA);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const audit = (await m.hub.store.listAudit(20)).filter((e) => e.action === 'auth.client_certificate_refused');
    assert.equal(audit.length, 3, 'each refusal audited');
  });

  void it("the agent's side: enrollment presents hub.clientCert/clientKey; without them the hub refuses; agent.yaml's relative paths resolve against its folder", async () => {
    const ca = readFileSync(pki.caCert, 'utf8');
    const stateDir = join(pki.dir, 'agent-state');
    const { token: t1 } = await issueEnrollmentToken(m.hub.store, { agentId: 'agent-c', plants: ['1010'], actor: 'test' });
    await assert.rejects(enroll({ hubUrl: m.url, token: t1, stateDir, agentId: 'agent-c', trust: { ca } }), (e) => isPlantBridgeError(e, 'UNAUTHENTICATED') && /client certificate/.test(e.message));
    const clientC = extra.client('client-c', 'ca', 'agent-c');
    const { token: t2 } = await issueEnrollmentToken(m.hub.store, { agentId: 'agent-c', plants: ['1010'], actor: 'test' });
    const r = await enroll({ hubUrl: m.url, token: t2, stateDir, agentId: 'agent-c', trust: { ca, clientCert: clientC.cert.toString(), clientKey: clientC.key.toString() } });
    assert.equal(r.agentId, 'agent-c');

    const { config } = parseAgentConfig(
      `agent: { id: agent-c, plant: "1010", stateDir: ./state }\nhub: { url: "${m.url}", token: "\${T}", ca: ./ca.crt, clientCert: certs/c.crt, clientKey: certs/c.key }\ndrivers: [{ type: simulator, name: sim }]\n`,
      '/etc/plantbridge/agent.yaml',
      { env: { T: 'x'.repeat(20) }, readFile: () => '' },
    );
    assert.deepEqual([config.hub.ca, config.hub.clientCert, config.hub.clientKey], ['/etc/plantbridge/ca.crt', '/etc/plantbridge/certs/c.crt', '/etc/plantbridge/certs/c.key']);
    assert.throws(
      () => parseAgentConfig(`agent: { id: a, plant: "1", stateDir: ./s }\nhub: { url: "${m.url}", token: "\${T}", clientCert: c.crt }\ndrivers: [{ type: simulator, name: sim }]\n`, '/x/agent.yaml', { env: { T: 'x'.repeat(20) }, readFile: () => '' }),
      /clientKey: hub.clientCert and hub.clientKey go together/,
    );
  });
});
