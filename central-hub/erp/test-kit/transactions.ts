import { newTraceparent, txSchemaId, ulid, type ProductionConfirmation } from '../../../contracts/index.ts';

/** A valid ProductionConfirmation for tests: window n of an order, 10 parts each. */
export function confirmation(order: string, n: number, opts: { plant?: string; agentId?: string; qty?: number } = {}): ProductionConfirmation {
  const qty = opts.qty ?? 10;
  const plant = opts.plant ?? '1010';
  const t = new Date(Date.UTC(2026, 2, 2, 8, 0, n)).toISOString();
  return {
    schema: txSchemaId('ProductionConfirmation'),
    id: ulid(),
    idempotencyKey: `${plant}:WC-01:${order}:0010:sim/good:${n * qty}-${(n + 1) * qty}`,
    correlationId: `order:${order}`,
    traceparent: newTraceparent(),
    plant,
    agentId: opts.agentId ?? 'test-agent',
    workCenter: 'WC-01',
    eventTime: t,
    observedTime: t,
    source: { driver: 'sim', ref: 'good' },
    data: {
      order,
      operation: '0010',
      yield: { qty, uom: 'EA' },
      final: 'none',
      postingDate: '2026-03-02',
      window: { from: t, to: t, counterRef: 'sim/good', counterStart: n * qty, counterEnd: (n + 1) * qty, resetDetected: false },
      derivedFrom: { events: 1, sourceIds: [`sim/good/${n}`], firstEventTime: t, lastEventTime: t },
    },
  };
}
