import {
  newTraceparent,
  transactionSchema,
  txSchemaId,
  ulid,
  type GoodsReceipt,
  type MaterialConsumption,
  type ProductionConfirmation,
  type Transaction,
  type TransactionType,
} from '../../contracts/index.ts';

/** Valid transactions for adapter tests, simulators' demos and the benchmark. */

let seq = 0;

/** A valid transaction of the given type with a fresh idempotency key. */
export function sampleTransaction(type: TransactionType, opts: { order?: string; key?: string } = {}): Transaction {
  seq++;
  const order = opts.order ?? '1000009';
  const now = new Date().toISOString();
  const envelope = {
    id: ulid(),
    idempotencyKey: opts.key ?? `p1:WC-07:${order}:0010:ctrGood:${seq * 100}-${seq * 100 + 100}:${ulid()}`,
    correlationId: `order:${order}`,
    traceparent: newTraceparent(),
    plant: '1010',
    agentId: 'edge-p1-01',
    workCenter: 'WC-07',
    eventTime: now,
    observedTime: now,
    source: { driver: 'simulator', ref: 'Line7.GoodCount' },
  };
  const derivedFrom = { events: 1, sourceIds: [`s-${seq}`], firstEventTime: now, lastEventTime: now };
  let tx: Transaction;
  if (type === 'ProductionConfirmation') {
    tx = {
      schema: txSchemaId(type),
      ...envelope,
      data: {
        order,
        operation: '0010',
        yield: { qty: 100, uom: 'EA' },
        scrap: { qty: 2, uom: 'EA' },
        final: 'none',
        postingDate: now.slice(0, 10),
        window: { from: now, to: now, counterRef: 'Line7.GoodCount', counterStart: seq * 100, counterEnd: seq * 100 + 100, resetDetected: false },
        derivedFrom,
      },
    } satisfies ProductionConfirmation;
  } else if (type === 'MaterialConsumption') {
    tx = {
      schema: txSchemaId(type),
      ...envelope,
      data: { order, operation: '0010', material: 'RM-1', batch: 'B42', storageLocation: '0001', quantity: { qty: 12.5, uom: 'KG' }, movement: 'issue', postingDate: now.slice(0, 10), derivedFrom },
    } satisfies MaterialConsumption;
  } else {
    tx = {
      schema: txSchemaId(type),
      ...envelope,
      data: { order, material: 'FG-7', batch: 'F1', storageLocation: '0002', quantity: { qty: 100, uom: 'EA' }, postingDate: now.slice(0, 10), derivedFrom },
    } satisfies GoodsReceipt;
  }
  transactionSchema.parse(tx);
  return tx;
}

