import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseConfig, type MaterialConsumption, type ProductionConfirmation } from '../../../contracts/index.ts';
import { testLogger } from '../../../test/helpers/log.ts';
import { SqliteHubStore } from '../../store/sqlite/sqlite-store.ts';
import { erpConfigSchema } from '../config.ts';
import { ErpError } from '../erp-adapter.ts';
import { PostingService } from '../../posting/posting-service.ts';
import { sampleTransaction } from '../sample-transactions.ts';
import { toD365Message } from './d365-mes-adapter.ts';
import { d365TestAdapter } from './d365-test-kit.ts';
import { startD365Simulator, type D365Simulator } from './d365-simulator.ts';

const ctx = { attempt: 1 };

void describe('d365-mes mapping', () => {
  void it('a confirmation is a ReportFinished line with the key in the reference field', () => {
    const tx = sampleTransaction('ProductionConfirmation') as ProductionConfirmation;
    tx.data.final = 'final';
    const m = toD365Message(tx, 'PlantBridgeReference');
    assert.equal(m.type, 'ProdProductionOrderReportFinished');
    assert.deepEqual(m.content, {
      ProductionOrderNumber: '1000009',
      PlantBridgeReference: tx.idempotencyKey,
      ReportFinishedLines: [
        {
          ReportedGoodQuantity: 100,
          ReportedErrorQuantity: 2,
          ReportAsFinishedDate: tx.data.postingDate,
          ExecutedDateTime: tx.data.window.to,
          FromOperationNumber: 10,
          ToOperationNumber: 10,
          EndJob: 'Yes',
          PostNow: 'Yes',
        },
      ],
    });
  });

  void it('consumption is a PickingList line; a reversal is a negative quantity', () => {
    const tx = sampleTransaction('MaterialConsumption') as MaterialConsumption;
    tx.data.movement = 'reversal';
    const m = toD365Message(tx, 'Ref');
    assert.equal(m.type, 'ProdProductionOrderPickingList');
    assert.deepEqual((m.content.PickingListLines as unknown[])[0], {
      ItemNumber: 'RM-1',
      ConsumptionBOMQuantity: -12.5,
      BOMUnitSymbol: 'KG',
      ConsumptionDate: tx.data.postingDate,
      OperationNumber: 10,
      ItemBatchNumber: 'B42',
    });
  });

  void it('example.yaml is a valid erp: section', () => {
    const doc = parseYaml(readFileSync(new URL('./example.yaml', import.meta.url), 'utf8')) as { erp: unknown };
    assert.equal(parseConfig(erpConfigSchema, doc.erp).type, 'd365-mes');
  });
});

