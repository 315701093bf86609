import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { HubMetrics } from '../contracts/index.ts';

/** The hub's Prometheus metrics (DESIGN.md §8). One registry per hub instance. */
export function createHubMetrics() {
  const registry = new Registry();
  return {
    registry,
    received: new Counter({ name: HubMetrics.transactionsReceived, help: 'Transactions accepted (new) from agents', labelNames: ['plant'], registers: [registry] }),
    duplicate: new Counter({ name: HubMetrics.transactionsDuplicate, help: 'Transactions received again (answered with the original outcome)', registers: [registry] }),
    rejected: new Counter({ name: HubMetrics.transactionsRejected, help: 'Transactions rejected at ingest, by code', labelNames: ['code'], registers: [registry] }),
    erpPosted: new Counter({ name: HubMetrics.erpPosted, help: 'Transactions posted to the ERP', labelNames: ['adapter'], registers: [registry] }),
    erpFailed: new Counter({
      name: HubMetrics.erpFailed,
      help: 'Failed ERP posting attempts by class (business, transient, in_doubt, internal), and dead letters after the last attempt (exhausted; in_doubt_unresolved: the ERP may hold the document)',
      labelNames: ['adapter', 'class'],
      registers: [registry],
    }),
    erpSeconds: new Histogram({
      name: HubMetrics.erpPostingSeconds,
      help: 'Duration of ERP posting calls',
      labelNames: ['adapter'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    queue: new Gauge({ name: HubMetrics.postingQueue, help: 'Transactions by posting state', labelNames: ['state'], registers: [registry] }),
    rateLimited: new Counter({ name: HubMetrics.requestsRateLimited, help: 'Requests refused with 429, by route and by what was limited (address, caller)', labelNames: ['route', 'by'], registers: [registry] }),
    heartbeats: new Counter({ name: HubMetrics.heartbeatsReceived, help: 'Agent heartbeats received', registers: [registry] }),
    agents: new Gauge({ name: HubMetrics.agentsOnline, help: 'Agents by fleet status', labelNames: ['status'], registers: [registry] }),
    sla: {
      latency: new Gauge({ name: HubMetrics.slaLatency, help: 'Event to ERP document latency over the monitor window, by percentile', labelNames: ['plant', 'type', 'quantile'], registers: [registry] }),
      latencyObjective: new Gauge({ name: HubMetrics.slaLatencyObjective, help: 'The latency objective of a plant and transaction type', labelNames: ['plant', 'type', 'percentile'], registers: [registry] }),
      breaches: new Gauge({ name: HubMetrics.slaBreaches, help: 'SLA breaches open now, by kind', labelNames: ['plant', 'kind'], registers: [registry] }),
      open: new Gauge({ name: HubMetrics.openTransactions, help: 'Transactions accepted and not posted, by state', labelNames: ['plant', 'state'], registers: [registry] }),
      oldestOpen: new Gauge({ name: HubMetrics.oldestOpenSeconds, help: 'Age of the oldest transaction accepted and not posted', labelNames: ['plant'], registers: [registry] }),
      cycleSeconds: new Gauge({ name: HubMetrics.monitorCycleSeconds, help: 'Duration of the last SLA check cycle', registers: [registry] }),
      lastRun: new Gauge({ name: HubMetrics.monitorLastRun, help: 'When the last SLA check cycle ran (Unix time)', registers: [registry] }),
    },
  };
}
export type HubMetricsSet = ReturnType<typeof createHubMetrics>;
