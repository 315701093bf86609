import type { Logger } from 'pino';
import type { HubConfig } from '../config/schema.ts';
import type { AgentStatusRow, DeadLetterHold, HubStore, OpenOrder } from '../store/hub-store.ts';
import { latencyObjective, percentiles, slaFor, type Breach, type BreachTx, type LatencyStat, type SlaReport } from './sla.ts';

/** orders and dead letters one cycle reads at most (the API says when a report was cut: `truncated`) */
const MAX_ROWS = 20_000;

export interface SlaEngineOptions {
  config: HubConfig;
  /** read per cycle: the hub's store is opened after the engine is built */
  store: () => HubStore;
  log: Logger;
  /** further breaches computed elsewhere (released-not-started), merged into each report */
  extraBreaches?: (now: number) => Promise<Breach[]>;
}

/**
 * The SLA checks (issue #20): one cycle reads the store (and the heartbeats it holds) and names every
 * breach with its plant, work center, order and transactions. The hub runs a cycle every
 * monitor.interval; the APIs and /metrics serve the last one, so a scrape or a page costs no query.
 */
export class SlaEngine {
  private last: SlaReport | undefined;
  private running: Promise<SlaReport> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly opts: SlaEngineOptions;
  /** listeners told about every finished cycle (alerts, metrics) */
  private readonly listeners: Array<(r: SlaReport) => void | Promise<void>> = [];

  constructor(opts: SlaEngineOptions) {
    this.opts = opts;
  }

  onReport(fn: (r: SlaReport) => void | Promise<void>): void {
    this.listeners.push(fn);
  }

  /** the last report; runs a cycle when there is none yet, or when it is older than `maxAgeMs` */
  async report(maxAgeMs = this.opts.config.monitor.interval * 2, now = Date.now()): Promise<SlaReport> {
    if (this.last && now - Date.parse(this.last.at) <= maxAgeMs) return this.last;
    return this.run(now);
  }

