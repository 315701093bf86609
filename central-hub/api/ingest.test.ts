import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { schemaId, ulid, type Transaction } from '../../contracts/index.ts';
import { testTx } from '../store/test-tx.ts';
import { openTestHub, removeDir, type TestHub } from './test-hub.ts';

const batch = (agentId: string, items: unknown[], extra: Record<string, unknown> = {}) => ({
  schema: schemaId('ingest-batch', 1, 0),
  batchId: ulid(),
  agentId,
  sentAt: new Date().toISOString(),
  items,
  ...extra,
});

void describe('hub API: ingest, outcomes, heartbeat (SQLite store, inject(), no port)', () => {
  let t: TestHub;
  let token: string;
  const post = (path: string, body: unknown, tok = token, headers: Record<string, string> = {}) =>
    t.fetch(path, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${tok}`, ...headers }, body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body) });

  before(async () => {
    t = await openTestHub({ bodyLimit: '64KiB', rateLimitPerAgent: 1000, posting: true });
    token = await t.addAgent('edge-1', ['P1']);
  });
  after(async () => {
    await t.stop();
    removeDir(t.dir);
  });

  void it('accepts, answers duplicates with the original outcome, and rejects a bad item alone', async () => {
    const a = testTx();
    const bad = { ...testTx(), data: { ...testTx().data, yield: { qty: -1, uom: 'EA' } } } as Transaction;
    const r1 = await post('/v1/ingest', batch('edge-1', [a, bad]));
    assert.equal(r1.status, 200);
    const b1 = await r1.json().then((x): any => x);
    assert.deepEqual(b1.results.map((r: { status: string }) => r.status), ['accepted', 'rejected']);
    assert.equal(b1.results[1].code, 'SCHEMA_INVALID');
    assert.match(b1.results[1].reason, /data\.yield\.qty/);
    const r2 = await (await post('/v1/ingest', batch('edge-1', [a]))).json().then((x): any => x);
    assert.equal(r2.results[0].status, 'duplicate');
    assert.ok(['pending', 'posted'].includes(r2.results[0].outcome.state));
    assert.equal((await t.hub.store.counts()).failed, 0);
  });

  void it('strict frame: unknown fields are named in a 400', async () => {
    const r = await post('/v1/ingest', batch('edge-1', [testTx()], { priority: 'high' }));
    assert.equal(r.status, 400);
    const b = await r.json().then((x): any => x);
    assert.equal(b.error.code, 'SCHEMA_INVALID');
    assert.match(b.error.message, /priority: unknown field/);
  });

  void it('"__proto__" and "constructor" keys (plain JSON.parse) are unknown fields: 400 in the frame, a rejected item alone', async () => {
    const frameText = JSON.stringify(batch('edge-1', [testTx()])).replace(/^\{/, '{"__proto__":{"admin":true},');
    const rf = await post('/v1/ingest', frameText);
    assert.equal(rf.status, 400);
    const bf = await rf.json().then((x): any => x);
    assert.equal(bf.error.code, 'SCHEMA_INVALID');
    assert.match(bf.error.message, /__proto__: unknown field/);

    const ok = testTx();
    const proto = testTx();
    const ctor = testTx();
    const nested = testTx();
    const hostile = (tx: Transaction, edit: (json: string) => string) => [JSON.stringify(tx), edit(JSON.stringify(tx))];
    const edits = [
      hostile(proto, (j) => j.replace(/^\{/, '{"__proto__":{"admin":true},')),
      hostile(ctor, (j) => j.replace(/^\{/, '{"constructor":{"prototype":{"admin":true}},')),
      hostile(nested, (j) => j.replace('"source":{', '"source":{"__proto__":{"admin":true},')),
    ];
    let text = JSON.stringify(batch('edge-1', [ok, proto, ctor, nested]));
    for (const [plain, edited] of edits) text = text.replace(plain, edited);
    assert.equal(text.split('"admin":true').length, 4, 'the test body carries the three hostile keys');
    const r = await post('/v1/ingest', text);
    assert.equal(r.status, 200);
    const b = await r.json().then((x): any => x);
    assert.deepEqual(
      b.results.map((x: { status: string }) => x.status),
      ['accepted', 'rejected', 'rejected', 'rejected'],
    );
    assert.match(b.results[1].reason, /(^|; )__proto__: unknown field/);
    assert.match(b.results[2].reason, /(^|; )constructor: unknown field/);
    assert.match(b.results[3].reason, /source\.__proto__: unknown field/);
    assert.equal(({} as any).admin, undefined, 'Object.prototype untouched');
    assert.equal(await t.hub.store.getTransaction(proto.idempotencyKey), undefined);
  });

  void it('an item whose schema names an Object.prototype member is rejected alone (was a 500 for the batch)', async () => {
    const ok = testTx();
    const r = await post('/v1/ingest', batch('edge-1', [{ ...testTx(), schema: 'plantbridge.constructor/1.0' }, ok]));
    assert.equal(r.status, 200);
    const b = await r.json().then((x): any => x);
    assert.deepEqual(b.results.map((x: { status: string }) => x.status), ['rejected', 'accepted']);
    assert.equal(b.results[0].code, 'SCHEMA_INVALID');
    assert.match(b.results[0].reason, /^schema: /);
  });

  void it('empty and broken JSON bodies are a 400 SCHEMA_INVALID', async () => {
    for (const body of ['', '{"schema":', 'null', '[]', '"text"']) {
      const r = await post('/v1/ingest', body);
      assert.equal(r.status, 400, body);
      assert.equal((await r.json().then((x): any => x)).error.code, 'SCHEMA_INVALID', body);
    }
  });

  void it('a body that is not UTF-8 is a 400 naming the encoding; nothing of it is stored', async () => {
    const tx = testTx({ plant: 'P1', agentId: 'edge-1' });
    const text = JSON.stringify(batch('edge-1', [tx]));
    const before = (await t.hub.store.counts()).queued;
    // a Latin-1 byte inside a string value: decoded, it would become U+FFFD and be stored as such
    const at = text.indexOf(tx.correlationId);
    const latin1 = Buffer.concat([Buffer.from(text.slice(0, at)), Buffer.from([0xe9]), Buffer.from(text.slice(at))]);
    const r = await post('/v1/ingest', latin1);
    assert.equal(r.status, 400);
    const b = await r.json().then((x): any => x);
    assert.equal(b.error.code, 'SCHEMA_INVALID');
    assert.match(b.error.message, /not valid UTF-8/);
    assert.equal((await t.hub.store.counts()).queued, before);
    // the same frame as UTF-8 is taken, with the multi-byte character intact
    const good = await post('/v1/ingest', Buffer.from(text.replace(`"correlationId":"${tx.correlationId}"`, `"correlationId":"é${tx.correlationId}"`)));
    assert.equal(good.status, 200);
    assert.equal((await good.json().then((x): any => x)).results[0].status, 'accepted');
    const stored = await t.hub.store.getTransaction(tx.idempotencyKey);
    assert.equal(stored?.body.correlationId, `é${tx.correlationId}`);
  });

  void it("another plant's idempotency key: the item is refused and its sender audited, and that plant's outcome is not handed out", async () => {
    const tokB = await t.addAgent('edge-b', ['P2']);
    const mine = testTx();
    assert.equal((await (await post('/v1/ingest', batch('edge-1', [mine]))).json().then((x): any => x)).results[0].status, 'accepted');
    const squat = { ...testTx({ plant: 'P2', agentId: 'edge-b' }), idempotencyKey: mine.idempotencyKey };
    const ok = testTx({ plant: 'P2', agentId: 'edge-b' });
    const r = await post('/v1/ingest', batch('edge-b', [squat, ok]), tokB);
    assert.equal(r.status, 200, 'a refusal of that item alone; the rest of the batch is stored');
    const b = await r.json().then((x): any => x);
    assert.deepEqual(b.results.map((x: any) => [x.status, x.code]), [['rejected', 'PLANT_MISMATCH'], ['accepted', undefined]]);
    assert.equal(b.results[0].outcome, undefined);
    assert.equal((await t.hub.store.getTransaction(mine.idempotencyKey))?.agentId, 'edge-1');
    // keys are bound to their plant: a P1 key on a P2 item is refused before the store (which refuses it too)
    assert.match(b.results[0].reason, /must start with the item's plant "P2:"/);
    const row = (await t.hub.store.listAudit(5)).find((e) => e.action === 'ingest.key_outside_plant');
    assert.ok(row, 'audit row');
    assert.equal(row.actor, 'agent:edge-b');
    assert.deepEqual((row.detail as { keys: string[] }).keys, [mine.idempotencyKey]);
  });

  void it('bad tokens are refused every time, but audited at most 20 times a minute per address; the next row counts the rest', async () => {
    const before = (await t.hub.store.listAudit(1000)).filter((e) => e.action === 'auth.refused').length;
    for (let i = 0; i < 60; i++) assert.equal((await post('/v1/ingest', batch('edge-1', [testTx()]), `pbc_flood-${i}-not-a-credential`)).status, 401);
    const rows = (await t.hub.store.listAudit(1000)).filter((e) => e.action === 'auth.refused');
    assert.ok(rows.length - before <= 20, `${rows.length - before} audit rows for 60 refusals`);
    const { auditRefusal } = await import('./auth.ts');
    // a minute later the same address gets a row again, with the count of those left out
    await auditRefusal(t.hub.store, '127.0.0.1', 'auth.refused', { route: '/v1/ingest' }, Date.now() + 61_000);
    const [last] = (await t.hub.store.listAudit(5)).filter((e) => e.action === 'auth.refused');
    assert.ok(((last.detail as { notAuditedBefore?: number }).notAuditedBefore ?? 0) >= 40, JSON.stringify(last.detail));
  });

  void it('a cross-plant write is refused with 403, audited, and nothing is stored', async () => {
    const foreign = testTx({ plant: 'P2' });
    const mine = testTx();
    const r = await post('/v1/ingest', batch('edge-1', [mine, foreign]));
    assert.equal(r.status, 403);
    assert.equal((await r.json().then((x): any => x)).error.code, 'PLANT_MISMATCH');
    assert.equal(await t.hub.store.getTransaction(foreign.idempotencyKey), undefined);
    assert.equal(await t.hub.store.getTransaction(mine.idempotencyKey), undefined);
    const audit = await t.hub.store.listAudit(5);
    const row = audit.find((e) => e.action === 'ingest.plant_mismatch');
    assert.ok(row, 'audit row');
    assert.equal(row.actor, 'agent:edge-1');
    assert.deepEqual((row.detail as { plants: string[] }).plants, ['P2']);
  });

  void it('no, unknown or revoked credentials get 401; revocation is immediate', async () => {
    assert.equal((await t.fetch('/v1/ingest', { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).status, 401);
    assert.equal((await post('/v1/ingest', batch('edge-1', [testTx()]), 'pbc_not-a-real-credential-at-all')).status, 401);
    const tok = await t.addAgent('edge-r', ['P1']);
    assert.equal((await post('/v1/ingest', batch('edge-r', [testTx({ agentId: 'edge-r' })]), tok)).status, 200);
    await t.hub.store.revokeAgent('edge-r', 'admin:test');
    const r = await post('/v1/ingest', batch('edge-r', [testTx({ agentId: 'edge-r' })]), tok);
    assert.equal(r.status, 401);
    assert.equal((await r.json().then((x): any => x)).error.code, 'UNAUTHENTICATED');
    assert.equal(r.headers.get('www-authenticate'), 'Bearer');
  });

  void it('a body over the limit gets 413 PAYLOAD_TOO_LARGE, also when gzip hides it', async () => {
    const big = Array.from({ length: 300 }, () => testTx());
    const r = await post('/v1/ingest', batch('edge-1', big));
    assert.equal(r.status, 413);
    assert.equal((await r.json().then((x): any => x)).error.code, 'PAYLOAD_TOO_LARGE');
    const zipped = gzipSync(JSON.stringify(batch('edge-1', big)));
    assert.ok(zipped.length < 64 * 1024);
    const rz = await post('/v1/ingest', zipped, token, { 'content-encoding': 'gzip' });
    assert.equal(rz.status, 413);
  });

  void it('accepts gzip bodies; corrupt gzip is a 400', async () => {
    const a = testTx();
    const r = await post('/v1/ingest', gzipSync(JSON.stringify(batch('edge-1', [a]))), token, { 'content-encoding': 'gzip' });
    assert.equal(r.status, 200);
    assert.equal((await r.json().then((x): any => x)).results[0].status, 'accepted');
    const bad = await post('/v1/ingest', Buffer.from('not gzip at all'), token, { 'content-encoding': 'gzip' });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json().then((x): any => x)).error.code, 'SCHEMA_INVALID');
    const br = await post('/v1/ingest', Buffer.from('x'), token, { 'content-encoding': 'br' });
    assert.equal(br.status, 400);
  });

  void it('outcomes: the agent gets the ERP outcomes of its own transactions after a cursor', async () => {
    const a = testTx({ order: 'OUT-1' });
    await post('/v1/ingest', batch('edge-1', [a]));
    let items: Array<{ idempotencyKey: string; outcome: { state: string; erpRef?: string } }> = [];
    let cursor = '0';
    for (let i = 0; i < 100 && !items.some((x) => x.idempotencyKey === a.idempotencyKey); i++) {
      const r = await t.fetch(`/v1/agents/me/outcomes?since=${cursor}`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(r.status, 200);
      const b = await r.json().then((x): any => x);
      items = items.concat(b.items);
      cursor = b.cursor;
      await new Promise((res) => setTimeout(res, 50));
    }
    const mine = items.find((x) => x.idempotencyKey === a.idempotencyKey);
    assert.equal(mine?.outcome.state, 'posted');
    assert.match(mine?.outcome.erpRef ?? '', /^DOC-/);
    const bad = await t.fetch('/v1/agents/me/outcomes?since=abc&colour=red', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(bad.status, 400);
    assert.match((await bad.json().then((x): any => x)).error.message, /colour: unknown field/);
    const other = await t.addAgent('edge-o', ['P1']);
    const theirs = await (await t.fetch('/v1/agents/me/outcomes?since=0', { headers: { authorization: `Bearer ${other}` } })).json().then((x): any => x);
    assert.deepEqual(theirs.items, []);
  });

  void it('heartbeats are stored with history; the fleet view says online', async () => {
    const now = new Date().toISOString();
    const hb = {
      schema: schemaId('agent-heartbeat', 1, 0),
      id: ulid(),
      agentId: 'edge-1',
      plant: 'P1',
      sentAt: now,
      version: '0.1.0',
      uptimeS: 1,
      configVersion: 'x',
      mode: 'live',
      drivers: [{ name: 'sim', type: 'simulator', state: 'up', since: now }],
      outbox: { pending: 0, oldestPendingAgeS: 0, deadLetters: 0, bytes: 0, diskFreeBytes: 1, full: false },
      rates: { signalsPerS: 0, forwardedPerS: 0 },
      alarms: [],
    };
    const r = await post('/v1/heartbeat', hb);
    assert.equal(r.status, 200);
    assert.ok((await r.json().then((x): any => x)).serverTime);
    const fleet = await (await t.fetch('/v1/fleet/agents')).json().then((x): any => x);
    assert.equal(fleet.agents.find((a: { id: string }) => a.id === 'edge-1').status, 'online');
    const hist = await (await t.fetch('/v1/fleet/agents/edge-1/history')).json().then((x): any => x);
    assert.equal(hist.history.length, 1);
    const wrongPlant = await post('/v1/heartbeat', { ...hb, id: ulid(), plant: 'P9' });
    assert.equal(wrongPlant.status, 403);
  });

  void it('a storm from one agent gets 429 with Retry-After, others are not affected', async () => {
    const t2 = await openTestHub({ rateLimitPerAgent: 2 });
    try {
      const tok = await t2.addAgent('edge-s', ['P1']);
      const other = await t2.addAgent('edge-t', ['P1']);
      const send = (tk: string, id: string) =>
        t2.fetch('/v1/ingest', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${tk}` }, body: JSON.stringify(batch(id, [testTx({ agentId: id })])) });
      const rs = await Promise.all(Array.from({ length: 10 }, () => send(tok, 'edge-s')));
      const limited = rs.filter((r) => r.status === 429);
      assert.ok(limited.length >= 5, `expected 429s, got ${rs.map((r) => r.status)}`);
      assert.ok(Number(limited[0].headers.get('retry-after')) >= 1);
      assert.equal((await limited[0].json().then((x): any => x)).error.code, 'RATE_LIMITED');
      assert.equal((await send(other, 'edge-t')).status, 200);
    } finally {
      await t2.stop();
      removeDir(t2.dir);
    }
  });

  void it('healthz and metrics answer', async () => {
    const h = await t.fetch('/healthz');
    assert.equal(h.status, 200);
    const m = await (await t.fetch('/metrics')).text();
    assert.match(m, /plantbridge_hub_transactions_received_total/);
  });
});