void describe('d365-mes adapter against the simulator', () => {
  let sim: D365Simulator;
  before(async () => (sim = await startD365Simulator({ processingIntervalMs: 0 })));
  after(() => sim.stop());
  beforeEach(() => {
    sim.clearFaults();
    sim.setLatency(0);
  });

  void it('without waiting, posted means Queued; a later Failed message is no longer found by lookup', async () => {
    const a = d365TestAdapter(sim.url, 2000);
    try {
      sim.closeOrder('4711');
      const tx = sampleTransaction('ProductionConfirmation', { order: '4711' });
      const r = await a.post(tx, ctx);
      assert.equal(r.status, 'posted');
      assert.deepEqual((r as { detail?: unknown }).detail, { state: 'Queued' });
      const m = sim.messages().at(-1)!;
      assert.equal((r as { erpRef: string }).erpRef, m.MessageId);
      assert.equal(m.Company, 'USMF');
      assert.equal(m.MessageQueue, 'JmgMES3P');
      assert.equal(m.Reference, tx.idempotencyKey);
      assert.deepEqual(await a.lookup(tx, ctx), { found: true, erpRef: m.MessageId });
      for (let i = 0; i < 3; i++) sim.processQueue();
      assert.equal(sim.messages().at(-1)!.MessageState, 'Failed');
      assert.deepEqual(await a.lookup(tx, ctx), { found: false });
    } finally {
      sim.reopenOrder('4711');
      await a.close?.();
    }
  });

  void it('messages of one order are sent one at a time in call order; other orders go in parallel', async () => {
    const a = d365TestAdapter(sim.url, 5000, { concurrency: 8 });
    try {
      sim.setLatency(20);
      const same = Array.from({ length: 5 }, () => sampleTransaction('ProductionConfirmation', { order: '5001' }));
      const other = Array.from({ length: 5 }, (_, i) => sampleTransaction('ProductionConfirmation', { order: `60${i}` }));
      const t0 = performance.now();
      await Promise.all([...same, ...other].map((tx) => a.post(tx, ctx)));
      const elapsed = performance.now() - t0;
      const arrived = sim.messages().filter((m) => m.ProductionOrderNumber === '5001').map((m) => m.Reference);
      assert.deepEqual(arrived, same.map((t) => t.idempotencyKey));
      // five serial calls of >= 20 ms each for one order: it cannot be faster than that
      assert.ok(elapsed >= 5 * 20, `per-order calls were not serial (${elapsed} ms)`);
    } finally {
      await a.close?.();
    }
  });

  void it('an empty SendMessage answer is verified by a lookup', async () => {
    const voidSim = await startD365Simulator({ returnsVoid: true, processingIntervalMs: 0 });
    const a = d365TestAdapter(voidSim.url, 2000);
    try {
      const tx = sampleTransaction('GoodsReceipt');
      const r = await a.post(tx, ctx);
      assert.equal(r.status, 'posted');
      assert.equal((r as { erpRef: string }).erpRef, voidSim.messages()[0].MessageId);
    } finally {
      await a.close?.();
      await voidSim.stop();
    }
  });

  void it('429 carries Retry-After; an unknown company is a business rejection; a bad secret fails the healthcheck', async () => {
    const a = d365TestAdapter(sim.url, 2000);
    const wrongCompany = d365TestAdapter(sim.url, 2000, { company: 'XXXX' });
    const badSecret = d365TestAdapter(sim.url, 2000, { auth: { type: 'oauth-client-credentials', tokenUrl: `${sim.tokenUrl}`, clientId: 'plantbridge-hub-app', clientSecret: '${WRONG}' } });
    try {
      await a.healthcheck();
      sim.setFault({ kind: 'status', status: 429, retryAfterS: 12 });
      await assert.rejects(a.post(sampleTransaction('ProductionConfirmation'), ctx), (e: unknown) => e instanceof ErpError && e.code === 'UPSTREAM_UNAVAILABLE' && e.retryAfterMs === 12_000);
      const r = await wrongCompany.post(sampleTransaction('ProductionConfirmation'), ctx);
      assert.equal(r.status, 'rejected');
      assert.match((r as { reason: string }).reason, /Company 'XXXX' does not exist/);
      const hc = await badSecret.healthcheck();
      assert.equal(hc.ok, false);
      assert.match(hc.message ?? '', /clientSecret/);
      await assert.rejects(badSecret.post(sampleTransaction('ProductionConfirmation'), ctx), (e: unknown) => e instanceof ErpError && e.erpCode === 'AUTH');
    } finally {
      await a.close?.();
      await wrongCompany.close?.();
      await badSecret.close?.();
    }
  });

  void it('a revoked token is renewed once, transparently', async () => {
    const a = d365TestAdapter(sim.url, 2000);
    try {
      assert.equal((await a.post(sampleTransaction('MaterialConsumption'), ctx)).status, 'posted');
      const fetches = sim.stats().tokenFetches;
      sim.revokeTokens();
      assert.equal((await a.post(sampleTransaction('MaterialConsumption'), ctx)).status, 'posted');
      assert.equal(sim.stats().tokenFetches, fetches + 1);
    } finally {
      await a.close?.();
    }
  });

  void it('waiting for processing follows its own message: an earlier Failed message of the key (before a replay) is not its outcome', async () => {
    // reads of the message entity lag 300 ms behind SendMessage, as D365's may
    const lag = await startD365Simulator({ processingIntervalMs: 20, entityLagMs: 300 });
    const a = d365TestAdapter(lag.url, 2000);
    const b = d365TestAdapter(lag.url, 2000, { waitForProcessing: '5s', pollInterval: '20ms' });
    try {
      lag.closeOrder('4720');
      const tx = sampleTransaction('ProductionConfirmation', { order: '4720' });
      assert.equal((await a.post(tx, ctx)).status, 'posted');
      const deadline = Date.now() + 5000;
      while (lag.messages()[0].MessageState !== 'Failed' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(lag.messages()[0].MessageState, 'Failed');
      // the order is fixed; the replay sends a new message for the same key
      lag.reopenOrder('4720');
      const r = await b.post(tx, { attempt: 2 });
      assert.equal(r.status, 'posted', JSON.stringify(r));
      assert.equal((r as { erpRef: string }).erpRef, lag.messages()[1].MessageId);
      assert.equal(lag.messages()[1].MessageState, 'Processed');
    } finally {
      await a.close?.();
      await b.close?.();
      await lag.stop();
    }
  });

  void it('Start before the first confirmation of an order and End after a final one once it is processed, when configured', async () => {
    const a = d365TestAdapter(sim.url, 2000, { startOrderOnFirstConfirmation: true, endOrderOnFinal: true, waitForProcessing: '2s', pollInterval: '10ms' });
    const processor = setInterval(() => sim.processQueue(), 10);
    try {
      const first = sampleTransaction('ProductionConfirmation', { order: '7001' });
      const last = sampleTransaction('ProductionConfirmation', { order: '7001' }) as ProductionConfirmation;
      last.data.final = 'final';
      await a.post(first, ctx);
      await a.post(last, ctx);
      assert.deepEqual(
        sim.messages().filter((m) => m.ProductionOrderNumber === '7001').map((m) => m.MessageType),
        ['ProdProductionOrderStart', 'ProdProductionOrderReportFinished', 'ProdProductionOrderReportFinished', 'ProdProductionOrderEnd'],
      );
    } finally {
      clearInterval(processor);
      await a.close?.();
    }
  });
});

void describe('d365-mes: a final confirmation resolved by lookup still ends the order, once', () => {
  /** A store holding one final confirmation of `order`, a posting service on `sim` with endOrderOnFinal, closed after the test. */
  async function finalPosting(t: { after: (fn: () => Promise<void>) => void }, sim: D365Simulator, order: string, extra: Record<string, unknown> = {}) {
    const store = new SqliteHubStore(join(mkdtempSync(join(tmpdir(), 'pb-d365-end-')), 'hub.db'));
    const adapter = d365TestAdapter(sim.url, 500, { endOrderOnFinal: true, ...extra });
    const service = new PostingService({ store, adapter, log: testLogger(), idleMs: 10, leaseMs: 600, inDoubtWaitMs: 100, retryMaxDelayMs: 100 });
    t.after(async () => {
      await service.stop();
      await adapter.close?.();
      await store.close();
      await sim.stop();
    });
    const tx = sampleTransaction('ProductionConfirmation', { order }) as ProductionConfirmation;
    tx.data.final = 'final';
    await store.ingest('edge-1', [tx], new Date());
    return { store, adapter, service, tx };
  }

  const posted = async (store: SqliteHubStore) => {
    const deadline = Date.now() + 10_000;
    while ((await store.counts()).posted !== 1) {
      if (Date.now() > deadline) throw new Error('timed out waiting for the posting');
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  /** The order's messages after the message processor ran (three passes: a failing message is Failed after 3). */
  const processed = (sim: D365Simulator, order: string) => {
    for (let i = 0; i < 3; i++) sim.processQueue();
    return sim.messages().filter((m) => m.ProductionOrderNumber === order).map((m) => `${m.MessageType}:${m.MessageState}`);
  };

  void it('the confirmation committed but its answer was lost: the lookup finds it processed and the order is ended', async (t) => {
    const sim = await startD365Simulator({ processingIntervalMs: 20 });
    const { store, service } = await finalPosting(t, sim, '7101');
    sim.setFault({ kind: 'timeout-after-commit', mode: 'destroy' });
    service.start();
    await posted(store);
    assert.deepEqual(processed(sim, '7101'), ['ProdProductionOrderReportFinished:Processed', 'ProdProductionOrderEnd:Processed']);
  });

  void it('the hub died after it had ended the order: the next owner finds the confirmation and does not end the order again', async (t) => {
    const sim = await startD365Simulator({ processingIntervalMs: 20 });
    const { store, service, tx } = await finalPosting(t, sim, '7102');
    // a first claim posts (confirmation, processed, and End) and dies before recording the outcome: its lease expires
    const dead = d365TestAdapter(sim.url, 500, { endOrderOnFinal: true, waitForProcessing: '2s', pollInterval: '10ms' });
    const [job] = await store.claimPostings(1, 300, 'dead-hub#1');
    assert.equal((await dead.post(tx, { attempt: job.attempt })).status, 'posted');
    await dead.close?.();
    service.start();
    await posted(store);
    assert.equal((await store.getTransaction(tx.idempotencyKey))?.attempts, 2, 'resolved by the second claim');
    // a second End of an ended order would fail in D365's message processor
    assert.deepEqual(processed(sim, '7102'), ['ProdProductionOrderReportFinished:Processed', 'ProdProductionOrderEnd:Processed']);
  });

  const until = async (what: string, fn: () => Promise<boolean>) => {
    const deadline = Date.now() + 10_000;
    while (!(await fn())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const messagesOf = (sim: D365Simulator, order: string) => sim.messages().filter((m) => m.ProductionOrderNumber === order).map((m) => `${m.MessageType}:${m.MessageState}`);

  void it('waiting for processing: a final confirmation that fails in processing does not end the order; after the fix the replay posts it and ends the order once', async (t) => {
    const sim = await startD365Simulator({ processingIntervalMs: 20 });
    const { store, service, tx } = await finalPosting(t, sim, '7103', { waitForProcessing: '3s', pollInterval: '20ms' });
    sim.failProcessing(tx.idempotencyKey, 'Item FG-1 has no default warehouse.');
    service.start();
    await until('dead letter', async () => (await store.counts()).failed === 1);
    assert.equal((await store.getTransaction(tx.idempotencyKey))?.errorCode, 'ERP_BUSINESS');
    await new Promise((r) => setTimeout(r, 100)); // a processor pass or more
    assert.deepEqual(messagesOf(sim, '7103'), ['ProdProductionOrderReportFinished:Failed'], 'no End: the order stays open');
    // the master data is fixed; the replay posts the confirmation and then ends the order
    sim.fixProcessing(tx.idempotencyKey);
    assert.equal(await store.replay((await store.getTransaction(tx.idempotencyKey))!.seq, 'operator'), true);
    await posted(store);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(messagesOf(sim, '7103'), ['ProdProductionOrderReportFinished:Failed', 'ProdProductionOrderReportFinished:Processed', 'ProdProductionOrderEnd:Processed']);
  });

  void it('without waiting: the End is sent only once a later attempt finds the confirmation Processed, never for one that failed', async (t) => {
    const sim = await startD365Simulator({ processingIntervalMs: 0 });
    const { store, service, tx } = await finalPosting(t, sim, '7104');
    sim.failProcessing(tx.idempotencyKey, 'Item FG-1 has no default warehouse.');
    service.start();
    await until('the confirmation sent', async () => sim.messages().length >= 1);
    await new Promise((r) => setTimeout(r, 300)); // later attempts find it still Queued: no End
    assert.deepEqual(messagesOf(sim, '7104'), ['ProdProductionOrderReportFinished:Queued']);
    sim.processQueue();
    assert.deepEqual(messagesOf(sim, '7104'), ['ProdProductionOrderReportFinished:Failed']);
    await until('sent again', async () => sim.messages().length === 2);
    assert.ok(!sim.messages().some((m) => m.MessageType === 'ProdProductionOrderEnd'), 'no End after a failed confirmation');
    // fixed: the new message is processed, and the next attempt finds it and ends the order
    sim.fixProcessing(tx.idempotencyKey);
    sim.processQueue();
    await posted(store);
    assert.deepEqual(processed(sim, '7104'), ['ProdProductionOrderReportFinished:Failed', 'ProdProductionOrderReportFinished:Processed', 'ProdProductionOrderEnd:Processed']);
  });

  void it('an End that fails transiently is not lost: the next attempt finds the processed confirmation and sends it, once', async (t) => {
    const sim = await startD365Simulator({ processingIntervalMs: 0 });
    const { store, service } = await finalPosting(t, sim, '7105', { waitForProcessing: '3s', pollInterval: '10ms' });
    service.start();
    await until('the confirmation sent', async () => sim.messages().length >= 1);
    // D365 is unavailable when the End goes out, after the confirmation was processed
    sim.setFault({ kind: 'status', status: 503, on: 'post' });
    sim.processQueue();
    await posted(store);
    assert.deepEqual(processed(sim, '7105'), ['ProdProductionOrderReportFinished:Processed', 'ProdProductionOrderEnd:Processed']);
  });
});
