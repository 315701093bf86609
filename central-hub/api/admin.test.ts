import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseHubConfig } from '../config/load.ts';
import { buildHub } from '../build-hub.ts';
import { confirmation } from '../erp/test-kit/transactions.ts';
import { startSapSimulator, SAP_SIM_USER } from '../erp/sap-odata/sap-simulator.ts';
import { testLogger } from '../../test/helpers/log.ts';

const OPS = 'operator-token-0123456789abcdef';

test('admin API: operators list, replay and discard dead letters; audited; hostile input refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pb-admin-'));
  const sap = await startSapSimulator({ closedOrders: ['6000001', '6000002'] });
  t.after(() => sap.stop());
  const { config } = parseHubConfig(
    `hub: { port: 0, dataDir: ${join(dir, 'hub')} }
erp: { type: sap-odata, url: "${sap.url}", auth: { type: basic, username: ${SAP_SIM_USER.username}, password: "\${SAPPW}" } }
admin: { operators: [{ name: jane.doe, token: "\${OPS}" }] }
`,
    join(dir, 'hub.yaml'),
    { env: { SAPPW: SAP_SIM_USER.password, OPS }, readFile: () => '' },
  );
  // inject() and the posting service (to the SAP simulator); no port
  const hub = buildHub({ config, log: testLogger() });
  await hub.open();
  hub.posting.start();
  t.after(() => hub.stop());
  await hub.store.ingest('a', [confirmation('6000001', 0), confirmation('6000002', 0)], new Date());
  hub.posting.notify();
  for (let i = 0; i < 200 && (await hub.store.counts()).failed < 2; i++) await new Promise((r) => setTimeout(r, 25));

  const auth = { authorization: `Bearer ${OPS}` };
  assert.equal((await hub.app.inject({ method: 'GET', url: '/v1/admin/dead-letters' })).statusCode, 401);
  const wrong = await hub.app.inject({ method: 'GET', url: '/v1/admin/dead-letters', headers: { authorization: 'Bearer not-the-operator-token-000' } });
  assert.equal(wrong.statusCode, 401);
  assert.equal(wrong.json().error.code, 'UNAUTHENTICATED');

  const list = await hub.app.inject({ method: 'GET', url: '/v1/admin/dead-letters', headers: auth });
  assert.equal(list.statusCode, 200);
  const dls = list.json().deadLetters as Array<{ seq: number; order: string; errorMessage: string }>;
  assert.equal(dls.length, 2);
  assert.match(dls[0].errorMessage, /RU\/494/);
  const [first, second] = dls.sort((a, b) => a.seq - b.seq);

  for (const bad of ['abc', '-1', '1.5', '99999999999999999999']) {
    const r = await hub.app.inject({ method: 'POST', url: `/v1/admin/dead-letters/${bad}/replay`, headers: auth });
    assert.equal(r.statusCode, 400, bad);
  }
  assert.equal((await hub.app.inject({ method: 'POST', url: '/v1/admin/dead-letters/424242/replay', headers: auth })).statusCode, 404);
  const noReason = await hub.app.inject({ method: 'POST', url: `/v1/admin/dead-letters/${second.seq}/discard`, headers: auth, payload: {} });
  assert.equal(noReason.statusCode, 400);
  const extra = await hub.app.inject({ method: 'POST', url: `/v1/admin/dead-letters/${second.seq}/discard`, headers: auth, payload: { reason: 'ok fine', force: true } });
  assert.equal(extra.statusCode, 400);
  assert.match(extra.json().error.message, /force: unknown field/);

  sap.reopenOrder('6000001');
  const replay = await hub.app.inject({ method: 'POST', url: `/v1/admin/dead-letters/${first.seq}/replay`, headers: auth });
  assert.equal(replay.statusCode, 200);
  const discard = await hub.app.inject({ method: 'POST', url: `/v1/admin/dead-letters/${second.seq}/discard`, headers: auth, payload: { reason: 'booked manually in CO11N' } });
  assert.equal(discard.statusCode, 200);
  for (let i = 0; i < 200 && (await hub.store.counts()).posted < 1; i++) await new Promise((r) => setTimeout(r, 25));
  assert.deepEqual(await hub.store.counts(), { queued: 0, posted: 1, failed: 0, discarded: 1 });
  assert.equal(sap.confirmations().length, 1, 'the replay posted once');

  const audit = (await hub.app.inject({ method: 'GET', url: '/v1/admin/audit', headers: auth })).json().audit as Array<{ actor: string; action: string }>;
  assert.ok(audit.some((a) => a.action === 'dead-letter.replay' && a.actor === 'operator:jane.doe'));
  assert.ok(audit.some((a) => a.action === 'dead-letter.discard' && a.actor === 'operator:jane.doe'));
  assert.ok(audit.some((a) => a.action === 'admin.auth.refused'));
});
