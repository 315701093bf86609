import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { AgentMetrics } from '../../contracts/index.ts';
import type { Driver } from '../drivers/driver.ts';

/** The agent's Prometheus metrics (DESIGN.md §8). One registry per agent instance: no global state. */
export function createAgentMetrics(opts: { drivers?: () => readonly Driver[] } = {}) {
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
  if (opts.drivers) registerDriverCounters(registry, opts.drivers);
  return m;
}

/** What a driver with counters (mqtt, sparkplug) exposes; other drivers are skipped. */
interface CountingDriver {
  name: string;
  stats(): Record<string, unknown>;
  nodes?(): Array<{ online: boolean }>;
}

const hasStats = (d: Driver): d is Driver & CountingDriver => typeof (d as Partial<CountingDriver>).stats === 'function';

const MQTT = ['mqtt', 'sparkplug'];
const SPARKPLUG = ['sparkplug'];
const OPCUA = ['opcua'];

/**
 * stats() key -> counter, for the driver types whose stats() mean that: the mqtt session's keys apply to
 * the mqtt and sparkplug drivers, the OPC UA client's to opcua drivers (whose stats() has keys of the same
 * spelling, such as connects and committed, that are not MQTT's).
 */
const DRIVER_COUNTERS: Array<[types: string[], key: string, name: string, help: string]> = [
  [MQTT, 'received', AgentMetrics.mqttMessagesReceived, 'MQTT messages received (before decoding), per driver'],
  [MQTT, 'ignored', AgentMetrics.mqttMessagesIgnored, 'MQTT messages acknowledged without a signal (no matching mapping, retained and ignored, Sparkplug data before birth)'],
  [MQTT, 'committed', AgentMetrics.mqttSignalsCommitted, 'Signals from MQTT messages committed to the outbox (duplicates included)'],
  [MQTT, 'committedBatches', AgentMetrics.mqttCommits, 'Outbox commits of MQTT batches'],
  [MQTT, 'commitFailures', AgentMetrics.mqttCommitFailures, 'MQTT batches whose commit failed (not acknowledged; redelivered after a reconnect)'],
  [MQTT, 'connects', AgentMetrics.mqttConnects, 'MQTT connections established (first connect and reconnects)'],
  [MQTT, 'acksSent', AgentMetrics.mqttAcksSent, 'PUBACKs sent after the outbox commit'],
  [MQTT, 'acksDropped', AgentMetrics.mqttAcksDropped, 'PUBACKs not sent because the connection closed or the commit failed (the broker redelivers)'],
  [MQTT, 'commitThreadCpuSeconds', AgentMetrics.mqttCommitThreadCpu, 'CPU time of the MQTT driver\'s commit thread (decoding, mapping, rules, outbox commits), seconds'],
  [SPARKPLUG, 'births', AgentMetrics.sparkplugBirths, 'Sparkplug NBIRTH and DBIRTH messages'],
  [SPARKPLUG, 'deaths', AgentMetrics.sparkplugDeaths, 'Sparkplug NDEATH and DDEATH messages that marked metrics stale'],
  [SPARKPLUG, 'staleDeaths', AgentMetrics.sparkplugStaleDeaths, 'Sparkplug NDEATH messages ignored because their bdSeq is not the current birth'],
  [SPARKPLUG, 'seqGaps', AgentMetrics.sparkplugSeqGaps, 'Sparkplug seq gaps (messages lost or reordered)'],
  [SPARKPLUG, 'unknownNode', AgentMetrics.sparkplugUnknownNode, 'Sparkplug data from an edge node or device whose birth this agent has not seen'],
  [SPARKPLUG, 'unknownAlias', AgentMetrics.sparkplugUnknownAlias, 'Sparkplug metrics with an alias the birth did not define'],
  [SPARKPLUG, 'rebirthRequests', AgentMetrics.sparkplugRebirthRequests, 'Rebirth requests (NCMD) published'],
  [OPCUA, 'connects', AgentMetrics.opcuaConnects, 'OPC UA connections established (first connect and reconnects)'],
  [OPCUA, 'connectFailures', AgentMetrics.opcuaConnectFailures, 'OPC UA connection attempts that failed'],
  [OPCUA, 'sessionsCreated', AgentMetrics.opcuaSessionsCreated, 'OPC UA sessions created (a reconnect that could not reactivate the old one creates one)'],
  [OPCUA, 'sessionsReactivated', AgentMetrics.opcuaSessionsReactivated, 'OPC UA sessions reactivated after a reconnect'],
  [OPCUA, 'subscriptionsCreated', AgentMetrics.opcuaSubscriptionsCreated, 'OPC UA subscriptions created'],
  [OPCUA, 'subscriptionsTransferred', AgentMetrics.opcuaSubscriptionsTransferred, 'OPC UA subscriptions transferred to a new session'],
  [OPCUA, 'subscriptionsKept', AgentMetrics.opcuaSubscriptionsKept, 'OPC UA subscriptions kept through a session reactivation'],
  [OPCUA, 'watchdogRecreations', AgentMetrics.opcuaWatchdogRecreations, 'OPC UA subscriptions recreated because the data watchdog found them silent'],
  [OPCUA, 'notifications', AgentMetrics.opcuaNotifications, 'OPC UA value changes received'],
  [OPCUA, 'republished', AgentMetrics.opcuaRepublished, 'OPC UA notification messages recovered by Republish after a sequence gap'],
  [OPCUA, 'messagesLost', AgentMetrics.opcuaMessagesLost, 'OPC UA notification messages lost (the server no longer had them for Republish)'],
  [OPCUA, 'badValues', AgentMetrics.opcuaBadValues, 'OPC UA values that could not be read into a signal (dead-lettered)'],
  [OPCUA, 'committed', AgentMetrics.opcuaSignalsCommitted, 'Signals from OPC UA values committed to the outbox (duplicates included)'],
  [OPCUA, 'emitFailures', AgentMetrics.opcuaCommitFailures, 'OPC UA batches whose commit failed (kept and retried)'],
  [OPCUA, 'collapsed', AgentMetrics.opcuaValuesFolded, 'OPC UA values folded into a newer value of the same node while the outbox was blocked'],
];

