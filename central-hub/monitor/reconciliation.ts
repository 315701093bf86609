import type { Logger } from 'pino';
import type { HubConfig } from '../config/schema.ts';
import type { ErpAdapter, ErpDocument } from '../erp/erp-adapter.ts';
import type { HubStore, OrderTransaction } from '../store/hub-store.ts';

/** transactions of one order reconciled at most (more: the result says `truncated`) */
const MAX_TX = 50_000;

export type FindingKind = 'missing-in-erp' | 'duplicate-in-erp' | 'unknown-in-erp' | 'quantity-drift';

export interface Finding {
  kind: FindingKind;
  operation: string | null;
  /** the hub's transaction (missing, duplicate) */
  idempotencyKey?: string;
  /** the ERP's documents concerned */
  erpRefs: string[];
  quantity?: number | null;
  message: string;
}

export interface OperationTotals {
  operation: string | null;
  /** from the agent's heartbeat, when it reports counts for the order (null: not reported) */
  agentCounted: number | null;
  hubAccepted: number;
  hubPosted: number;
  erpHeld: number;
  /** erpHeld − hubPosted */
  drift: number;
}

export interface Reconciliation {
  plant: string;
  order: string;
  at: string;
  status: 'clean' | 'drift' | 'error';
  tolerance: number;
  operations: OperationTotals[];
  findings: Finding[];
  /** the ERP's rows that were not readable documents */
  skipped: number;
  truncated: boolean;
  error?: { code: string; message: string };
}

/** `0010` and `10` are the same operation */
const op = (o: string | null | undefined) => (o === null || o === undefined || o === '' ? null : o.replace(/^0+(?=\d)/, ''));

/**
 * Reconciliation (issue #20): per order and operation, what the hub accepted and posted against what the ERP
 * holds (read back through the adapter's postedFor), key by key: a posted transaction whose document the
 * ERP lacks, a key the ERP holds twice, a document no transaction of the hub explains (posted by someone
 * else), and a quantity difference beyond monitor.reconciliation.tolerance. Production confirmations only
 * (the documents postedFor reads). Each result is stored (its history is the table).
 */
