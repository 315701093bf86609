import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { txSchemaId, ulid, type Signal, type Transaction } from '../../contracts/index.ts';
import type { Derivation, Deriver, StateAccess } from './outbox.ts';

/** Helpers shared by the outbox tests, the crash/lease children and the benchmark. */

export function tempDir(prefix = 'pb-outbox-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A counter reading; sourceId = source + monotonic sequence (the dedupe key has locality). */
export function signal(i: number, over: Partial<Signal> = {}): Signal {
  const t = new Date(Date.UTC(2026, 0, 1) + i * 10).toISOString();
  return {
    source: 'plc1',
    ref: 'count',
    value: i,
    quality: 'good',
    sourceTime: t,
    receivedAt: t,
    sourceId: `plc1:count:${String(i).padStart(12, '0')}`,
    ...over,
  };
}

export function transaction(key: string, order = '4711', workCenter = 'WC1'): Transaction {
  return {
    schema: txSchemaId('ProductionConfirmation'),
    id: ulid(),
    idempotencyKey: key,
    correlationId: `order:${order}`,
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    plant: 'P1',
    agentId: 'agent-1',
    workCenter,
    eventTime: '2026-01-01T00:00:00.000Z',
    observedTime: '2026-01-01T00:00:00.000Z',
    source: { driver: 'plc1', ref: 'count' },
    data: { order, operation: '0010', yield: { qty: 1, uom: 'EA' }, final: 'none', postingDate: '2026-01-01' },
  } as unknown as Transaction;
}

/**
 * A small deterministic Deriver for the contract suite: counts `ref: count` signals per source and emits
 * one transaction every `every` signals (key from the committed count, like a real counter rule);
 * `ref: boom` makes it throw; `ref: jump` quarantines; `ref: shadow` emits a shadow transaction.
 * The tick closes the open window.
 */
export function countingDeriver(every = 10, order = (_s: Signal) => '4711'): Deriver {
  type S = { n: number; emitted: number };
  const get = (st: StateAccess, id: string): S => (st.get(id) as S | undefined) ?? { n: 0, emitted: 0 };
  const emit = (st: StateAccess, id: string, s: S, ord: string): Derivation => {
    const tx = transaction(`P1:${id}:${s.emitted}-${s.n}`, ord);
    st.set(id, { n: s.n, emitted: s.n });
    return { items: [{ tx, shadow: false }], quarantined: [] };
  };
  return {
    derive(sig, st) {
      if (sig.ref === 'boom') {
        st.set(`count-${sig.source}`, { n: -999, emitted: -999 });
        throw new Error('rule bug');
      }
      if (sig.ref === 'jump') return { items: [], quarantined: [{ code: 'COUNTER_JUMP', reason: 'jumped', source: sig.source, payload: sig }] };
      if (sig.ref === 'shadow') return { items: [{ tx: transaction(`P1:shadow:${sig.sourceId}`), shadow: true }], quarantined: [] };
      if (sig.ref !== 'count') return { items: [], quarantined: [] };
      const id = `count-${sig.source}`;
      const s = get(st, id);
      const next = { n: s.n + 1, emitted: s.emitted };
      st.set(id, next);
      if (next.n - next.emitted >= every) return emit(st, id, next, order(sig));
      return { items: [], quarantined: [] };
    },
    tick(_now, st) {
      const out: Derivation = { items: [], quarantined: [] };
      for (const src of ['plc1', 'plc2']) {
        const id = `count-${src}`;
        const s = st.get(id) as S | undefined;
        if (s && s.n > s.emitted) out.items.push(...emit(st, id, s, '4711').items);
      }
      return out;
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
