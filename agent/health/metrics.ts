import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { AgentMetrics } from '../../contracts/index.ts';

/** The agent's Prometheus metrics (DESIGN.md §8). One registry per agent instance: no global state. */
export function createAgentMetrics() {
  const registry = new Registry();
  const m = {
    registry,
    signalsReceived: new Counter({ name: AgentMetrics.signalsReceived, help: 'Signals committed to the outbox, per driver', labelNames: ['driver'], registers: [registry] }),
    signalsDuplicate: new Counter({ name: AgentMetrics.signalsDuplicate, help: 'Signals dropped as already seen (dedupe by sourceId)', labelNames: ['driver'], registers: [registry] }),
    transactionsDerived: new Counter({ name: AgentMetrics.transactionsDerived, help: 'Transactions derived by rules and committed', registers: [registry] }),
    forwarded: new Counter({ name: AgentMetrics.forwarded, help: 'Transactions the hub accepted (or already had)', registers: [registry] }),
    forwardRejected: new Counter({ name: AgentMetrics.forwardRejected, help: 'Transactions the hub rejected (dead-lettered)', registers: [registry] }),
    forwardErrors: new Counter({ name: AgentMetrics.forwardErrors, help: 'Failed attempts to reach the hub, by kind', labelNames: ['kind'], registers: [registry] }),
    commitSeconds: new Histogram({
      name: AgentMetrics.commitSeconds,
      help: 'Duration of outbox group commits',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
    outboxPending: new Gauge({ name: AgentMetrics.outboxPending, help: 'Transactions waiting to be forwarded', registers: [registry] }),
    outboxOldest: new Gauge({ name: AgentMetrics.outboxOldestPending, help: 'Age of the oldest pending transaction', registers: [registry] }),
    outboxDeadLetters: new Gauge({ name: AgentMetrics.outboxDeadLetters, help: 'Open dead letters (transactions, undecodable input, quarantined counters)', registers: [registry] }),
    outboxBytes: new Gauge({ name: AgentMetrics.outboxBytes, help: 'Bytes used by the outbox database and its WAL', registers: [registry] }),
    outboxFull: new Gauge({ name: AgentMetrics.outboxFull, help: '1 while the outbox refuses new data (size cap, disk floor, I/O error)', registers: [registry] }),
    driverUp: new Gauge({ name: AgentMetrics.driverUp, help: '1 when the driver is up, 0.5 degraded, 0 otherwise', labelNames: ['driver', 'type'], registers: [registry] }),
  };
  return m;
}

export type AgentMetricsSet = ReturnType<typeof createAgentMetrics>;
