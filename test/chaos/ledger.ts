/**
 * The ledger every chaos scenario ends with: what the machines produced (the publisher's log, per order)
 * against what the ERP holds (the simulator's documents) against what the stores say (the hub's posting
 * rows and the agent's outbox). Pure: the scenario gathers the four lists, this decides.
 *
 * A finding is one of a small set of kinds, so a scenario's result and the summary table count them:
 * - lost: produced quantity the ERP does not hold, or a row the hub calls posted without its document
 * - duplicated: a key with more than one ERP document, or quantity beyond what was produced
 * - misattributed: a document on another order (or with another quantity) than its transaction
 * - wrong-order: an order's counter windows reached the ERP out of sequence
 * - store-mismatch: the hub and the ERP (or the agent and the hub) disagree on a document number
 * - unsettled: the run ended with work still queued (not a loss, but the run did not prove delivery)
 * - failed: a hub row failed for an order that was not meant to be rejected
 */

export interface ProducedFact {
  /** the source's own event id (or any unique id in the publisher's log) */
  id: string;
  order: string;
  good: number;
  scrap: number;
}

export interface ErpDocument {
  /** the ERP's document number, as the hub records it (SAP: group/count) */
  ref: string;
  /** what the document carries of the key: SAP's ExternalSystemConfirmation = UUIDv5(key) */
  keyRef: string;
  order: string;
  good: number;
  scrap: number;
}

export interface HubRow {
  key: string;
  order: string;
  state: string;
  erpRef: string | null;
  /** the yield quantity the hub holds for the transaction */
  quantity: number | null;
  errorCode?: string | null;
}

export interface AgentRow {
  key: string;
  /** pending | leased | sent | dead | ... */
  status: string;
  erpRef: string | null;
}

export type FindingKind = 'lost' | 'duplicated' | 'misattributed' | 'wrong-order' | 'store-mismatch' | 'unsettled' | 'failed';

export interface Finding {
  kind: FindingKind;
  order?: string;
  key?: string;
  detail: string;
}

export interface LedgerInput {
  produced: ProducedFact[];
  erp: ErpDocument[];
  hub: HubRow[];
  agent: AgentRow[];
  /** how a key appears on an ERP document (SAP: uuidv5) */
  keyRef: (key: string) => string;
  /** the order a key names (keys are business identity: plant:workCenter:order:operation:…) */
  orderOfKey: (key: string) => string | undefined;
  /**
   * orders the ERP rejects by design (closed orders): their rows fail with a business code, or stay queued
   * behind the order's failed row (the hub keeps an order's postings in sequence); nothing reaches the ERP
   */
  rejectedOrders?: ReadonlySet<string>;
}

export interface LedgerSummary {
  ok: boolean;
  orders: number;
  producedFacts: number;
  producedQty: number;
  erpDocuments: number;
  erpQty: number;
  lostQty: number;
  duplicatedDocuments: number;
  surplusQty: number;
  misattributed: number;
  wrongOrder: number;
  storeMismatches: number;
  unsettled: number;
  failed: number;
  findings: Finding[];
}

/** counter-window keys end with :<from>-<to> (DESIGN.md §3.2) */
const WINDOW = /:(\d+)-(\d+)$/;

