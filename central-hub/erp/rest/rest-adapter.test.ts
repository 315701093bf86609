import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { parseConfig, PlantBridgeError, uuidv5, type ProductionConfirmation } from '../../../contracts/index.ts';
import { erpConfigSchema } from '../config.ts';
import { ErpError } from '../erp-adapter.ts';
import { sampleTransaction } from '../sample-transactions.ts';
import { renderJson, renderUrl } from './template.ts';
import { signBody } from './rest-adapter.ts';
import { restTestAdapter } from './rest-test-kit.ts';
import { startRestSimulator, verifySignature, type RestSimulator } from './rest-simulator.ts';
import { sendJson, startSimServer } from '../sim-kit.ts';

const ctx = { attempt: 1 };

void describe('rest templates', () => {
  void it('keeps types for whole placeholders, interpolates inside text, drops missing keys, encodes URLs', () => {
    const tx = sampleTransaction('ProductionConfirmation') as ProductionConfirmation;
    const c = { tx, key: tx.idempotencyKey, externalId: uuidv5(tx.idempotencyKey), type: 'ProductionConfirmation' };
    assert.deepEqual(renderJson({ q: '{{tx.data.yield.qty}}', label: 'order {{tx.data.order}}/{{tx.data.operation}}', nope: '{{tx.data.missing}}', list: ['{{type}}', 1, true] }, c), {
      q: 100,
      label: 'order 1000009/0010',
      list: ['ProductionConfirmation', 1, true],
    });
    assert.equal(renderUrl('https://x/p?key={{key}}', { key: 'a b:c/d' }), 'https://x/p?key=a%20b%3Ac%2Fd');
  });

  void it('signatures verify with the right secret only, and only while fresh', () => {
    const sig = signBody('s3cret', '{"a":1}', 1_700_000_000_000);
    assert.match(sig, /^t=1700000000,sha256=[0-9a-f]{64}$/);
    assert.equal(verifySignature('s3cret', sig, '{"a":1}', 1_700_000_000_000), true);
    assert.equal(verifySignature('other', sig, '{"a":1}', 1_700_000_000_000), false);
    assert.equal(verifySignature('s3cret', sig, '{"a":2}', 1_700_000_000_000), false);
    assert.equal(verifySignature('s3cret', sig, '{"a":1}', 1_700_000_000_000 + 3_600_000), false);
  });

  void it('a placeholder outside tx, key, externalId and type is a config error at build time', () => {
    assert.throws(
      () => restTestAdapter('http://127.0.0.1:1', 1000, { post: { url: 'http://127.0.0.1:1/p', body: { a: '{{transaction.id}}' } } }),
      (err: unknown) => err instanceof PlantBridgeError && err.code === 'CONFIG_INVALID' && /transaction\.id/.test(err.message),
    );
  });

  void it('example.yaml is a valid erp: section', () => {
    const doc = parseYaml(readFileSync(new URL('./example.yaml', import.meta.url), 'utf8')) as { erp: unknown };
    assert.equal(parseConfig(erpConfigSchema, doc.erp).type, 'rest');
  });
});

