import { join } from 'node:path';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import {
  PlantBridgeError,
  VERSION,
  isPlantBridgeError,
  schemaId,
  toWireText,
  ulid,
  type AgentHeartbeat,
  type Signal,
} from '../contracts/index.ts';
import type { AgentConfig } from './config/schema.ts';
import type { Driver, DriverHealth, OutboxWriterSpec } from './drivers/driver.ts';
import { createDriver } from './drivers/registry.ts';
import { Forwarder } from './forwarder/forwarder.ts';
import { forwarderOptionsFromConfig } from './forwarder/options.ts';
import { createAgentMetrics } from './health/metrics.ts';
import { startStatusServer } from './health/status-server.ts';
import { createLogger } from '../contracts/log.ts';
import { openOutbox, type Alarm, type AppendResult, type Outbox } from './outbox/outbox.ts';
import { RuleEngine, buildRules } from './rules/engine.ts';

export interface AgentOptions {
  config: AgentConfig;
  configVersion?: string;
  log?: Logger;
  /** better-sqlite3 addon path when running as a single executable */
  nativeBinding?: string;
}

export interface AgentHealth {
  ok: boolean;
  agentId: string;
  plant: string;
  version: string;
  mode: 'live' | 'shadow';
  uptimeS: number;
  drivers: Array<DriverHealth & { name: string; type: string }>;
  outbox: ReturnType<Outbox['stats']> | undefined;
  forwarder: ReturnType<Forwarder['state']> | undefined;
  alarms: Alarm[];
}

export interface Agent {
  readonly log: Logger;
  readonly metrics: ReturnType<typeof createAgentMetrics>;
  /** available after start() */
  readonly outbox: Outbox;
  /** http://host:port of the status server, after start() */
  readonly statusUrl: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  health(): AgentHealth;
}

/**
 * Wires an agent from a validated config. No side effects until start(): nothing is opened, connected
 * or listened on here (STYLE.md: build apart from run).
 */
