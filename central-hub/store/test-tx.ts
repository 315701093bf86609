import { sampleTransaction } from '../erp/sample-transactions.ts';
import type { Transaction, TransactionType } from '../../contracts/index.ts';

let n = 0;

/** A valid transaction for store, API and forwarder tests, with the identity fields chosen by the test. */
export function testTx(opts: { plant?: string; agentId?: string; workCenter?: string; order?: string; key?: string; type?: TransactionType } = {}): Transaction {
  n++;
  const order = opts.order ?? '4711';
  const tx = sampleTransaction(opts.type ?? 'ProductionConfirmation', { order });
  tx.plant = opts.plant ?? 'P1';
  tx.agentId = opts.agentId ?? 'edge-1';
  tx.workCenter = opts.workCenter ?? 'WC-1';
  tx.idempotencyKey = opts.key ?? `${tx.plant}:${tx.workCenter}:${order}:0010:ctr:${n}-${process.pid}-${Date.now()}`;
  return tx;
}
