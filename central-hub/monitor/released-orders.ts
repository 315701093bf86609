import type { Logger } from 'pino';
import type { HubConfig } from '../config/schema.ts';
import type { ErpAdapter, ReleasedOrder } from '../erp/erp-adapter.ts';
import type { HubStore } from '../store/hub-store.ts';
import { slaFor, type Breach } from './sla.ts';

/** What the hub last read from the ERP for one plant. */
export interface PlantReleased {
  plant: string;
  /** the last good read (kept when a later read fails) */
  orders: ReleasedOrder[];
  readAt: string | null;
  skipped: number;
  /** the last read failed: why, and when */
  error: { message: string; code: string; at: string } | null;
}

export type ReleasedState = 'started' | 'waiting' | 'late';

/**
 * Released-not-started (issue #20): the ERP's released orders, read per plant through the adapter every
 * monitor.releasedOrders.interval and cached; an order with no transaction in the store
 * sla.releasedNotStarted after its scheduled start is a breach. A failed read keeps the last good list
 * (the breaches stay) and is shown with its error; an adapter without releasedOrders() reads nothing.
 */
export class ReleasedOrdersWatch {
  private readonly cache = new Map<string, PlantReleased>();
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private readonly opts: { config: HubConfig; adapter: ErpAdapter; store: () => HubStore; log: Logger };

  constructor(opts: { config: HubConfig; adapter: ErpAdapter; store: () => HubStore; log: Logger }) {
    this.opts = opts;
  }

  get supported(): boolean {
    return this.opts.config.monitor.releasedOrders.enabled && typeof this.opts.adapter.releasedOrders === 'function';
  }

  private async plants(): Promise<string[]> {
    const listed = this.opts.config.monitor.releasedOrders.plants;
    if (listed) return [...new Set(listed)];
    const agents = await this.opts.store().listAgents();
    return [...new Set([...this.opts.config.agents.flatMap((a) => a.plants), ...agents.flatMap((a) => a.plants)])].sort();
  }

  /** reads every plant's released orders once (concurrent callers share the read) */
  poll(now = Date.now()): Promise<void> {
    this.polling ??= this.read(now).finally(() => (this.polling = undefined));
    return this.polling;
  }

  private async read(now: number): Promise<void> {
    if (!this.supported) return;
    const { adapter, config, log } = this.opts;
    const since = new Date(now - config.monitor.releasedOrders.lookback);
    for (const plant of await this.plants()) {
      const prev = this.cache.get(plant) ?? { plant, orders: [], readAt: null, skipped: 0, error: null };
      try {
        const r = await adapter.releasedOrders!(plant, since, { attempt: 1, signal: AbortSignal.timeout(60_000) });
        this.cache.set(plant, { plant, orders: r.orders, readAt: new Date(now).toISOString(), skipped: r.skipped, error: null });
        if (r.skipped > 0) log.warn({ plant, skipped: r.skipped }, 'The ERP answered released orders the hub cannot read; they are left out');
      } catch (err) {
        const e = err as { message?: string; code?: string };
        this.cache.set(plant, { ...prev, error: { message: String(e.message ?? err).slice(0, 500), code: String(e.code ?? 'INTERNAL'), at: new Date(now).toISOString() } });
        log.warn({ plant, err }, 'Reading released orders from the ERP failed; the last list read stays in use');
      }
    }
  }

  start(): void {
    if (this.timer || !this.supported) return;
    const tick = () => void this.poll().catch((err: unknown) => this.opts.log.warn({ err }, 'Reading released orders failed'));
    tick();
    this.timer = setInterval(tick, this.opts.config.monitor.releasedOrders.interval);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.polling?.catch(() => {});
  }

  /** every cached order with its state: started (a transaction exists), waiting (within its window), late */
  async orders(now = Date.now()): Promise<Array<{ plant: PlantReleased; orders: Array<ReleasedOrder & { state: ReleasedState; transactions: number; firstEventTime: string | null }> }>> {
    const store = this.opts.store();
    const out = [];
    for (const p of [...this.cache.values()].sort((a, b) => a.plant.localeCompare(b.plant))) {
      const window = slaFor(this.opts.config.monitor, p.plant).releasedNotStarted;
      const activity = new Map<string, { transactions: number; firstEventTime: string }>();
      for (let i = 0; i < p.orders.length; i += 500) {
        for (const a of await store.orderActivity({ plant: p.plant, orders: p.orders.slice(i, i + 500).map((o) => o.order) })) activity.set(a.order, a);
      }
      out.push({
        plant: p,
        orders: p.orders.map((o) => {
          const a = activity.get(o.order);
          const state: ReleasedState = a ? 'started' : now - Date.parse(o.scheduledStart) > window ? 'late' : 'waiting';
          return { ...o, state, transactions: a?.transactions ?? 0, firstEventTime: a?.firstEventTime ?? null };
        }),
      });
    }
    return out;
  }

  async breaches(now = Date.now()): Promise<Breach[]> {
    const out: Breach[] = [];
    for (const { plant, orders } of await this.orders(now)) {
      const window = slaFor(this.opts.config.monitor, plant.plant).releasedNotStarted;
      for (const o of orders) {
        if (o.state !== 'late') continue;
        const late = now - Date.parse(o.scheduledStart);
        out.push({
          id: `released-not-started:${o.plant}:${o.order}`,
          kind: 'released-not-started',
          plant: o.plant,
          workCenter: o.workCenter,
          order: o.order,
          valueMs: late,
          objectiveMs: window,
          since: o.scheduledStart,
          message: `order ${o.order}${o.workCenter ? ` on ${o.workCenter}` : ''} is released in the ERP and scheduled to start at ${o.scheduledStart}; no transaction for it has reached the hub (window ${Math.round(window / 60_000)} min)`,
          count: 0,
          transactions: [],
        });
      }
    }
    return out;
  }
}