/**
 * Driver counters are read from each driver's stats() when Prometheus scrapes (collect), so the message
 * path pays nothing for them. A counter only exists for drivers whose stats() has its key.
 */
function registerDriverCounters(registry: Registry, drivers: () => readonly Driver[]): void {
  const counting = () => drivers().filter(hasStats);
  for (const [types, key, name, help] of DRIVER_COUNTERS) {
    new Counter({
      name,
      help,
      labelNames: ['driver'],
      registers: [registry],
      collect() {
        this.reset();
        for (const d of counting()) {
          if (!types.includes(d.type)) continue;
          const v = d.stats()[key];
          if (typeof v === 'number') this.inc({ driver: d.name }, v);
        }
      },
    });
  }
  new Gauge({
    name: AgentMetrics.opcuaMonitoredItems,
    help: 'OPC UA monitored items as last created, by state (bad: the server refused the node, see the driver\'s health)',
    labelNames: ['driver', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const d of counting()) {
        if (!OPCUA.includes(d.type)) continue;
        const { itemsOk, itemsBad } = d.stats();
        if (typeof itemsOk === 'number') this.set({ driver: d.name, state: 'ok' }, itemsOk);
        if (typeof itemsBad === 'number') this.set({ driver: d.name, state: 'bad' }, itemsBad);
      }
    },
  });
  new Counter({
    name: AgentMetrics.mqttDeadLetters,
    help: 'MQTT messages acknowledged and dead-lettered, by reason code (PAYLOAD_INVALID, SCHEMA_INVALID, INTERNAL)',
    labelNames: ['driver', 'code'],
    registers: [registry],
    collect() {
      this.reset();
      for (const d of counting()) {
        if (!MQTT.includes(d.type)) continue;
        const byCode = d.stats().deadLettered;
        if (!byCode || typeof byCode !== 'object') continue;
        for (const [code, n] of Object.entries(byCode)) if (typeof n === 'number') this.inc({ driver: d.name, code }, n);
      }
    },
  });
  new Gauge({
    name: AgentMetrics.sparkplugEdgeNodes,
    help: 'Sparkplug edge nodes known to this agent, by state (offline: its metrics are stale until the next birth)',
    labelNames: ['driver', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const d of counting()) {
        if (!SPARKPLUG.includes(d.type) || typeof d.nodes !== 'function') continue;
        const nodes = d.nodes();
        const online = nodes.filter((n) => n.online).length;
        this.set({ driver: d.name, state: 'online' }, online);
        this.set({ driver: d.name, state: 'offline' }, nodes.length - online);
      }
    },
  });
}

export type AgentMetricsSet = ReturnType<typeof createAgentMetrics>;
