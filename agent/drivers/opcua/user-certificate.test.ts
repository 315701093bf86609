import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { DataType, OPCUACertificateManager, Variant } from 'node-opcua';
import { resolveSecrets } from '../../../contracts/index.ts';
import { classifyLoginError, LoginError } from './client.ts';
import { create } from './opcua-driver.ts';
import { thumbprintOf, trustCertificate } from './pki.ts';
import { opcuaConfig, testCtx, waitFor } from './test-kit.ts';
import { makeUserCertificate, startTestServer, type UserCertificate } from './test-server.ts';

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A server that accepts only X.509 user tokens, checked against its own user PKI. */
async function x509Server() {
  const userPki = mkdtempSync(join(tmpdir(), 'pb-opcua-userpki-'));
  const userCertificateManager = new OPCUACertificateManager({ rootFolder: userPki, automaticallyAcceptUnknownCertificate: false, disableFileWatchers: true });
  await userCertificateManager.initialize();
  let ticks = 0;
  const srv = await startTestServer({
    securityModes: ['SignAndEncrypt'],
    allowAnonymous: false,
    userTokenTypes: ['Certificate'],
    userCertificateManager,
    populate(ns, addressSpace) {
      ns.addVariable({
        organizedBy: addressSpace.rootFolder.objects,
        browseName: 'Ticks',
        nodeId: 's=Ticks',
        dataType: 'UInt32',
        minimumSamplingInterval: 20,
        value: { get: () => new Variant({ dataType: DataType.UInt32, value: ticks++ }) },
      });
    },
  });
  cleanups.push(async () => {
    await srv.stop();
    await userCertificateManager.dispose();
    rmSync(userPki, { recursive: true, force: true });
  });
  return { srv, userCertificateManager };
}

function x509Config(endpoint: string, user: UserCertificate) {
  return resolveSecrets(
    opcuaConfig({
      endpoint,
      securityMode: 'SignAndEncrypt',
      securityPolicy: 'Basic256Sha256',
      allowInsecure: false,
      reconnectMaxDelay: 300,
      user: { type: 'certificate', certificate: user.certificateFile, privateKey: `file:${user.privateKeyFile}` },
      nodes: [{ ref: 'ticks', nodeId: 'ns=1;s=Ticks', samplingInterval: 50 }],
    }),
    { env: {}, readFile: (p) => readFileSync(p, 'utf8') },
  );
}

void describe('opcua driver X.509 user identity', () => {
  void test('a trusted user certificate logs in and values flow', async () => {
    const { srv, userCertificateManager } = await x509Server();
    const t = testCtx();
    cleanups.push(() => t.close());
    trustCertificate(t.stateDir, srv.server.getCertificate(), 'test-server');
    const user = await makeUserCertificate(join(t.stateDir, 'user'), 'line1-operator');
    await userCertificateManager.trustCertificate(user.der);

    const driver = create(x509Config(srv.endpoint, user), t.ctx);
    await driver.start();
    cleanups.push(() => driver.stop());
    await waitFor('values with an X.509 login', () => t.committed.filter((s) => s.ref === 'ticks' && s.quality === 'good').length >= 3);
    assert.equal(driver.health().state, 'up');
    const sessions = srv.server.engine.getSessions();
    assert.equal(sessions.length, 1);
    const token = sessions[0].userIdentityToken as { constructor: { name: string }; certificateData?: Buffer };
    assert.equal(token.constructor.name, 'X509IdentityToken');
    assert.equal(thumbprintOf(token.certificateData!), thumbprintOf(user.der), 'the session runs as our user certificate');
    await driver.stop();
    assert.equal(srv.sessionCount(), 0);
  });

  void test('an untrusted user certificate is named in health and retried with backoff; trusting it on the server lets the next attempt in', async () => {
    const { srv, userCertificateManager } = await x509Server();
    const t = testCtx();
    cleanups.push(() => t.close());
    trustCertificate(t.stateDir, srv.server.getCertificate(), 'test-server');
    const user = await makeUserCertificate(join(t.stateDir, 'user'), 'stranger');
    const logs: string[] = [];
    const { pino } = await import('pino');
    t.ctx.log = pino({ level: 'info' }, { write: (line: string) => void logs.push(line) });

    const driver = create(x509Config(srv.endpoint, user), t.ctx);
    await driver.start();
    cleanups.push(() => driver.stop());
    await waitFor('three refused attempts', () => driver.stats().connectFailures >= 3);
    const h = driver.health();
    assert.equal(h.state, 'starting', 'never connected: still starting, not crashed');
    assert.match(h.message ?? '', /refused our X\.509 user certificate [^(]*CN=stranger/);
    assert.match(h.message ?? '', /BadIdentityTokenRejected/);
    assert.ok(h.message?.includes(thumbprintOf(user.der)), 'names the certificate by thumbprint');
    assert.match(h.message ?? '', /The server must trust it for user logins .*; retrying$/);
    const refusals = logs.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level >= 40 && /refused our X\.509 user certificate/.test(l.msg));
    assert.equal(refusals.length, 1, 'logged once, not on every attempt');
    assert.equal(refusals[0].level, 50, 'an error: someone must trust the certificate on the server');
    assert.equal(t.committed.length, 0);
    assert.ok(srv.sessionCount() <= 1, `refused attempts leave no sessions behind (${srv.sessionCount()})`);

    // the server's administrator trusts the user certificate: the next attempt gets in, no restart
    await userCertificateManager.trustCertificate(user.der);
    await waitFor('values after trusting the user certificate', () => t.committed.some((s) => s.ref === 'ticks' && s.quality === 'good'));
    assert.equal(driver.health().state, 'up');
    assert.equal(srv.sessionCount(), 1);
    await driver.stop();
  });

  void test('a refusal names an expired user certificate as expired', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-opcua-user-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const user = await makeUserCertificate(dir, 'old-operator', new Date(Date.now() - 10 * 86_400_000), 2);
    const err = classifyLoginError(new Error('BadIdentityTokenRejected (0x80210000)'), x509Config('opc.tcp://plc:4840', user).user, 'opc.tcp://plc:4840');
    assert.ok(err instanceof LoginError);
    assert.equal(err.status, 'BadIdentityTokenRejected');
    assert.match(err.message, /refused our X\.509 user certificate [^(]*CN=old-operator \(thumbprint [0-9a-f]{40}, .*user\.pem\): BadIdentityTokenRejected\. The certificate expired on \d{4}-/);
    // not a login problem: left as it is
    const other = new Error('BadTooManySessions');
    assert.equal(classifyLoginError(other, x509Config('opc.tcp://plc:4840', user).user, 'opc.tcp://plc:4840'), other);
  });
});
