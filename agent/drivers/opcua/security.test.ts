import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { resolveSecrets } from '../../../contracts/index.ts';
import { startLineServer } from '../../../test/plant-sim/opcua-line-server.ts';
import { create } from './opcua-driver.ts';
import { pkiTrust, trustCertificate } from './pki.ts';
import { fastLine, opcuaConfig, testCtx, waitFor } from './test-kit.ts';

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const users = [{ username: 'operator', password: 'line-1-secret' }];

function secureConfig(endpoint: string, nodeId: string, securityPolicy: string, extra: Record<string, unknown> = {}) {
  const parsed = opcuaConfig({
    endpoint,
    securityMode: 'SignAndEncrypt',
    securityPolicy,
    allowInsecure: false,
    user: { type: 'username', username: 'operator', password: '${PB_TEST_OPCUA_PASSWORD}' },
    nodes: [{ ref: 'good', nodeId, samplingInterval: 50 }],
    ...extra,
  });
  return resolveSecrets(parsed, { env: { PB_TEST_OPCUA_PASSWORD: 'line-1-secret' }, readFile: () => '' });
}

void describe('opcua driver security', () => {
  void test('SignAndEncrypt with each policy and a user login (and Sign)', async () => {
    const srv = await startLineServer({ params: fastLine, users, allowAnonymous: false, securityModes: ['Sign', 'SignAndEncrypt'] });
    cleanups.push(() => srv.stop());
    const t = testCtx();
    cleanups.push(() => t.close());
    trustCertificate(t.stateDir, srv.server.getCertificate(), 'plant-sim');
    const runs: Array<[string, string]> = [
      ['SignAndEncrypt', 'Basic256Sha256'],
      ['SignAndEncrypt', 'Aes128_Sha256_RsaOaep'],
      ['SignAndEncrypt', 'Aes256_Sha256_RsaPss'],
      ['Sign', 'Basic256Sha256'],
    ];
    for (const [mode, policy] of runs) {
      const n = t.committed.length;
      const driver = create(secureConfig(srv.endpoint, srv.nodeIds.good, policy, { securityMode: mode }), t.ctx);
      await driver.start();
      await waitFor(`values over ${mode}/${policy}`, () => t.committed.length >= n + 2);
      assert.equal(driver.health().state, 'up', policy);
      const session = srv.server.engine.getSessions()[0];
      assert.equal(session.channel?.securityPolicy, `http://opcfoundation.org/UA/SecurityPolicy#${policy}`);
      assert.equal(session.channel?.securityMode, mode === 'Sign' ? 2 : 3);
      assert.equal(session.userIdentityToken?.constructor.name, 'UserNameIdentityToken');
      await driver.stop();
    }
    // the app certificate was created on first start in our PKI folder
    assert.ok(existsSync(join(t.stateDir, 'pki', 'own', 'certs', 'client_certificate.pem')));
  });

  void test('a wrong password is an error the driver reports and retries, never a crash', async () => {
    const srv = await startLineServer({ params: fastLine, users, allowAnonymous: false, securityModes: ['SignAndEncrypt'] });
    cleanups.push(() => srv.stop());
    const t = testCtx();
    cleanups.push(() => t.close());
    trustCertificate(t.stateDir, srv.server.getCertificate(), 'plant-sim');
    const cfg = resolveSecrets(
      opcuaConfig({
        endpoint: srv.endpoint,
        securityMode: 'SignAndEncrypt',
        securityPolicy: 'Basic256Sha256',
        allowInsecure: false,
        user: { type: 'username', username: 'operator', password: '${PW}' },
        nodes: [{ ref: 'good', nodeId: srv.nodeIds.good }],
      }),
      { env: { PW: 'wrong' }, readFile: () => '' },
    );
    const driver = create(cfg, t.ctx);
    await driver.start();
    await waitFor('failure visible in health', () => /BadUserAccessDenied|BadIdentityToken/.test(driver.health().message ?? ''));
    assert.equal(driver.health().state, 'starting');
    assert.equal(t.committed.length, 0);
    await driver.stop();
    assert.equal(srv.sessionCount(), 0, 'no half-made session is left behind');
  });

  void test('an untrusted server certificate is refused, lands in rejected/, and `pki trust` lets the next attempt in', async () => {
    const srv = await startLineServer({ params: fastLine, securityModes: ['SignAndEncrypt'] });
    cleanups.push(() => srv.stop());
    const t = testCtx();
    cleanups.push(() => t.close());
    const logs: string[] = [];
    const { pino } = await import('pino');
    t.ctx.log = pino({ level: 'info' }, { write: (line: string) => void logs.push(line) });
    const driver = create(
      opcuaConfig({ endpoint: srv.endpoint, securityMode: 'SignAndEncrypt', securityPolicy: 'Basic256Sha256', allowInsecure: false, reconnectMaxDelay: 200, nodes: [{ ref: 'good', nodeId: srv.nodeIds.good }] }),
      t.ctx,
    );
    await driver.start();
    cleanups.push(() => driver.stop());
    const rejected = join(t.stateDir, 'pki', 'rejected');
    await waitFor('certificate in rejected/', () => existsSync(rejected) && readdirSync(rejected).some((f) => f.endsWith('.pem')));
    await waitFor('the log names the thumbprint and the command', () => logs.some((l) => /plantbridge-agent pki trust [0-9a-f]{40}/.test(l)));
    const line = JSON.parse(logs.find((l) => /plantbridge-agent pki trust/.test(l))!);
    assert.equal(line.level, 50, 'logged as an error: someone must act');
    const thumbprint = /pki trust ([0-9a-f]{40})/.exec(line.msg)![1];
    assert.ok(readdirSync(rejected).some((f) => f.includes(`[${thumbprint}]`)));
    assert.equal(t.committed.length, 0, 'no value from an untrusted server');
    assert.equal(srv.sessionCount(), 0);

    const msg = await pkiTrust(t.stateDir, thumbprint.slice(0, 12));
    assert.match(msg, new RegExp(thumbprint));
    assert.ok(readdirSync(join(t.stateDir, 'pki', 'trusted', 'certs')).some((f) => f.includes(`[${thumbprint}]`)));
    await waitFor('values after trusting', () => t.committed.length >= 2);
    assert.equal(driver.health().state, 'up');
  });

  void test('trustOnFirstUse pins the first certificate and refuses a different one later', async () => {
    const srv = await startLineServer({ params: fastLine, securityModes: ['SignAndEncrypt'] });
    const port = srv.port;
    const t = testCtx();
    cleanups.push(() => t.close());
    const cfg = opcuaConfig({
      endpoint: srv.endpoint,
      securityMode: 'SignAndEncrypt',
      securityPolicy: 'Basic256Sha256',
      allowInsecure: false,
      trustOnFirstUse: true,
      reconnectMaxDelay: 200,
      nodes: [{ ref: 'good', nodeId: srv.nodeIds.good }],
    });
    const driver = create(cfg, t.ctx);
    await driver.start();
    cleanups.push(() => driver.stop());
    await waitFor('values on first use', () => t.committed.length >= 2);
    // the server comes back with another certificate (new PKI folder): refused
    await srv.stop();
    const other = await startLineServer({ params: fastLine, securityModes: ['SignAndEncrypt'], port, pkiDir: mkdtempSync(join(tmpdir(), 'pb-plant-pki-')) });
    cleanups.push(() => other.stop());
    await waitFor('the new certificate is rejected', () => /pki trust/.test(driver.health().message ?? ''));
    assert.equal(other.sessionCount(), 0);
  });
});
