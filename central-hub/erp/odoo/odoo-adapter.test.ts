import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { parseConfig, PlantBridgeError, uuidv5, type MaterialConsumption, type ProductionConfirmation } from '../../../contracts/index.ts';
import { erpConfigSchema } from '../config.ts';
import { ErpError } from '../erp-adapter.ts';
import { sampleTransaction } from '../sample-transactions.ts';
import { odooTestAdapter } from './odoo-test-kit.ts';
import { startOdooSimulator, type OdooSimulator } from './odoo-simulator.ts';

const ctx = { attempt: 1 };

void describe('odoo config', () => {
  void it('jsonrpc needs database and login', () => {
    assert.throws(
      () => parseConfig(erpConfigSchema, { type: 'odoo', url: 'https://x.odoo.com', protocol: 'jsonrpc', apiKey: '${K}' }),
      (err: unknown) => err instanceof PlantBridgeError && /database: is required with protocol jsonrpc/.test(err.message) && /login: is required/.test(err.message),
    );
  });
  void it('example.yaml is a valid erp: section', () => {
    const doc = parseYaml(readFileSync(new URL('./example.yaml', import.meta.url), 'utf8')) as { erp: unknown };
    assert.equal(parseConfig(erpConfigSchema, doc.erp).type, 'odoo');
  });
});

