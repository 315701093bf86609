import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseHubConfig } from '../config/load.ts';
import { buildHub } from '../build-hub.ts';
import { testLogger } from '../../test/helpers/log.ts';
import { confirmation } from '../erp/test-kit/transactions.ts';

/**
 * Every hub endpoint against broken, hostile and oversized input: a 4xx with a stable code and the
 * request's correlation id, never a 500, never a stored row.
 */
const TOKEN = 'hostile-agent-token-0123456789';

test('hub endpoints answer broken, hostile and oversized input with a 4xx and a stable code, never a 500', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pb-hostile-'));
  const { config } = parseHubConfig(
    `hub: { port: 0, dataDir: ${join(dir, 'hub')}, bodyLimit: 256KiB }
agents: [{ id: edge-1, plants: ["1010"], token: "\${TOK}" }]
erp: { type: sap-odata, url: "http://127.0.0.1:9", auth: { type: basic, username: u, password: "\${SAPPW}" } }
`,
    join(dir, 'hub.yaml'),
    { env: { TOK: TOKEN, SAPPW: 'x' }, readFile: () => '' },
  );
  // inject() only: no port, no posting, no ERP
  const hub = buildHub({ config, log: testLogger() });
  await hub.open();
  t.after(() => hub.stop());
  const auth = { authorization: `Bearer ${TOKEN}` };
  const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
  const cases: Array<{ name: string; method: 'GET' | 'POST'; url: string; headers?: Record<string, string>; body?: string; status: number; code: string }> = [
    { name: 'heartbeat: not JSON', method: 'POST', url: '/v1/heartbeat', headers: { ...auth, 'content-type': 'application/json' }, body: '{"schema": pl', status: 400, code: 'SCHEMA_INVALID' },
    { name: 'heartbeat: an array', method: 'POST', url: '/v1/heartbeat', headers: { ...auth, 'content-type': 'application/json' }, body: '[]', status: 400, code: 'SCHEMA_INVALID' },
    { name: 'heartbeat: null', method: 'POST', url: '/v1/heartbeat', headers: { ...auth, 'content-type': 'application/json' }, body: 'null', status: 400, code: 'SCHEMA_INVALID' },
    { name: 'heartbeat: deeply nested', method: 'POST', url: '/v1/heartbeat', headers: { ...auth, 'content-type': 'application/json' }, body: deep, status: 400, code: 'SCHEMA_INVALID' },
    { name: 'heartbeat: no credential', method: 'POST', url: '/v1/heartbeat', headers: { 'content-type': 'application/json' }, body: '{}', status: 401, code: 'UNAUTHENTICATED' },
    { name: 'heartbeat: oversized', method: 'POST', url: '/v1/heartbeat', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ pad: 'x'.repeat(400_000) }), status: 413, code: 'PAYLOAD_TOO_LARGE' },
    { name: 'ingest: text/plain', method: 'POST', url: '/v1/ingest', headers: { ...auth, 'content-type': 'text/plain' }, body: 'hello', status: 400, code: 'SCHEMA_INVALID' },
    { name: 'ingest: items not objects', method: 'POST', url: '/v1/ingest', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ schema: 'plantbridge.ingest-batch/1.0', batchId: 'b1', agentId: 'edge-1', sentAt: new Date().toISOString(), items: [1, 'x', null] }), status: 400, code: 'SCHEMA_INVALID' },
    { name: 'ingest: __proto__ payload', method: 'POST', url: '/v1/ingest', headers: { ...auth, 'content-type': 'application/json' }, body: '{"__proto__": {"admin": true}, "schema": "plantbridge.ingest-batch/1.0"}', status: 400, code: 'SCHEMA_INVALID' },
    { name: 'enroll: not JSON', method: 'POST', url: '/v1/enroll', headers: { 'content-type': 'application/json' }, body: 'token=abc', status: 400, code: 'SCHEMA_INVALID' },
    { name: 'enroll: unknown field', method: 'POST', url: '/v1/enroll', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ schema: 'plantbridge.enroll-request/1.0', token: 'x'.repeat(20), admin: true }), status: 400, code: 'SCHEMA_INVALID' },
    { name: 'enroll: too long a token', method: 'POST', url: '/v1/enroll', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ schema: 'plantbridge.enroll-request/1.0', token: 'x'.repeat(300) }), status: 400, code: 'SCHEMA_INVALID' },
    // enroll has its own 4 KiB body limit: refused before it is parsed
    { name: 'enroll: oversized body', method: 'POST', url: '/v1/enroll', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ schema: 'plantbridge.enroll-request/1.0', token: 'x'.repeat(5000) }), status: 413, code: 'PAYLOAD_TOO_LARGE' },
    { name: 'enroll: unknown token', method: 'POST', url: '/v1/enroll', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ schema: 'plantbridge.enroll-request/1.0', token: 'y'.repeat(40) }), status: 401, code: 'UNAUTHENTICATED' },
    { name: 'outcomes: cursor not a number', method: 'GET', url: '/v1/agents/me/outcomes?since=abc', headers: auth, status: 400, code: 'SCHEMA_INVALID' },
    { name: 'outcomes: negative limit', method: 'GET', url: '/v1/agents/me/outcomes?since=0&limit=-5', headers: auth, status: 400, code: 'SCHEMA_INVALID' },
    { name: 'fleet: bogus state', method: 'GET', url: '/v1/fleet/transactions?state=%3Cscript%3E', status: 400, code: 'SCHEMA_INVALID' },
    { name: 'fleet: unknown key', method: 'GET', url: `/v1/fleet/transactions/${'k'.repeat(3000)}`, status: 404, code: 'NOT_FOUND' },
    { name: 'lineage page: unknown key', method: 'GET', url: `/tx/${encodeURIComponent('<script>alert(1)</script>')}`, status: 404, code: 'NOT_FOUND' },
    { name: 'no such route', method: 'POST', url: '/v1/../../etc/passwd', status: 404, code: 'NOT_FOUND' },
  ];
  for (const c of cases) {
    const res = await hub.app.inject({ method: c.method, url: c.url, headers: c.headers ?? {}, ...(c.body !== undefined ? { payload: c.body } : {}) });
    assert.equal(res.statusCode, c.status, `${c.name}: ${res.statusCode} ${res.body.slice(0, 300)}`);
    const body = res.json() as { error: { code: string; correlationId?: string; retriable: boolean } };
    assert.equal(body.error.code, c.code, c.name);
    assert.ok(body.error.correlationId, `${c.name}: carries a correlation id`);
    assert.ok(!res.body.includes('<script>'), `${c.name}: input is not echoed as markup`);
  }
  assert.deepEqual(await hub.store.counts(), { queued: 0, posted: 0, failed: 0, discarded: 0 }, 'nothing was stored');

  // a legitimate key near the 300-character limit reaches its lineage (the router's default was 100)
  const long = { ...confirmation('8000001', 0), idempotencyKey: `1010:WC-01:8000001:0010:${'line-with-a-long-name/'.repeat(12)}good:0-10` };
  assert.ok(long.idempotencyKey.length > 250 && long.idempotencyKey.length <= 300);
  await hub.store.ingest('edge-1', [long], new Date());
  const api = await hub.app.inject({ method: 'GET', url: `/v1/fleet/transactions/${encodeURIComponent(long.idempotencyKey)}` });
  assert.equal(api.statusCode, 200, api.body.slice(0, 200));
  const page = await hub.app.inject({ method: 'GET', url: `/tx/${encodeURIComponent(long.idempotencyKey)}` });
  assert.equal(page.statusCode, 200);
  assert.match(page.body, /8000001/);
  assert.equal(({} as Record<string, unknown>).admin, undefined, 'no prototype pollution');
});
