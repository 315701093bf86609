import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { uuidv5 } from '../../contracts/index.ts';
import { checkLedger, type ErpDocument, type HubRow, type LedgerInput } from './ledger.ts';

/**
 * The ledger's self-test: a clean run passes, and each way a posting can go wrong — lost, doubled,
 * misattributed, out of order, a disagreeing store — is caught under its own kind. A ledger that cannot
 * fail proves nothing; this is where it fails.
 */

const orderOfKey = (key: string) => key.split(':')[2];

/** two orders, three windows each, produced, posted and recorded consistently everywhere */
function cleanRun(): LedgerInput {
  const produced = [];
  const hub: HubRow[] = [];
  const erp: ErpDocument[] = [];
  let doc = 0;
  for (const order of ['1000001', '1000002']) {
    for (let i = 0; i < 30; i++) produced.push({ id: `${order}-${i}`, order, good: 1, scrap: i % 10 === 0 ? 1 : 0 });
    for (let w = 0; w < 3; w++) {
      const key = `1010:WC-1:${order}:0010:good:${w * 10}-${w * 10 + 10}`;
      const ref = `${++doc}/1`;
      hub.push({ key, order, state: 'posted', erpRef: ref, quantity: 10 });
      erp.push({ ref, keyRef: uuidv5(key), order, good: 10, scrap: 1 });
    }
  }
  return { produced, erp, hub, agent: hub.map((r) => ({ key: r.key, status: 'sent', erpRef: r.erpRef })), keyRef: uuidv5, orderOfKey };
}

const kinds = (input: LedgerInput) => [...new Set(checkLedger(input).findings.map((f) => f.kind))].sort();

void describe('ledger', () => {
  void it('passes a run where every produced part is in exactly one ERP document', () => {
    const s = checkLedger(cleanRun());
    assert.deepEqual(s.findings, []);
    assert.equal(s.ok, true);
    assert.equal(s.producedQty, 66);
    assert.equal(s.erpQty, 66);
    assert.equal(s.erpDocuments, 6);
  });

  void it('catches a lost posting: the hub calls it posted, the ERP never got it', () => {
    const run = cleanRun();
    run.erp.splice(1, 1);
    const s = checkLedger(run);
    assert.equal(s.ok, false);
    assert.equal(s.lostQty, 11);
    assert.deepEqual(kinds(run), ['lost', 'wrong-order']);
    assert.ok(s.findings.some((f) => f.kind === 'lost' && f.key === run.hub[1].key), 'the lost key is named');
  });

  void it('catches a posting that never left the agent (still pending) and one the hub never heard of', () => {
    const run = cleanRun();
    const [gone] = run.hub.splice(5, 1);
    run.erp.splice(5, 1);
    run.agent[5] = { key: gone.key, status: 'sent', erpRef: null };
    assert.deepEqual(kinds(run), ['lost']);
    run.agent[5] = { key: gone.key, status: 'pending', erpRef: null };
    assert.deepEqual(kinds(run), ['lost', 'unsettled']);
  });

  void it('catches a doubled posting: two ERP documents for one key', () => {
    const run = cleanRun();
    run.erp.push({ ...run.erp[2], ref: '99/1' });
    const s = checkLedger(run);
    assert.equal(s.ok, false);
    assert.equal(s.duplicatedDocuments, 1);
    assert.equal(s.surplusQty, 11);
    assert.ok(s.findings.some((f) => f.kind === 'duplicated' && f.key === run.hub[2].key && /2 ERP documents/.test(f.detail)));
  });

  void it('catches a doubled quantity under a fresh key (a re-derived window with another identity)', () => {
    const run = cleanRun();
    const key = '1010:WC-1:1000001:0010:good:30-40';
    run.hub.push({ key, order: '1000001', state: 'posted', erpRef: '98/1', quantity: 10 });
    run.erp.push({ ref: '98/1', keyRef: uuidv5(key), order: '1000001', good: 10, scrap: 1 });
    const s = checkLedger(run);
    assert.equal(s.surplusQty, 11);
    assert.deepEqual(kinds(run), ['duplicated']);
  });

  void it('catches a misattributed posting: the document landed on another order', () => {
    const run = cleanRun();
    run.erp[0] = { ...run.erp[0], order: '1000002' };
    const s = checkLedger(run);
    assert.equal(s.ok, false);
    assert.equal(s.misattributed, 1);
    // the sums alone see one order short and one over; the attribution check names the document
    assert.ok(s.findings.some((f) => f.kind === 'misattributed' && f.key === run.hub[0].key));
    assert.ok(s.findings.some((f) => f.kind === 'lost' && f.order === '1000001'));
    assert.ok(s.findings.some((f) => f.kind === 'duplicated' && f.order === '1000002'));
  });

  void it('catches a document with another quantity than its transaction', () => {
    const run = cleanRun();
    run.erp[3] = { ...run.erp[3], good: 9 };
    assert.deepEqual(kinds(run), ['lost', 'misattributed']);
  });

  void it('catches windows of one order posted out of sequence', () => {
    const run = cleanRun();
    [run.erp[0], run.erp[1]] = [run.erp[1], run.erp[0]];
    const s = checkLedger(run);
    assert.equal(s.wrongOrder, 2);
    assert.deepEqual(kinds(run), ['wrong-order']);
  });

  void it('catches stores that disagree on the document number', () => {
    const run = cleanRun();
    run.hub[4] = { ...run.hub[4], erpRef: '77/1' };
    assert.deepEqual(kinds(run), ['store-mismatch']);
    const again = cleanRun();
    again.agent[4] = { ...again.agent[4], erpRef: '77/1' };
    assert.deepEqual(kinds(again), ['store-mismatch']);
  });

  void it('accepts business rejections only for orders meant to be rejected', () => {
    const run = cleanRun();
    for (let i = 3; i < 6; i++) run.hub[i] = { ...run.hub[i], state: 'failed', erpRef: null, errorCode: 'ERP_ORDER_CLOSED' };
    run.erp.splice(3, 3);
    for (let i = 3; i < 6; i++) run.agent[i] = { ...run.agent[i], erpRef: null };
    assert.deepEqual(kinds(run), ['failed', 'lost']);
    assert.deepEqual(checkLedger({ ...run, rejectedOrders: new Set(['1000002']) }).findings, []);
    // the order's later windows wait behind its failed one (the hub keeps an order in sequence): held, not lost
    run.hub[5] = { ...run.hub[5], state: 'queued', errorCode: null };
    assert.deepEqual(checkLedger({ ...run, rejectedOrders: new Set(['1000002']) }).findings, []);
    assert.deepEqual(kinds(run), ['failed', 'lost', 'unsettled']);
  });

  void it('reports work still queued as unsettled, never as delivered', () => {
    const run = cleanRun();
    run.hub[5] = { ...run.hub[5], state: 'queued', erpRef: null };
    run.erp.splice(5, 1);
    run.agent[5] = { ...run.agent[5], erpRef: null };
    const s = checkLedger(run);
    assert.equal(s.ok, false);
    assert.equal(s.unsettled, 1);
    assert.deepEqual(kinds(run), ['lost', 'unsettled']);
  });
});