export class Reconciler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private readonly opts: { config: HubConfig; adapter: ErpAdapter; store: () => HubStore; log: Logger };

  constructor(opts: { config: HubConfig; adapter: ErpAdapter; store: () => HubStore; log: Logger }) {
    this.opts = opts;
  }

  get supported(): boolean {
    return typeof this.opts.adapter.postedFor === 'function' && typeof this.opts.adapter.externalIdOf === 'function';
  }

  /** one order, stored */
  async reconcileOrder(plant: string, order: string, now = Date.now()): Promise<Reconciliation> {
    const r = await this.compute(plant, order, now);
    await this.opts.store().saveReconciliation({ plant, order, at: r.at, status: r.status, findings: r.findings.length, detail: r });
    if (r.status !== 'clean') this.opts.log.warn({ plant, order, status: r.status, findings: r.findings.length, ...(r.error ? { error: r.error.message } : {}) }, 'Reconciliation found the ERP and the hub apart');
    return r;
  }

  /** the orders given, or those active in the last `monitor.reconciliation.activeWithin` (per plant if given) */
  async run(opts: { plant?: string; order?: string } = {}, now = Date.now()): Promise<Reconciliation[]> {
    const store = this.opts.store();
    const c = this.opts.config.monitor.reconciliation;
    const orders =
      opts.order !== undefined && opts.plant !== undefined
        ? [{ plant: opts.plant, order: opts.order }]
        : (await store.activeOrders({ since: new Date(now - c.activeWithin), plants: opts.plant !== undefined ? [opts.plant] : null, limit: c.maxOrders })).filter(
            (o) => opts.order === undefined || o.order === opts.order,
          );
    const out: Reconciliation[] = [];
    for (const o of orders) out.push(await this.reconcileOrder(o.plant, o.order, now));
    return out;
  }

  start(): void {
    if (this.timer || !this.supported || !this.opts.config.monitor.reconciliation.enabled) return;
    this.timer = setInterval(() => {
      this.running ??= this.run()
        .catch((err: unknown) => this.opts.log.warn({ err }, 'A reconciliation round failed; the next one tries again'))
        .finally(() => (this.running = undefined));
    }, this.opts.config.monitor.reconciliation.interval);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private async compute(plant: string, order: string, now: number): Promise<Reconciliation> {
    const { adapter } = this.opts;
    const tolerance = this.opts.config.monitor.reconciliation.tolerance;
    const base = { plant, order, at: new Date(now).toISOString(), tolerance };
    const all = await this.opts.store().orderTransactions({ plant, order, limit: MAX_TX + 1 });
    const txs = all.slice(0, MAX_TX).filter((t) => t.type === 'production-confirmation');
    if (!this.supported) return { ...base, status: 'error', operations: [], findings: [], skipped: 0, truncated: false, error: { code: 'UNSUPPORTED', message: `the ${adapter.name} adapter reads no documents back` } };
    let docs: ErpDocument[];
    let skipped: number;
    try {
      ({ documents: docs, skipped } = await adapter.postedFor!(plant, order, { attempt: 1, signal: AbortSignal.timeout(60_000) }));
    } catch (err) {
      const e = err as { code?: string; message?: string };
      return { ...base, status: 'error', operations: [], findings: [], skipped: 0, truncated: false, error: { code: String(e.code ?? 'INTERNAL'), message: String(e.message ?? err).slice(0, 500) } };
    }
    const byExt = new Map<string, ErpDocument[]>();
    for (const d of docs) if (d.externalId) byExt.set(d.externalId, [...(byExt.get(d.externalId) ?? []), d]);
    const findings: Finding[] = [];
    const explained = new Set<ErpDocument>();
    const totals = new Map<string, OperationTotals>();
    const tot = (o: string | null) => {
      const k = o ?? '';
      let t = totals.get(k);
      if (!t) totals.set(k, (t = { operation: o, agentCounted: null, hubAccepted: 0, hubPosted: 0, erpHeld: 0, drift: 0 }));
      return t;
    };
    for (const t of txs) {
      const o = op(t.operation);
      const q = t.quantity ?? 0;
      if (t.state !== 'discarded') tot(o).hubAccepted += q;
      if (t.state === 'posted') tot(o).hubPosted += q;
      const mine = byExt.get(adapter.externalIdOf!(t.idempotencyKey).toLowerCase()) ?? [];
      for (const d of mine) explained.add(d);
      if (t.state === 'posted' && mine.length === 0) findings.push(missing(t, o));
      if (mine.length > 1) {
        findings.push({ kind: 'duplicate-in-erp', operation: o, idempotencyKey: t.idempotencyKey, erpRefs: mine.map((d) => d.erpRef), quantity: q, message: `the ERP holds ${mine.length} documents for one transaction (${mine.map((d) => d.erpRef).join(', ')}): cancel the extra ones` });
      }
    }
    for (const d of docs) {
      tot(op(d.operation)).erpHeld += d.quantity ?? 0;
      if (!explained.has(d)) findings.push({ kind: 'unknown-in-erp', operation: op(d.operation), erpRefs: [d.erpRef], quantity: d.quantity, message: `document ${d.erpRef} (${d.quantity ?? '?'} ${d.uom ?? ''}) is not a posting of this hub: entered in the ERP by someone else, or by another system` });
    }
    const operations = [...totals.values()].sort((a, b) => String(a.operation).localeCompare(String(b.operation)));
    for (const t of operations) {
      t.drift = round(t.erpHeld - t.hubPosted);
      if (Math.abs(t.drift) > tolerance) {
        findings.push({ kind: 'quantity-drift', operation: t.operation, erpRefs: [], quantity: t.drift, message: `operation ${t.operation ?? '(none)'}: the ERP holds ${round(t.erpHeld)}, the hub posted ${round(t.hubPosted)} (tolerance ${tolerance})` });
      }
    }
    return { ...base, status: findings.length > 0 ? 'drift' : 'clean', operations, findings, skipped, truncated: all.length > MAX_TX };
  }
}

function missing(t: OrderTransaction, o: string | null): Finding {
  return { kind: 'missing-in-erp', operation: o, idempotencyKey: t.idempotencyKey, erpRefs: t.erpRef ? [t.erpRef] : [], quantity: t.quantity, message: `posted as ${t.erpRef ?? '?'} but the ERP holds no document for it (deleted or cancelled there?)` };
}

const round = (n: number) => Math.round(n * 1000) / 1000;