  /** one cycle; concurrent callers share it */
  run(now = Date.now()): Promise<SlaReport> {
    this.running ??= this.cycle(now).finally(() => (this.running = undefined));
    return this.running;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.run().catch((err: unknown) => this.opts.log.warn({ err }, 'An SLA check cycle failed; the next one tries again'));
    }, this.opts.config.monitor.interval);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => {});
  }

  private async cycle(now: number): Promise<SlaReport> {
    const started = performance.now();
    const store = this.opts.store();
    const { monitor } = this.opts.config;
    const [latency, orders, holds, agents, extra] = await Promise.all([
      this.latency(store, now),
      store.openOrders({ receivedBefore: new Date(now), plants: null, limit: MAX_ROWS, keysPerOrder: monitor.keysPerBreach }),
      store.deadLetterHolds({ plants: null, limit: MAX_ROWS }),
      store.listAgents(),
      this.opts.extraBreaches?.(now) ?? Promise.resolve([]),
    ]);
    const breaches: Breach[] = [...latency.breaches, ...this.acceptedNotCompleted(orders, holds, now), ...this.agentChecks(agents, now), ...extra];
    const report: SlaReport = {
      at: new Date(now).toISOString(),
      tookMs: Math.round((performance.now() - started) * 100) / 100,
      windowMs: monitor.latencyWindow,
      latency: latency.stats,
      open: openPerPlant(orders, holds),
      breaches,
    };
    this.last = report;
    for (const l of this.listeners) {
      try {
        await l(report);
      } catch (err) {
        this.opts.log.warn({ err }, 'A listener of the SLA checks failed');
      }
    }
    return report;
  }

  private async latency(store: HubStore, now: number): Promise<{ stats: LatencyStat[]; breaches: Breach[] }> {
    const { monitor } = this.opts.config;
    const since = new Date(now - monitor.latencyWindow);
    const groups = new Map<string, { plant: string; type: string; values: number[] }>();
    for (const s of await store.postingLatencies({ since, plants: null })) {
      const k = `${s.plant}\u0000${s.type}`;
      let g = groups.get(k);
      if (!g) groups.set(k, (g = { plant: s.plant, type: s.type, values: [] }));
      g.values.push(s.latencyMs);
    }
    const stats: LatencyStat[] = [];
    const breaches: Breach[] = [];
    for (const g of [...groups.values()].sort((a, b) => a.plant.localeCompare(b.plant) || a.type.localeCompare(b.type))) {
      const p = percentiles(g.values);
      const { percentile, objective } = latencyObjective(slaFor(monitor, g.plant), g.type);
      const ok = p[percentile] <= objective;
      stats.push({ plant: g.plant, type: g.type, count: g.values.length, p50Ms: p.p50, p95Ms: p.p95, p99Ms: p.p99, percentile, objectiveMs: objective, ok });
      if (ok) continue;
      const slow = await store.slowPostings({ since, plant: g.plant, type: g.type, overMs: objective, limit: monitor.keysPerBreach });
      const worst = slow[0];
      breaches.push({
        id: `latency:${g.plant}:${g.type}`,
        kind: 'latency',
        plant: g.plant,
        workCenter: worst?.workCenter ?? null,
        order: worst?.order ?? null,
        valueMs: p[percentile],
        objectiveMs: objective,
        since: since.toISOString(),
        message: `${g.type} ${percentile} latency ${seconds(p[percentile])} over the last ${seconds(monitor.latencyWindow)} is above the objective ${seconds(objective)} (${g.values.length} postings)`,
        count: g.values.length,
        transactions: slow.map((s) => ({ idempotencyKey: s.idempotencyKey, workCenter: s.workCenter, order: s.order, latencyMs: s.latencyMs })),
      });
    }
    return { stats, breaches };
  }

  /**
   * One breach per order whose oldest transaction not posted is older than the plant's
   * acceptedNotCompleted: queued (retrying), in doubt, or a dead letter with what it holds back.
   */
  private acceptedNotCompleted(orders: OpenOrder[], holds: DeadLetterHold[], now: number): Breach[] {
    const { monitor } = this.opts.config;
    const byOrder = new Map<string, { plant: string; order: string; open?: OpenOrder; dead: DeadLetterHold[] }>();
    const entry = (plant: string, order: string) => {
      const k = `${plant}\u0000${order}`;
      let e = byOrder.get(k);
      if (!e) byOrder.set(k, (e = { plant, order, dead: [] }));
      return e;
    };
    for (const o of orders) entry(o.plant, o.order).open = o;
    for (const d of holds) entry(d.plant, d.order).dead.push(d);
    const out: Breach[] = [];
    for (const e of byOrder.values()) {
      const limit = slaFor(monitor, e.plant).acceptedNotCompleted;
      const dead = e.dead.sort((a, b) => a.seq - b.seq)[0];
      const oldest = Math.min(...[e.open?.oldestReceivedAt, dead?.receivedAt].filter((t): t is string => !!t).map((t) => Date.parse(t)));
      const age = now - oldest;
      if (!(age > limit)) continue;
      const heldBack = dead?.heldBack ?? 0;
      const queued = e.open?.queued ?? 0;
      const wc = dead?.workCenter ?? e.open?.workCenter ?? null;
      const txs: BreachTx[] = [];
      if (dead) txs.push({ idempotencyKey: dead.idempotencyKey, workCenter: dead.workCenter, order: e.order, state: 'dead-letter' });
      for (const k of e.open?.keys ?? []) {
        if (txs.length >= monitor.keysPerBreach) break;
        const state = dead && k.seq > dead.seq ? 'held-back' : k.inDoubt ? 'in-doubt' : 'queued';
        txs.push({ idempotencyKey: k.idempotencyKey, workCenter: wc, order: e.order, state, latencyMs: now - Date.parse(k.receivedAt) });
      }
      const what = dead
        ? `a dead letter (${dead.errorCode ?? 'failed'}${dead.errorMessage ? `: ${dead.errorMessage.slice(0, 200)}` : ''}) holds back ${heldBack} transaction(s)`
        : `${queued} transaction(s) not posted${e.open!.inDoubt > 0 ? `, ${e.open!.inDoubt} in doubt` : ''}`;
      out.push({
        id: `accepted-not-completed:${e.plant}:${e.order}`,
        kind: 'accepted-not-completed',
        plant: e.plant,
        workCenter: wc,
        order: e.order,
        valueMs: age,
        objectiveMs: limit,
        since: new Date(oldest).toISOString(),
        message: `order ${e.order}: ${what}; the oldest was accepted ${seconds(age)} ago (SLA ${seconds(limit)})`,
        count: queued + e.dead.length,
        heldBack,
        ...(dead ? { deadLetter: { idempotencyKey: dead.idempotencyKey, errorCode: dead.errorCode, errorMessage: dead.errorMessage } } : {}),
        transactions: txs,
      });
    }
    return out.sort((a, b) => b.valueMs - a.valueMs);
  }

  /** agent offline; and, from a live agent's last heartbeat: backlog, drivers not up, drivers gone silent */
  private agentChecks(agents: AgentStatusRow[], now: number): Breach[] {
    const { monitor } = this.opts.config;
    const out: Breach[] = [];
    for (const a of agents) {
      // an agent registered but never heard from is not "offline" (it may not be installed yet): the fleet page shows it
      if (!a.lastHeartbeatAt || !a.heartbeat) continue;
      const hb = a.heartbeat;
      const plant = hb.plant;
      const sla = slaFor(monitor, plant);
      const base = { plant, workCenter: null, order: null, agentId: a.id, transactions: [] as BreachTx[] };
      const seen = Date.parse(a.lastHeartbeatAt);
      const silent = now - seen;
      if (silent > sla.agentOffline) {
        out.push({ ...base, id: `agent-offline:${plant}:${a.id}`, kind: 'agent-offline', valueMs: silent, objectiveMs: sla.agentOffline, since: a.lastHeartbeatAt, message: `agent ${a.id} sent no heartbeat for ${seconds(silent)} (SLA ${seconds(sla.agentOffline)}); ${hb.outbox.pending} transaction(s) were waiting in its outbox` });
        continue;
      }
      const backlog = hb.outbox.oldestPendingAgeS * 1000 + (now - seen);
      if (hb.outbox.pending > 0 && backlog > sla.backlog) {
        out.push({ ...base, id: `backlog:${plant}:${a.id}`, kind: 'backlog', valueMs: backlog, objectiveMs: sla.backlog, since: new Date(now - backlog).toISOString(), count: hb.outbox.pending, message: `agent ${a.id}: ${hb.outbox.pending} transaction(s) not yet accepted by the hub, the oldest ${seconds(backlog)} old (SLA ${seconds(sla.backlog)})` });
      }
      for (const d of hb.drivers) {
        const dbase = { ...base, driver: d.name };
        if (d.state !== 'up') {
          const down = now - Date.parse(d.since);
          if (down > sla.driverUnhealthy) {
            out.push({ ...dbase, id: `driver-unhealthy:${plant}:${a.id}:${d.name}`, kind: 'driver-unhealthy', valueMs: down, objectiveMs: sla.driverUnhealthy, since: d.since, message: `agent ${a.id}: driver ${d.name} (${d.type}) is ${d.state} for ${seconds(down)}${d.message ? `: ${d.message.slice(0, 300)}` : ''}` });
          }
        } else if (d.lastValueAt) {
          const quiet = now - Date.parse(d.lastValueAt);
          if (quiet > sla.dataWatchdog) {
            out.push({ ...dbase, id: `data-watchdog:${plant}:${a.id}:${d.name}`, kind: 'data-watchdog', valueMs: quiet, objectiveMs: sla.dataWatchdog, since: d.lastValueAt, message: `agent ${a.id}: driver ${d.name} (${d.type}) is up but sent no value for ${seconds(quiet)} (watchdog ${seconds(sla.dataWatchdog)})` });
          }
        }
      }
    }
    return out;
  }
}

