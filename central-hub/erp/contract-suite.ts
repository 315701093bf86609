import assert from 'node:assert/strict';
import fc from 'fast-check';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createServer } from 'node:net';
import type { Transaction, TransactionType } from '../../contracts/index.ts';
import { sampleTransaction } from './sample-transactions.ts';
import { ErpError, type ErpAdapter, type ErpPostResult } from './erp-adapter.ts';
import type { HostileBody, SimFault } from './sim-kit.ts';

export { sampleTransaction };

/**
 * The one suite every ERP adapter passes against its simulator (STYLE.md habit 6). It proves the
 * promises the posting service builds on: a definite answer is a document number or the ERP's own
 * business code; anything else is an ErpError of the right class; an in-doubt posting is found by
 * lookup() so that each key gives exactly one document; and no garbage is ever read as "posted".
 */

export interface ContractSimulator {
  url: string;
  stop(): Promise<void>;
  /** how many documents in the ERP carry this transaction's key */
  documentsFor(tx: Transaction): number;
  closeOrder(order: string): void;
  reopenOrder(order: string): void;
  setFault(fault: SimFault): void;
  clearFaults(): void;
}

export interface ContractHarness {
  name: string;
  /** the transaction types the adapter posts; the suite uses only these */
  supports: TransactionType[];
  /** the ERP's business code for a posting against a closed order */
  closedOrderCode: string;
  startSimulator(): Promise<ContractSimulator>;
  createAdapter(url: string, opts: { timeoutMs: number }): ErpAdapter;
}

/** A port nothing listens on. */
export function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

async function erpErrorOf(p: Promise<unknown>): Promise<ErpError> {
  try {
    const r = await p;
    assert.fail(`expected an ErpError, got ${JSON.stringify(r)}`);
  } catch (err) {
    if (!(err instanceof ErpError)) throw err;
    return err;
  }
}

function assertPosted(r: ErpPostResult): asserts r is Extract<ErpPostResult, { status: 'posted' }> {
  assert.equal(r.status, 'posted', `expected posted, got ${JSON.stringify(r)}`);
  assert.ok(typeof (r as { erpRef?: unknown }).erpRef === 'string' && (r as { erpRef: string }).erpRef.length > 0, 'erpRef is a non-empty string');
}

const ctx = { attempt: 1 };
const TIMEOUT_MS = 400;

