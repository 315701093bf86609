import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Secret, type Signal, type Transaction } from '../../contracts/index.ts';
import { testTx } from '../../central-hub/store/test-tx.ts';
import { openOutbox, type Deriver, type Outbox } from '../outbox/outbox.ts';

/**
 * Forwarder test kit: a real outbox on disk whose "rule" turns every signal into one transaction, so a
 * test controls exactly which transactions exist. The signal value picks the work center, order, plant,
 * and can make the transaction invalid (`bad`) or oversized (`big`).
 */
export interface TxSpec {
  wc?: string;
  order?: string;
  plant?: string;
  bad?: boolean;
  big?: boolean;
}

export function txDeriver(agentId: string): Deriver {
  return {
    derive: (sig: Signal) => {
      const v = (sig.value ?? {}) as TxSpec;
      const tx: Transaction = testTx({ agentId, plant: v.plant ?? 'P1', workCenter: v.wc ?? 'WC-1', order: v.order ?? 'O-1', key: sig.sourceId });
      if (v.bad) (tx.data as { yield: { qty: number } }).yield = { qty: -1 } as never;
      if (v.big) tx.data.derivedFrom.sourceIds = Array.from({ length: 50 }, (_, i) => `${i}-${'x'.repeat(290)}`);
      return { items: [{ tx, shadow: false }], quarantined: [] };
    },
    tick: () => ({ items: [], quarantined: [] }),
  };
}

let seq = 0;
/** the default key (the signal's sourceId) starts with the plant, as the hub requires of every key */
export function signal(spec: TxSpec = {}, key?: string): Signal {
  seq++;
  const now = new Date().toISOString();
  return { source: 'test', ref: 'r', value: spec as Record<string, unknown>, quality: 'good', sourceTime: now, receivedAt: now, sourceId: key ?? `${spec.plant ?? 'P1'}:k-${process.pid}-${Date.now()}-${seq}` };
}

export function testOutbox(agentId = 'edge-1'): { outbox: Outbox; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'pb-fwd-'));
  const outbox = openOutbox({ path: join(dir, 'outbox.db'), synchronous: 'normal', rules: txDeriver(agentId), groupCommitDelayMs: 1 });
  return { outbox, dir };
}

export const secret = (s: string) => new Secret(s, 'test');

export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