for (const protocol of ['json2', 'jsonrpc'] as const) {
  void describe(`odoo adapter (${protocol}) against the simulator`, () => {
    let sim: OdooSimulator;
    before(async () => (sim = await startOdooSimulator({ productQty: 150 })));
    after(() => sim.stop());

    void it('a confirmation adds to qty_producing and records the key in the same write', async () => {
      const a = odooTestAdapter(sim.url, 2000, { protocol });
      try {
        const tx = sampleTransaction('ProductionConfirmation', { order: `WH/MO/${protocol}-1` });
        const r = await a.post(tx, ctx);
        const mo = sim.orders().find((m) => m.name === `WH/MO/${protocol}-1`)!;
        assert.deepEqual(r.status, 'posted');
        assert.equal((r as { erpRef: string }).erpRef, `WH/MO/${protocol}-1@${uuidv5(tx.idempotencyKey).slice(0, 8)}`);
        assert.equal(mo.qty_producing, 100);
        assert.ok(mo.ref.split('\n').includes(uuidv5(tx.idempotencyKey)));
        // a re-post of the same key (after an unclear outcome nobody looked up) changes nothing
        assert.equal((await a.post(tx, ctx)).status, 'posted');
        assert.equal(sim.orders().find((m) => m.name === `WH/MO/${protocol}-1`)!.qty_producing, 100);
        assert.equal(sim.applied(uuidv5(tx.idempotencyKey)), 1);
      } finally {
        await a.close?.();
      }
    });

    void it('a final confirmation that gets the backorder wizard is "needs attention"; a replay with skip_backorder finishes it once', async () => {
      const order = `WH/MO/${protocol}-2`;
      const a = odooTestAdapter(sim.url, 2000, { protocol });
      const b = odooTestAdapter(sim.url, 2000, { protocol, markDoneContext: { skip_backorder: true } });
      try {
        const tx = sampleTransaction('ProductionConfirmation', { order }) as ProductionConfirmation;
        tx.data.final = 'final';
        const r = await a.post(tx, ctx);
        assert.equal(r.status, 'rejected');
        assert.equal((r as { code: string }).code, 'odoo/wizard:mrp.production.backorder');
        assert.equal(sim.orders().find((m) => m.name === order)!.state, 'progress');
        // a replay is attempt 2: the posting service looks the key up first. The quantity is recorded, but
        // the order is not done, so the lookup must not answer "found" (that would skip Mark Done)
        assert.deepEqual(await b.lookup(tx, { attempt: 2 }), { found: false });
        const replay = await b.post(tx, { attempt: 2 });
        assert.equal(replay.status, 'posted');
        assert.equal((await b.lookup(tx, { attempt: 3 })).found, true, 'done now: found');
        const mo = sim.orders().find((m) => m.name === order)!;
        assert.equal(mo.state, 'done');
        assert.equal(mo.qty_producing, 100);
        assert.equal(sim.applied(uuidv5(tx.idempotencyKey)), 1);
        // Odoo's own UserError is a business rejection with its name as the code
        const zero = sampleTransaction('ProductionConfirmation', { order: `WH/MO/${protocol}-3` }) as ProductionConfirmation;
        zero.data.final = 'final';
        zero.data.yield.qty = 0;
        const z = await b.post(zero, ctx);
        assert.deepEqual([z.status, (z as { code: string }).code], ['rejected', 'odoo/UserError']);
      } finally {
        await a.close?.();
        await b.close?.();
      }
    });

    void it('consumption sets quantity and picked on the component move; a reversal subtracts; too large a reversal is refused', async () => {
      const order = `WH/MO/${protocol}-4`;
      const a = odooTestAdapter(sim.url, 2000, { protocol });
      try {
        const issue = sampleTransaction('MaterialConsumption', { order }) as MaterialConsumption;
        const rev = sampleTransaction('MaterialConsumption', { order }) as MaterialConsumption;
        rev.data.movement = 'reversal';
        rev.data.quantity.qty = 2.5;
        const big = sampleTransaction('MaterialConsumption', { order }) as MaterialConsumption;
        big.data.movement = 'reversal';
        big.data.quantity.qty = 50;
        assert.equal((await a.post(issue, ctx)).status, 'posted');
        assert.equal((await a.post(rev, ctx)).status, 'posted');
        const r = await a.post(big, ctx);
        assert.deepEqual([r.status, (r as { code: string }).code], ['rejected', 'odoo/negative-consumption']);
        const mo = sim.orders().find((m) => m.name === order)!;
        const move = sim.moves().find((m) => m.mo === mo.id && m.product_code === 'RM-1')!;
        assert.equal(move.quantity, 10);
        assert.equal(move.picked, true);
        const unknown = sampleTransaction('MaterialConsumption', { order }) as MaterialConsumption;
        unknown.data.material = 'NOPE';
        assert.equal(((await a.post(unknown, ctx)) as { code: string }).code, 'odoo/no-component-move');
      } finally {
        await a.close?.();
      }
    });

    void it('a wrong API key is UPSTREAM_UNAVAILABLE (AUTH) and fails the healthcheck', async () => {
      const a = odooTestAdapter(sim.url, 2000, { protocol, apiKey: '${WRONG}' });
      try {
        assert.equal((await a.healthcheck()).ok, false);
        await assert.rejects(a.post(sampleTransaction('GoodsReceipt'), ctx), (e: unknown) => e instanceof ErpError && e.code === 'UPSTREAM_UNAVAILABLE' && e.erpCode === 'AUTH');
      } finally {
        await a.close?.();
      }
    });
  });
}

void describe('odoo adapter setup problems', () => {
  void it('a missing reference field fails the healthcheck and is never a business rejection', async () => {
    const sim = await startOdooSimulator({ referenceField: 'x_other' });
    const a = odooTestAdapter(sim.url, 2000);
    try {
      const hc = await a.healthcheck();
      assert.equal(hc.ok, false);
      assert.match(hc.message ?? '', /x_plantbridge_keys/);
      await assert.rejects(a.post(sampleTransaction('ProductionConfirmation'), ctx), (e: unknown) => e instanceof ErpError && e.code === 'UPSTREAM_UNAVAILABLE');
    } finally {
      await a.close?.();
      await sim.stop();
    }
  });

  void it('Odoo 16 and older: quantity_done on the component move', async () => {
    const sim = await startOdooSimulator({ quantityField: 'quantity_done' });
    const a = odooTestAdapter(sim.url, 2000, { quantityField: 'quantity_done' });
    try {
      assert.equal((await a.post(sampleTransaction('MaterialConsumption', { order: 'MO16' }), ctx)).status, 'posted');
      assert.equal(sim.moves().find((m) => m.product_code === 'RM-1')!.quantity, 12.5);
    } finally {
      await a.close?.();
      await sim.stop();
    }
  });
});