export function buildAgent(opts: AgentOptions): Agent {
  const { config } = opts;
  const log = opts.log ?? createLogger({ level: config.log.level, base: { agentId: config.agent.id } });
  const drivers: Driver[] = [];
  // driver counters (mqtt, sparkplug) are read from the drivers when /metrics is scraped
  const metrics = createAgentMetrics({ drivers: () => drivers });
  const startedAt = Date.now();
  const engine = new RuleEngine(buildRules(config.rules, config.agent.mode), {
    plant: config.agent.plant,
    agentId: config.agent.id,
    timeZone: config.agent.timeZone,
    mode: config.agent.mode,
  });
  let outbox: Outbox | undefined;
  let forwarder: Forwarder | undefined;
  let statusServer: Server | undefined;
  let statusUrl = '';
  const timers: NodeJS.Timeout[] = [];
  let stopping: Promise<void> | undefined;
  let clockOffsetMs: number | undefined;

  const rates = { signals: 0, forwarded: 0, lastSignals: 0, lastForwarded: 0, lastAt: Date.now(), signalsPerS: 0, forwardedPerS: 0 };

  const emitFor = (driverName: string) => async (signals: Signal[]) => {
    if (!outbox) throw new PlantBridgeError('INTERNAL', 'agent not started');
    counted(driverName, await outbox.append(signals));
  };

  /** what a driver committed, through emit or through its own commit thread (the MQTT driver) */
  const counted = (driverName: string, r: AppendResult) => {
    metrics.signalsReceived.inc({ driver: driverName }, r.accepted);
    if (r.duplicates) metrics.signalsDuplicate.inc({ driver: driverName }, r.duplicates);
    rates.signals += r.accepted;
    if (r.transactions > 0) {
      metrics.transactionsDerived.inc(r.transactions);
      forwarder?.notify();
    }
  };

  const health = (): AgentHealth => {
    const driverHealth = drivers.map((d) => ({ name: d.name, type: d.type, ...d.health() }));
    const stats = outbox?.stats();
    const alarms = outbox?.alarms() ?? [];
    const fw = forwarder?.state();
    // credential refused, hub certificate refused: the forwarder keeps everything and says why
    if (fw?.alarm) alarms.push(fw.alarm);
    const ok = driverHealth.every((d) => d.state === 'up') && stats !== undefined && !stats.full && alarms.length === 0;
    return {
      ok,
      agentId: config.agent.id,
      plant: config.agent.plant,
      version: VERSION,
      mode: config.agent.mode,
      uptimeS: (Date.now() - startedAt) / 1000,
      drivers: driverHealth,
      outbox: stats,
      forwarder: fw,
      alarms,
    };
  };

  const heartbeat = (): AgentHeartbeat => {
    const h = health();
    const now = Date.now();
    const dt = Math.max(0.001, (now - rates.lastAt) / 1000);
    rates.signalsPerS = (rates.signals - rates.lastSignals) / dt;
    const fwd = forwarder?.forwarded ?? 0;
    rates.forwardedPerS = (fwd - rates.lastForwarded) / dt;
    rates.lastSignals = rates.signals;
    rates.lastForwarded = fwd;
    rates.lastAt = now;
    const s = h.outbox;
    return {
      schema: schemaId('agent-heartbeat', 1, 0),
      id: ulid(),
      agentId: config.agent.id,
      plant: config.agent.plant,
      sentAt: new Date(now).toISOString(),
      version: VERSION,
      uptimeS: h.uptimeS,
      configVersion: opts.configVersion ?? 'unknown',
      mode: config.agent.mode,
      drivers: h.drivers.map((d) => ({
        name: d.name,
        type: d.type,
        state: d.state,
        since: d.since,
        ...(d.message ? { message: toWireText(d.message.slice(0, 1000)) } : {}),
        ...(d.lastValueAt ? { lastValueAt: d.lastValueAt } : {}),
      })),
      outbox: {
        pending: s?.pending ?? 0,
        oldestPendingAgeS: s?.oldestPendingAgeS ?? 0,
        deadLetters: s?.deadLetters ?? 0,
        bytes: s?.bytes ?? 0,
        diskFreeBytes: s?.diskFreeBytes ?? 0,
        full: s?.full ?? false,
      },
      rates: { signalsPerS: rates.signalsPerS, forwardedPerS: rates.forwardedPerS },
      alarms: h.alarms.slice(0, 100).map((a) => ({ code: a.code.slice(0, 40), message: toWireText(a.message.slice(0, 1000)), since: a.since })),
      ...(clockOffsetMs !== undefined ? { clockOffsetMs } : {}),
    };
  };

  const collect = () => {
    if (!outbox) return;
    const s = outbox.stats();
    metrics.outboxPending.set(s.pending);
    metrics.outboxOldest.set(s.oldestPendingAgeS);
    metrics.outboxDeadLetters.set(s.deadLetters);
    metrics.outboxBytes.set(s.bytes);
    metrics.outboxFull.set(s.full ? 1 : 0);
    for (const d of drivers) {
      const st = d.health().state;
      metrics.driverUp.set({ driver: d.name, type: d.type }, st === 'up' ? 1 : st === 'degraded' ? 0.5 : 0);
    }
  };

  const agent: Agent = {
    log,
    metrics,
    get outbox() {
      if (!outbox) throw new PlantBridgeError('INTERNAL', 'agent not started');
      return outbox;
    },
    get statusUrl() {
      return statusUrl;
    },
    async start() {
      log.info({ version: VERSION, plant: config.agent.plant, mode: config.agent.mode }, 'Agent starting');
      outbox = openOutbox({
        path: join(config.agent.stateDir, 'outbox.db'),
        synchronous: config.outbox.synchronous,
        maxBytes: config.outbox.maxBytes,
        minFreeDiskBytes: config.outbox.minFreeDiskBytes,
        retentionDays: config.outbox.retentionDays,
        eventRetentionDays: config.outbox.eventRetentionDays,
        driver: config.outbox.driver,
        onCommit: (ms: number) => metrics.commitSeconds.observe(ms / 1000),
        groupCommitDelayMs: config.outbox.groupCommitDelay,
        groupCommitRows: config.outbox.groupCommitRows,
        rules: engine,
        log: log.child({ component: 'outbox' }),
        ...(opts.nativeBinding ? { nativeBinding: opts.nativeBinding } : {}),
      });
      // a driver's commit thread opens a second connection to the same file, with the same rules (README.md)
      const writerSpec: OutboxWriterSpec = {
        outbox: {
          path: join(config.agent.stateDir, 'outbox.db'),
          synchronous: config.outbox.synchronous,
          maxBytes: config.outbox.maxBytes,
          minFreeDiskBytes: config.outbox.minFreeDiskBytes,
          groupCommitRows: config.outbox.groupCommitRows,
          driver: config.outbox.driver,
          ...(opts.nativeBinding ? { nativeBinding: opts.nativeBinding } : {}),
        },
        rules: config.rules,
        engine: { plant: config.agent.plant, agentId: config.agent.id, timeZone: config.agent.timeZone, mode: config.agent.mode },
      };
      for (const d of config.drivers) {
        const dlog = log.child({ component: 'driver', driver: d.name });
        const ob = outbox;
        drivers.push(
          await createDriver(d, {
            agentId: config.agent.id,
            plant: config.agent.plant,
            stateDir: config.agent.stateDir,
            log: dlog,
            emit: emitFor(d.name),
            deadLetter: (code, reason, payload, dedupeKey) => void ob.deadLetterInput(d.name, code, reason, payload, dedupeKey),
            writer: { spec: writerSpec, committed: (r) => counted(d.name, r) },
          }),
        );
      }
      if (config.agent.mode === 'live') {
        const ob = outbox;
        forwarder = new Forwarder({
          ...forwarderOptionsFromConfig(config),
          outbox,
          log: log.child({ component: 'forwarder' }),
          registry: metrics.registry,
          // the hub reports each transaction's ERP document (or failure): kept with the sent row
          outcomes: { cursor: () => ob.outcomeCursor(), apply: (items, cursor) => void ob.recordOutcomes(items, cursor) },
          onForwarded: (n) => metrics.forwarded.inc(n),
          onRejected: (n) => metrics.forwardRejected.inc(n),
          onError: (kind) => metrics.forwardErrors.inc({ kind }),
        });
        forwarder.start();
        const beat = async () => {
          const sentAt = Date.now();
          const r = await forwarder!.sendHeartbeat(heartbeat());
          if (r.serverTime) clockOffsetMs = Date.parse(r.serverTime) - (sentAt + Date.now()) / 2;
        };
        timers.push(setInterval(() => void beat(), config.hub.heartbeatInterval));
        void beat();
      } else {
        log.warn('Shadow mode: transactions are derived and stored, nothing is forwarded');
      }
      // windows that must close after maxInterval are closed by a tick, committed like any signal
      timers.push(
        setInterval(() => {
          outbox?.tick().then(
            (r) => {
              if (r.transactions > 0) {
                metrics.transactionsDerived.inc(r.transactions);
                forwarder?.notify();
              }
            },
            (err) => {
              if (!isPlantBridgeError(err, 'OUTBOX_FULL')) log.warn({ err }, 'rule tick failed');
            },
          );
        }, 1000),
      );
      statusServer = await startStatusServer(
        {
          metrics: async () => {
            collect();
            return metrics.registry.metrics();
          },
          metricsContentType: metrics.registry.contentType,
          health,
        },
        config.status.host,
        config.status.port,
        log,
      );
      const addr = statusServer.address() as { port: number };
      statusUrl = `http://${config.status.host}:${addr.port}`;
      for (const d of drivers) await d.start();
      log.info({ status: statusUrl, drivers: drivers.map((d) => d.name) }, 'Agent started');
    },
    stop() {
      stopping ??= (async () => {
        log.info('Agent stopping: draining drivers, finishing the in-flight commit');
        for (const t of timers) clearInterval(t);
        await Promise.allSettled(drivers.map((d) => d.stop()));
        await forwarder?.stop();
        outbox?.close();
        await new Promise<void>((resolve) => (statusServer ? statusServer.close(() => resolve()) : resolve()));
        statusServer?.closeAllConnections();
        log.info('Agent stopped');
      })();
      return stopping;
    },
    health,
  };
  return agent;
}