export function runErpAdapterContract(h: ContractHarness): void {
  void describe(`ErpAdapter contract: ${h.name}`, () => {
    let sim: ContractSimulator;
    let adapter: ErpAdapter;

    before(async () => {
      sim = await h.startSimulator();
      adapter = h.createAdapter(sim.url, { timeoutMs: TIMEOUT_MS });
    });
    after(async () => {
      await adapter.close?.();
      await sim.stop();
    });
    beforeEach(() => sim.clearFaults());

    for (const type of h.supports) {
      void it(`posts a ${type}, returns the document number, and lookup finds exactly it`, async () => {
        const tx = sampleTransaction(type);
        assert.deepEqual(await adapter.lookup(tx, ctx), { found: false });
        const r = await adapter.post(tx, ctx);
        assertPosted(r);
        assert.equal(sim.documentsFor(tx), 1);
        assert.deepEqual(await adapter.lookup(tx, ctx), { found: true, erpRef: r.erpRef });
      });
    }

    const type = h.supports[0];

    void it('healthcheck is ok against a healthy ERP and fails (without throwing) against a closed port', async () => {
      assert.equal((await adapter.healthcheck()).ok, true);
      const dead = h.createAdapter(`http://127.0.0.1:${await closedPort()}`, { timeoutMs: TIMEOUT_MS });
      try {
        const hc = await dead.healthcheck();
        assert.equal(hc.ok, false);
        assert.ok(hc.message && hc.message.length > 0);
      } finally {
        await dead.close?.();
      }
    });

    void it('connection refused is UPSTREAM_UNAVAILABLE (nothing was sent)', async () => {
      const dead = h.createAdapter(`http://127.0.0.1:${await closedPort()}`, { timeoutMs: TIMEOUT_MS });
      try {
        const tx = sampleTransaction(type);
        assert.equal((await erpErrorOf(dead.post(tx, ctx))).code, 'UPSTREAM_UNAVAILABLE');
        assert.equal((await erpErrorOf(dead.lookup(tx, ctx))).code, 'UPSTREAM_UNAVAILABLE');
      } finally {
        await dead.close?.();
      }
    });

    for (const mode of ['hold', 'destroy'] as const) {
      void it(`in doubt after a commit (${mode}): ERP_IN_DOUBT, then lookup finds the one document`, async () => {
        const tx = sampleTransaction(type);
        sim.setFault({ kind: 'timeout-after-commit', mode });
        const err = await erpErrorOf(adapter.post(tx, ctx));
        assert.equal(err.code, 'ERP_IN_DOUBT');
        const found = await adapter.lookup(tx, ctx);
        assert.equal(found.found, true);
        assert.equal(sim.documentsFor(tx), 1);
      });
    }

    void it('in doubt without a commit: lookup finds nothing, the re-post gives exactly one document', async () => {
      const tx = sampleTransaction(type);
      sim.setFault({ kind: 'timeout-before-commit', mode: 'hold' });
      assert.equal((await erpErrorOf(adapter.post(tx, ctx))).code, 'ERP_IN_DOUBT');
      assert.deepEqual(await adapter.lookup(tx, ctx), { found: false });
      assertPosted(await adapter.post(tx, ctx));
      assert.equal(sim.documentsFor(tx), 1);
    });

    void it('the posting-service loop (post; on ERP_IN_DOUBT look up, post only if not found) gives one document per key', async () => {
      const txs = Array.from({ length: 12 }, () => sampleTransaction(type));
      const faults: SimFault[] = [
        { kind: 'timeout-after-commit', mode: 'hold' },
        { kind: 'timeout-before-commit', mode: 'destroy' },
        { kind: 'status', status: 503 },
        { kind: 'hostile', body: 'truncated-json', commit: true },
      ];
      for (const [i, tx] of txs.entries()) {
        if (i % 2 === 0) sim.setFault(faults[(i / 2) % faults.length]);
        let inDoubt = false;
        for (let attempt = 1; attempt <= 5; attempt++) {
          if (inDoubt) {
            const l = await adapter.lookup(tx, { attempt });
            if (l.found) break;
          }
          try {
            assertPosted(await adapter.post(tx, { attempt }));
            break;
          } catch (err) {
            assert.ok(err instanceof ErpError, String(err));
            if (err.code === 'ERP_IN_DOUBT') inDoubt = true;
          }
        }
        assert.equal(sim.documentsFor(tx), 1, `exactly one document for transaction ${i}`);
      }
    });

    void it('property: any sequence of faults, with lookup before every re-send, gives exactly one document per key', async () => {
      const fault = fc.oneof(
        fc.constantFrom<SimFault>(
          { kind: 'status', status: 500 },
          { kind: 'status', status: 502 },
          { kind: 'status', status: 503, retryAfterS: 1 },
          { kind: 'status', status: 429, retryAfterS: 1 },
          { kind: 'lock' },
          { kind: 'timeout-after-commit', mode: 'destroy' },
          { kind: 'timeout-before-commit', mode: 'destroy' },
        ),
        fc.record({
          kind: fc.constant('hostile' as const),
          body: fc.constantFrom<HostileBody>('html', 'truncated-json', 'wrong-content-type', 'empty'),
          commit: fc.boolean(),
          status: fc.constantFrom(200, 201, 502),
        }),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(fault, { maxLength: 6 }), fc.integer({ min: 1, max: 3 }), async (faults, n) => {
          sim.clearFaults();
          for (const f of faults) sim.setFault(f);
          const txs = Array.from({ length: n }, () => sampleTransaction(type));
          for (const tx of txs) {
            let posted = false;
            for (let attempt = 1; attempt <= faults.length + 3 && !posted; attempt++) {
              try {
                // the posting service's rule: any attempt after the first looks the key up first
                if (attempt > 1 && (await adapter.lookup(tx, { attempt })).found) {
                  posted = true;
                  break;
                }
                const r = await adapter.post(tx, { attempt });
                assert.notEqual(r.status, 'rejected', `a fault was read as a business rejection: ${JSON.stringify(r)}`);
                posted = true;
              } catch (err) {
                if (!(err instanceof ErpError)) throw err;
              }
            }
            assert.ok(posted, 'posted within the attempts');
            assert.equal(sim.documentsFor(tx), 1);
          }
        }),
        { numRuns: 15 },
      );
      sim.clearFaults();
    });

    void it(`a closed order is rejected with the ERP's code (${h.closedOrderCode}); after reopening it posts once`, async () => {
      const order = `9${String(Date.now()).slice(-6)}`;
      const tx = sampleTransaction(type, { order });
      sim.closeOrder(order);
      const r = await adapter.post(tx, ctx);
      assert.equal(r.status, 'rejected', JSON.stringify(r));
      assert.equal((r as { code: string }).code, h.closedOrderCode);
      assert.ok((r as { reason: string }).reason.length > 0);
      assert.equal(sim.documentsFor(tx), 0);
      sim.reopenOrder(order);
      assert.deepEqual(await adapter.lookup(tx, ctx), { found: false });
      assertPosted(await adapter.post(tx, ctx));
      assert.equal(sim.documentsFor(tx), 1);
    });

    void it('503 and 429 are UPSTREAM_UNAVAILABLE with retryAfterMs from Retry-After, and nothing is posted', async () => {
      const tx = sampleTransaction(type);
      sim.setFault({ kind: 'status', status: 503, count: 1 });
      assert.equal((await erpErrorOf(adapter.post(tx, ctx))).code, 'UPSTREAM_UNAVAILABLE');
      sim.setFault({ kind: 'status', status: 429, retryAfterS: 7, count: 1 });
      const e = await erpErrorOf(adapter.post(tx, ctx));
      assert.equal(e.code, 'UPSTREAM_UNAVAILABLE');
      assert.equal(e.retryAfterMs, 7000);
      assert.equal(e.retriable, true);
      assert.equal(sim.documentsFor(tx), 0);
      assertPosted(await adapter.post(tx, ctx));
      assert.equal(sim.documentsFor(tx), 1);
    });

    void it('a lock is UPSTREAM_UNAVAILABLE (retry later), never a business rejection', async () => {
      const tx = sampleTransaction(type);
      sim.setFault({ kind: 'lock' });
      assert.equal((await erpErrorOf(adapter.post(tx, ctx))).code, 'UPSTREAM_UNAVAILABLE');
      assert.equal(sim.documentsFor(tx), 0);
    });

    void it('a 500 is an ErpError; lookup decides whether to post again', async () => {
      const tx = sampleTransaction(type);
      sim.setFault({ kind: 'status', status: 500 });
      await erpErrorOf(adapter.post(tx, ctx));
      assert.deepEqual(await adapter.lookup(tx, ctx), { found: false });
      assertPosted(await adapter.post(tx, ctx));
      assert.equal(sim.documentsFor(tx), 1);
    });

    const hostile: HostileBody[] = ['html', 'truncated-json', 'huge', 'wrong-content-type', 'empty'];
    for (const body of hostile) {
      void it(`a garbage success answer (${body}) after a commit is ERP_IN_DOUBT (or posted only as verified by lookup)`, async () => {
        const tx = sampleTransaction(type);
        sim.setFault({ kind: 'hostile', body, commit: true });
        const outcome = await adapter.post(tx, ctx).then(
          (r) => r,
          (err: unknown) => err,
        );
        const found = await adapter.lookup(tx, ctx);
        assert.equal(found.found, true);
        if (outcome instanceof ErpError) assert.equal(outcome.code, 'ERP_IN_DOUBT');
        else {
          // an adapter may verify an unreadable success with a lookup of its own (d365-mes: SendMessage may return nothing)
          assertPosted(outcome as ErpPostResult);
          assert.equal((outcome as { erpRef: string }).erpRef, (found as { erpRef: string }).erpRef);
        }
        assert.equal(sim.documentsFor(tx), 1);
      });
      void it(`a garbage error answer (${body}, 502) is an ErpError and a garbage lookup answer is never "not found"`, async () => {
        const tx = sampleTransaction(type);
        sim.setFault({ kind: 'hostile', body, status: 502 });
        await erpErrorOf(adapter.post(tx, ctx));
        sim.setFault({ kind: 'hostile', body, status: 200, on: 'get' });
        assert.equal((await erpErrorOf(adapter.lookup(tx, ctx))).code, 'UPSTREAM_UNAVAILABLE');
        assert.equal(sim.documentsFor(tx), 0);
      });
    }

    void it('an HTML error page with a 400 is not read as a business rejection', async () => {
      const tx = sampleTransaction(type);
      sim.setFault({ kind: 'hostile', body: 'html', status: 400 });
      await erpErrorOf(adapter.post(tx, ctx));
    });

    void it('parallel posts of distinct keys give distinct documents', async () => {
      const txs = Array.from({ length: 16 }, () => sampleTransaction(type));
      const results = await Promise.all(txs.map((tx) => adapter.post(tx, ctx)));
      const refs = new Set<string>();
      for (const [i, r] of results.entries()) {
        assertPosted(r);
        refs.add(r.erpRef);
        assert.equal(sim.documentsFor(txs[i]), 1);
      }
      assert.equal(refs.size, txs.length);
    });
  });
}
