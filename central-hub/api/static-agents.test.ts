import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { testLogger } from '../../test/helpers/log.ts';
import { buildHub, type Hub } from '../build-hub.ts';
import { parseHubConfig } from '../config/load.ts';
import { agentsCommand } from '../enrollment/agents-cli.ts';
import { injected, instantErp, removeDir } from './test-hub.ts';

/** Agents listed in hub.yaml with a static token: a revocation outlives a restart; rotation is refused. */

const config = (dir: string, token: string) =>
  parseHubConfig(
    `hub: { host: 127.0.0.1, port: 0, dataDir: ${dir} }
log: { level: warn }
agents: [{ id: edge-s, plants: ["P1"], token: "\${T}" }]
erp: { type: sap-odata, url: "http://127.0.0.1:9", auth: { type: basic, username: u, password: "\${T}" } }
`,
    join(dir, 'hub.yaml'),
    { env: { T: token }, readFile: (p) => readFileSync(p, 'utf8') },
  ).config;

async function heartbeatStatus(hub: Hub, token: string): Promise<number> {
  const r = await injected(hub, '/v1/agents/me/outcomes?since=0', { headers: { authorization: `Bearer ${token}` } });
  await r.arrayBuffer();
  return r.status;
}

void it('a revoked hub.yaml agent stays revoked after a restart; a new token in hub.yaml admits it again', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pb-static-'));
  t.after(() => removeDir(dir));
  const token = 'pbc_static-token-of-edge-s-0123456789';
  let hub = buildHub({ config: config(dir, token), log: testLogger(), adapter: instantErp() });
  await hub.open();
  assert.equal(await heartbeatStatus(hub, token), 200);
  assert.equal(await hub.store.revokeAgent('edge-s', 'admin:test'), true);
  assert.equal(await heartbeatStatus(hub, token), 401);
  await hub.stop();
  // the same hub.yaml again
  hub = buildHub({ config: config(dir, token), log: testLogger(), adapter: instantErp() });
  await hub.open();
  assert.equal(await heartbeatStatus(hub, token), 401, 'still revoked after the restart');
  await hub.stop();
  // the operator gives the agent a new token in hub.yaml
  const fresh = 'pbc_static-token-of-edge-s-abcdefghij';
  hub = buildHub({ config: config(dir, fresh), log: testLogger(), adapter: instantErp() });
  await hub.open();
  t.after(() => hub.stop());
  assert.equal(await heartbeatStatus(hub, fresh), 200);
  assert.equal(await heartbeatStatus(hub, token), 401);
});

void it('agents rotate or add for an agent listed in hub.yaml is refused, saying why', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pb-static-cli-'));
  t.after(() => removeDir(dir));
  const cfg = config(dir, 'pbc_static-token-of-edge-s-0123456789');
  let err = '';
  const io = { out: () => {}, err: (s: string) => void (err += s) };
  for (const sub of ['rotate', 'add']) {
    err = '';
    assert.equal(await agentsCommand(cfg, [sub, '--name', 'edge-s', '--plant', 'P1'], io), 1);
    assert.match(err, /listed in hub\.yaml with a static token/);
  }
});