void describe('rest adapter against the webhook simulator', () => {
  let sim: RestSimulator;
  before(async () => (sim = await startRestSimulator()));
  after(() => sim.stop());
  beforeEach(() => sim.clearFaults());

  void it('sends the templated body, the Idempotency-Key header and a valid signature', async () => {
    const a = restTestAdapter(sim.url, 2000);
    try {
      const tx = sampleTransaction('MaterialConsumption');
      const r = await a.post(tx, ctx);
      assert.equal(r.status, 'posted');
      const p = sim.postings().at(-1)!;
      assert.equal((r as { erpRef: string }).erpRef, p.id);
      assert.equal(p.headers['idempotency-key'], tx.idempotencyKey);
      assert.equal(p.headers.traceparent, tx.traceparent);
      assert.deepEqual((p.body as Record<string, unknown>).kind, 'MaterialConsumption');
      assert.deepEqual((p.body as Record<string, unknown>).transaction, JSON.parse(JSON.stringify(tx)));
    } finally {
      await a.close?.();
    }
  });

  void it('a wrong signing secret is a 401: transient for the adapter, never a dead letter', async () => {
    const a = restTestAdapter(sim.url, 2000, { signature: { secret: '${WRONG}' } });
    try {
      const before = sim.stats().badSignatures;
      await assert.rejects(a.post(sampleTransaction('GoodsReceipt'), ctx), (e: unknown) => e instanceof ErpError && e.code === 'UPSTREAM_UNAVAILABLE' && e.erpCode === 'BAD_SIGNATURE');
      assert.equal(sim.stats().badSignatures, before + 1);
    } finally {
      await a.close?.();
    }
  });

  void it('status classes are configurable: e.g. 409 "already exists" mapped to transient', async () => {
    const a = restTestAdapter(sim.url, 2000, { statuses: { transient: [409, 429, 503], business: [400, 422] } });
    try {
      const tx = sampleTransaction('ProductionConfirmation');
      sim.setFault({ kind: 'status', status: 409 });
      const e = await a.post(tx, ctx).then(
        () => assert.fail('expected an error'),
        (err: unknown) => err,
      );
      assert.ok(e instanceof ErpError && e.code === 'UPSTREAM_UNAVAILABLE');
    } finally {
      await a.close?.();
    }
  });

  void it('with keyPath, a lookup answer for another posting is never taken for this one', async () => {
    // a receiver (or a cache in front of it) that ignores ?key= and answers whatever it likes
    let answer: unknown = {};
    const odd = await startSimServer(async (_req, res) => sendJson(res, 200, answer));
    const a = restTestAdapter(odd.url, 2000);
    const noKeyPath = restTestAdapter(odd.url, 2000, { lookup: { type: 'get', url: `${odd.url}/postings?key={{key}}` } });
    try {
      const tx = sampleTransaction('ProductionConfirmation');
      answer = { id: 'PST-1', key: 'someone-else' };
      await assert.rejects(a.lookup(tx, ctx), (e: unknown) => e instanceof ErpError && e.erpCode === 'BAD_RESPONSE' && /not this posting's key/.test(e.message));
      answer = { id: 'PST-1' };
      await assert.rejects(a.lookup(tx, ctx), (e: unknown) => e instanceof ErpError && e.erpCode === 'BAD_RESPONSE');
      answer = [{ id: 'PST-1', key: 'someone-else' }, { id: 'PST-2', key: 'another' }];
      assert.deepEqual(await a.lookup(tx, ctx), { found: false }, 'a list without this key: not posted yet');
      answer = [{ id: 'PST-1', key: 'someone-else' }, { id: 'PST-9', key: tx.idempotencyKey }];
      assert.deepEqual(await a.lookup(tx, ctx), { found: true, erpRef: 'PST-9' }, 'the element with this key, not the first');
      answer = { id: 'PST-9', key: tx.idempotencyKey };
      assert.deepEqual(await a.lookup(tx, ctx), { found: true, erpRef: 'PST-9' });
      // without keyPath the adapter cannot tell (documented): the first record is taken
      answer = [{ id: 'PST-1', key: 'someone-else' }];
      assert.deepEqual(await noKeyPath.lookup(tx, ctx), { found: true, erpRef: 'PST-1' });
    } finally {
      await a.close?.();
      await noKeyPath.close?.();
      await odd.stop();
    }
  });

  void it('erpRef from a header, and a receiver that dedupes on Idempotency-Key', async () => {
    const dedupe = await startRestSimulator({ dedupe: true });
    const a = restTestAdapter(dedupe.url, 300, { erpRef: { from: 'header', name: 'Location' }, lookup: { type: 'receiver-dedupes' } });
    try {
      const tx = sampleTransaction('ProductionConfirmation');
      dedupe.setFault({ kind: 'timeout-after-commit' });
      await assert.rejects(a.post(tx, ctx), (e: unknown) => e instanceof ErpError && e.code === 'ERP_IN_DOUBT');
      assert.deepEqual(await a.lookup(tx, ctx), { found: false });
      const r = await a.post(tx, ctx);
      assert.deepEqual(r, { status: 'posted', erpRef: '/postings/DOC-000001' });
      assert.equal(dedupe.postings().length, 1);
    } finally {
      await a.close?.();
      await dedupe.stop();
    }
  });

  void it('a business error with a JSON body carries the receiver code and message', async () => {
    const a = restTestAdapter(sim.url, 2000);
    try {
      sim.closeOrder('7777');
      const r = await a.post(sampleTransaction('GoodsReceipt', { order: '7777' }), ctx);
      assert.deepEqual(r, { status: 'rejected', code: 'ORDER_CLOSED', reason: 'Order 7777 is closed', detail: { httpStatus: 422 } });
    } finally {
      sim.reopenOrder('7777');
      await a.close?.();
    }
  });
});