export function checkLedger(input: LedgerInput): LedgerSummary {
  const findings: Finding[] = [];
  const rejected = input.rejectedOrders ?? new Set<string>();
  const add = (f: Finding) => findings.push(f);

  // 1. quantity per order: produced vs. what the ERP holds
  const produced = new Map<string, { good: number; scrap: number }>();
  for (const f of input.produced) {
    const p = produced.get(f.order) ?? { good: 0, scrap: 0 };
    p.good += f.good;
    p.scrap += f.scrap;
    produced.set(f.order, p);
  }
  const inErp = new Map<string, { good: number; scrap: number }>();
  for (const d of input.erp) {
    const e = inErp.get(d.order) ?? { good: 0, scrap: 0 };
    e.good += d.good;
    e.scrap += d.scrap;
    inErp.set(d.order, e);
  }
  let lostQty = 0;
  let surplusQty = 0;
  for (const order of new Set([...produced.keys(), ...inErp.keys()])) {
    const p = produced.get(order) ?? { good: 0, scrap: 0 };
    const e = inErp.get(order) ?? { good: 0, scrap: 0 };
    const expect = rejected.has(order) ? { good: 0, scrap: 0 } : p;
    for (const what of ['good', 'scrap'] as const) {
      const diff = e[what] - expect[what];
      if (diff < 0) {
        lostQty += -diff;
        add({ kind: 'lost', order, detail: `${what}: produced ${expect[what]}, the ERP holds ${e[what]}` });
      } else if (diff > 0) {
        surplusQty += diff;
        add({ kind: 'duplicated', order, detail: `${what}: produced ${expect[what]}, the ERP holds ${e[what]} (${diff} too many)` });
      }
    }
  }

  // 2. one document per key
  const hubByRef = new Map<string, HubRow>();
  for (const r of input.hub) hubByRef.set(input.keyRef(r.key), r);
  const docsByKey = new Map<string, ErpDocument[]>();
  for (const d of input.erp) docsByKey.set(d.keyRef, [...(docsByKey.get(d.keyRef) ?? []), d]);
  let duplicatedDocuments = 0;
  for (const [keyRef, docs] of docsByKey) {
    if (docs.length < 2) continue;
    duplicatedDocuments += docs.length - 1;
    const row = hubByRef.get(keyRef);
    add({ kind: 'duplicated', key: row?.key ?? keyRef, order: docs[0].order, detail: `${docs.length} ERP documents for one key: ${docs.map((d) => d.ref).join(', ')}` });
  }

  // 3. each document belongs to its transaction: same order, same quantity; the hub knows it by that number
  let misattributed = 0;
  let storeMismatches = 0;
  for (const d of input.erp) {
    const row = hubByRef.get(d.keyRef);
    if (!row) {
      storeMismatches++;
      add({ kind: 'store-mismatch', order: d.order, detail: `ERP document ${d.ref} carries a key the hub does not hold (${d.keyRef})` });
      continue;
    }
    const keyOrder = input.orderOfKey(row.key);
    if (d.order !== row.order || (keyOrder !== undefined && keyOrder !== d.order) || (row.quantity !== null && row.quantity !== d.good)) {
      misattributed++;
      add({ kind: 'misattributed', key: row.key, order: d.order, detail: `ERP document ${d.ref} is on order ${d.order} with ${d.good}; its transaction is order ${row.order} with ${row.quantity}` });
    }
    if (row.state === 'posted' && row.erpRef !== d.ref && (docsByKey.get(d.keyRef)?.length ?? 0) === 1) {
      storeMismatches++;
      add({ kind: 'store-mismatch', key: row.key, detail: `the hub records ${row.erpRef}, the ERP holds ${d.ref}` });
    }
  }

  // 4. the hub's rows: posted ones have their document, the rest is accounted for
  let unsettled = 0;
  let failed = 0;
  for (const r of input.hub) {
    const docs = docsByKey.get(input.keyRef(r.key)) ?? [];
    if (r.state === 'posted' && docs.length === 0) add({ kind: 'lost', key: r.key, order: r.order, detail: `the hub marks it posted as ${r.erpRef}, the ERP has no document` });
    else if (r.state === 'queued' && rejected.has(r.order)) {
      // held behind its order's failed row (the hub keeps an order in sequence): waits for the operator
    } else if (r.state === 'queued') {
      unsettled++;
      add({ kind: 'unsettled', key: r.key, order: r.order, detail: 'still queued at the hub' });
    } else if (r.state === 'failed' || r.state === 'discarded') {
      if (!rejected.has(r.order)) {
        failed++;
        add({ kind: 'failed', key: r.key, order: r.order, detail: `${r.state} at the hub with ${r.errorCode ?? 'no code'}` });
      }
      if (docs.length > 0) add({ kind: 'store-mismatch', key: r.key, detail: `${r.state} at the hub, yet the ERP holds ${docs.map((d) => d.ref).join(', ')}` });
    }
  }

  // 5. the agent's outbox: what it sent the hub holds; what it learnt of the ERP is the hub's number
  const hubByKey = new Map(input.hub.map((r) => [r.key, r]));
  for (const a of input.agent) {
    const row = hubByKey.get(a.key);
    if (a.status === 'sent' && !row) add({ kind: 'lost', key: a.key, detail: 'settled as sent by the agent, unknown to the hub' });
    else if (a.status === 'pending' || a.status === 'leased') {
      unsettled++;
      add({ kind: 'unsettled', key: a.key, detail: `still ${a.status} in the agent's outbox` });
    } else if (a.status === 'dead') {
      failed++;
      add({ kind: 'failed', key: a.key, detail: "dead-lettered in the agent's outbox" });
    }
    if (a.erpRef && row && a.erpRef !== row.erpRef) {
      storeMismatches++;
      add({ kind: 'store-mismatch', key: a.key, detail: `the agent records ${a.erpRef}, the hub ${row.erpRef}` });
    }
  }

  // 6. per order, counter windows reach the ERP in sequence: each starts where the previous ended
  let wrongOrder = 0;
  const lastTo = new Map<string, number>();
  for (const d of input.erp) {
    const row = hubByRef.get(d.keyRef);
    const m = row ? WINDOW.exec(row.key) : null;
    if (!row || !m) continue;
    const stream = row.key.slice(0, m.index);
    const from = Number(m[1]);
    const prev = lastTo.get(stream);
    if (prev !== undefined && from !== prev) {
      wrongOrder++;
      add({ kind: 'wrong-order', key: row.key, order: d.order, detail: `window starts at ${from}, the previous document ended at ${prev}` });
    }
    lastTo.set(stream, Number(m[2]));
  }

  const producedQty = input.produced.reduce((s, f) => s + f.good + f.scrap, 0);
  const erpQty = input.erp.reduce((s, d) => s + d.good + d.scrap, 0);
  return {
    // unsettled work fails a run too: a scenario drains before its ledger, so what is left was not delivered
    ok: findings.length === 0,
    orders: produced.size,
    producedFacts: input.produced.length,
    producedQty,
    erpDocuments: input.erp.length,
    erpQty,
    lostQty,
    duplicatedDocuments,
    surplusQty,
    misattributed,
    wrongOrder,
    storeMismatches,
    unsettled,
    failed,
    findings,
  };
}