function openPerPlant(orders: OpenOrder[], holds: DeadLetterHold[]): SlaReport['open'] {
  const per = new Map<string, SlaReport['open'][number]>();
  const of = (plant: string) => {
    let p = per.get(plant);
    if (!p) per.set(plant, (p = { plant, queued: 0, inDoubt: 0, heldBack: 0, deadLetters: 0, oldestAt: null }));
    return p;
  };
  for (const o of orders) {
    const p = of(o.plant);
    p.queued += o.queued;
    p.inDoubt += o.inDoubt;
    if (!p.oldestAt || o.oldestReceivedAt < p.oldestAt) p.oldestAt = o.oldestReceivedAt;
  }
  // the first dead letter of an order holds back every later queued transaction of it: counted once per order
  const firstPerOrder = new Map<string, DeadLetterHold>();
  for (const d of holds) {
    const p = of(d.plant);
    p.deadLetters++;
    if (!p.oldestAt || d.receivedAt < p.oldestAt) p.oldestAt = d.receivedAt;
    const k = `${d.plant}\u0000${d.order}`;
    const f = firstPerOrder.get(k);
    if (!f || d.seq < f.seq) firstPerOrder.set(k, d);
  }
  for (const d of firstPerOrder.values()) of(d.plant).heldBack += d.heldBack;
  return [...per.values()].sort((a, b) => a.plant.localeCompare(b.plant));
}

const seconds = (ms: number) => (ms >= 120_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 1000)} s`);
