import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { serialiseBatch } from '../../agent/forwarder/forwarder.ts';
import type { ClaimedTx } from '../../agent/outbox/outbox.ts';
import type { Transaction } from '../../contracts/index.ts';
import { pgSchemaForTest } from '../store/postgres/pg-test-kit.ts';
import { testTx } from '../store/test-tx.ts';
import { itemsText } from './ingest.ts';
import { openTestHub, removeDir, type TestHub } from './test-hub.ts';

/**
 * The hub hands the store the items' bytes as received when the frame has the agent's layout, and the
 * PostgreSQL store keeps those bytes instead of serialising the parsed items again. Nothing may change
 * what is stored: the bytes are used only when they are exactly the items validated.
 */

/** Items as an agent's outbox holds them: its own JSON text, here with an escape and a number form JSON.stringify would not write. */
function asSent(tx: Transaction): string {
  return JSON.stringify(tx).replace('"correlationId":"', '"correlationId":"caf\\u00e9 ').replace(/"qty":(\d+)/, '"qty":$1.0');
}
const claimed = (texts: string[]): ClaimedTx[] =>
  texts.map((t, i) => ({ seq: i + 1, key: `k${i}`, orderKey: 'o', lease: 1, raw: Buffer.from(t), body: t, tx: JSON.parse(t), attempts: 1, bytes: Buffer.byteLength(t) }));

void describe('itemsText: the items bytes of a frame in the agent layout', () => {
  void it('is the items array of serialiseBatch, as a view of the body', () => {
    const texts = [asSent(testTx()), asSent(testTx())];
    const body = serialiseBatch('01J00000000000000000000000', 'edge-1', claimed(texts));
    const items = itemsText(body);
    assert.ok(items);
    assert.equal(items.toString('utf8'), `[${texts.join(',')}]`);
    assert.equal(items.buffer, body.buffer, 'a view, not a copy');
  });

  void it('is undefined for any other layout', () => {
    const body = serialiseBatch('01J00000000000000000000000', 'edge-1', claimed([JSON.stringify(testTx())])).toString('utf8');
    for (const other of [
      body.replace('{"schema"', '{ "schema"'), // whitespace
      `${body}\n`, // a byte after the frame
      body.replace('"agentId":"edge-1"', '"agentId":"ed\\"ge-1"'), // an escape in a head string
      body.replace('"schema":', '"x":1,"schema":'), // a key before the head
      body.replace(/,"items":\[.*\]\}$/, ',"items":{}}'), // items not an array
    ]) {
      assert.equal(itemsText(Buffer.from(other)), undefined, other.slice(0, 120));
    }
  });
});

const pgt = await pgSchemaForTest();
const skip = 'skip' in pgt ? pgt.skip : false;

void describe('hub on PostgreSQL stores the items as received', { skip }, () => {
  let t: TestHub;
  let token: string;
  let db: pg.Client;
  const post = (body: string | Buffer) => t.fetch('/v1/ingest', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body });
  const storedText = async (key: string): Promise<string | undefined> => (await db.query(`SELECT body FROM ${(pgt as { schema: string }).schema}.transactions WHERE idempotency_key = $1`, [key])).rows[0]?.body;

  before(async () => {
    if ('skip' in pgt) return;
    const store = pgt.open();
    await store.migrate();
    t = await openTestHub({ store });
    token = await t.addAgent('edge-1', ['P1']);
    db = new pg.Client({ connectionString: pgt.url });
    await db.connect();
  });
  after(async () => {
    if ('skip' in pgt) return;
    await db.end();
    await t.stop();
    removeDir(t.dir);
    await pgt.drop();
  });

  void it("keeps an agent's bytes: the stored text is the item as sent, and parses to the item", async () => {
    const txs = [testTx({ order: 'R-1' }), testTx({ order: 'R-1' })];
    const texts = txs.map(asSent);
    const r = await post(serialiseBatch('01J00000000000000000000001', 'edge-1', claimed(texts)));
    assert.equal(r.status, 200);
    assert.deepEqual(((await r.json()) as { results: Array<{ status: string }> }).results.map((x) => x.status), ['accepted', 'accepted']);
    for (let i = 0; i < txs.length; i++) {
      assert.equal(await storedText(txs[i].idempotencyKey), texts[i]);
      assert.deepEqual((await t.hub.store.getTransaction(txs[i].idempotencyKey))?.body, JSON.parse(texts[i]));
    }
  });

  void it('a frame with "items" twice stores the items it was validated with (the last), and nothing of the first', async () => {
    const shadow = testTx({ order: 'R-2' });
    const real = testTx({ order: 'R-2' });
    const once = serialiseBatch('01J00000000000000000000002', 'edge-1', claimed([JSON.stringify(shadow)])).toString('utf8');
    const twice = once.replace(/\]\}$/, `],"items":[${JSON.stringify(real)}]}`);
    assert.ok(itemsText(Buffer.from(twice)), 'the agent layout: the bytes are offered, and are not one array');
    const r = await post(twice);
    assert.equal(r.status, 200);
    const results = ((await r.json()) as { results: Array<{ status: string; idempotencyKey: string }> }).results;
    assert.deepEqual(results.map((x) => [x.idempotencyKey, x.status]), [[real.idempotencyKey, 'accepted']]);
    assert.deepEqual((await t.hub.store.getTransaction(real.idempotencyKey))?.body, real);
    assert.equal(await t.hub.store.getTransaction(shadow.idempotencyKey), undefined);
  });

  void it('a batch with a rejected item stores the others as parsed', async () => {
    const good = testTx({ order: 'R-3' });
    const bad = { ...testTx({ order: 'R-3' }), data: { ...testTx().data, yield: { qty: -1, uom: 'EA' } } } as Transaction;
    const r = await post(serialiseBatch('01J00000000000000000000003', 'edge-1', claimed([asSent(good), JSON.stringify(bad)])));
    assert.equal(r.status, 200);
    assert.deepEqual(((await r.json()) as { results: Array<{ status: string }> }).results.map((x) => x.status), ['accepted', 'rejected']);
    // serialised from the parsed item: the agent's spelling of it is not kept
    assert.equal(await storedText(good.idempotencyKey), JSON.stringify(JSON.parse(asSent(good))));
    assert.equal(await t.hub.store.getTransaction(bad.idempotencyKey), undefined);
  });
});
