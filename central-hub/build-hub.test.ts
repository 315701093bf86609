import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { testLogger } from '../test/helpers/log.ts';
import { instantErp, removeDir } from './api/test-hub.ts';
import { buildHub } from './build-hub.ts';
import { parseHubConfig } from './config/load.ts';

/** Build apart from run (STYLE.md): buildHub registers every route and opens nothing; open() is enough for inject(). */

const ROUTES: Array<['GET' | 'POST', string]> = [
  ['POST', '/v1/ingest'],
  ['POST', '/v1/heartbeat'],
  ['GET', '/v1/agents/me/outcomes'],
  ['POST', '/v1/enroll'],
  ['GET', '/v1/fleet/agents'],
  ['GET', '/v1/fleet/transactions'],
  ['GET', '/v1/fleet/transactions/:key'],
  ['GET', '/v1/fleet/transactions/:key/lineage'],
  ['GET', '/v1/fleet/agents/:id/history'],
  ['GET', '/v1/admin/dead-letters'],
  ['POST', '/v1/admin/dead-letters/:seq/replay'],
  ['POST', '/v1/admin/dead-letters/:seq/discard'],
  ['GET', '/v1/admin/audit'],
  ['GET', '/healthz'],
  ['GET', '/metrics'],
  ['GET', '/'],
  ['GET', '/tx/:key'],
];

void it('buildHub registers every route and touches nothing: no database file, no certificate read, no socket; open() serves inject() without listening', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pb-build-'));
  t.after(() => removeDir(dir));
  const { config } = parseHubConfig(
    `hub: { host: 127.0.0.1, port: 0, dataDir: ${join(dir, 'data')}, tls: { cert: missing.crt, key: missing.key } }
agents: [{ id: edge-1, plants: ["1010"], token: "\${T}" }]
erp: { type: sap-odata, url: "http://127.0.0.1:9", auth: { type: basic, username: u, password: "\${T}" } }
`,
    join(dir, 'hub.yaml'),
    { env: { T: 'static-token-0123456789abcdef' }, readFile: () => '' },
  );
  const adapter = instantErp();
  const hub = buildHub({ config, log: testLogger(), adapter });
  t.after(() => hub.stop());
  await hub.app.ready();
  for (const [method, url] of ROUTES) assert.ok(hub.app.hasRoute({ method, url }), `${method} ${url} is registered at build`);
  assert.equal(existsSync(join(dir, 'data')), false, 'no data directory, no database');
  assert.equal(hub.app.server.listening, false);
  assert.throws(() => hub.store, /hub not open/);
  const before = await hub.app.inject({ method: 'GET', url: '/v1/fleet/agents' });
  assert.equal(before.statusCode, 500, 'a route before open() says so, it does not crash');

  await hub.open();
  await hub.open(); // idempotent
  assert.deepEqual(readdirSync(join(dir, 'data')).filter((f) => f === 'hub.db'), ['hub.db']);
  assert.equal(hub.app.server.listening, false, 'open() listens on nothing');
  assert.equal(hub.url, '');
  const agents = await hub.app.inject({ method: 'GET', url: '/v1/fleet/agents' });
  assert.equal(agents.statusCode, 200);
  assert.deepEqual((agents.json() as { agents: Array<{ id: string }> }).agents.map((a) => a.id), ['edge-1'], "hub.yaml's static agent is registered by open()");
  assert.deepEqual(adapter.posted, [], 'nothing is posted before start()');
});
