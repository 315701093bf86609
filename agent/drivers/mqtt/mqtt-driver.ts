import { HealthTracker, type Driver, type DriverContext } from '../driver.ts';
import { CommitThread, type WorkerSource } from './commit-thread.ts';
import type { MqttConfig } from './config.ts';
import { checkFiles } from './connect-options.ts';
import { deadLetterKey, Mapper } from './mapping.ts';
import { assertAckHookSupported, MqttSession, type RawCommitResult, type SessionCounters } from './mqtt-session.ts';

export { checkLive } from './check-live.ts';

export interface MqttDriver extends Driver {
  /** counts for metrics: received, committed, dead letters by code, acks sent and dropped, commit thread CPU */
  stats(): SessionCounters & { commitThreadCpuSeconds: number };
  /** where payloads are decoded and committed right now: the driver's commit thread or the main thread */
  commitsOn(): 'worker' | 'main';
  /**
   * Starts the commit thread (loads its code, opens its outbox connection: ~0.4 s of CPU once) without
   * connecting; start() does this itself when it was not done. Falls back to the main thread on failure.
   */
  prepare(): Promise<void>;
  /** CPU time used by the commit thread so far, µs (0 without one) */
  threadCpuMicros(): number;
  /** ends the commit thread as a crash would (tests): its unanswered batches fail, the next starts a new one */
  crashThread(): Promise<void>;
}

export interface MqttDriverOptions {
  /** where the commit thread's code is (the single executable passes its bundled asset) */
  workerSource?: WorkerSource;
}

/**
 * The MQTT driver: JSON machine events from topic filters with named levels, mapped to signals, committed
 * in batches and acknowledged (PUBACK) only after the commit. See README.md for the ack design and the
 * commit thread.
 */
export function create(config: MqttConfig, ctx: DriverContext, opts: MqttDriverOptions = {}): MqttDriver {
  assertAckHookSupported();
  checkFiles(config);
  // the agent hands each driver a logger already bound to { component: driver, driver: <name> }
  const log = ctx.log;
  const health = new HealthTracker(log);
  const mapper = new Mapper(config);
  const writer = config.commitThread === 'worker' ? ctx.writer : undefined;
  const thread = writer
    ? new CommitThread({ spec: writer.spec, mapper: { name: config.name, subscriptions: config.subscriptions, maxPayloadBytes: config.maxPayloadBytes } }, log, opts.workerSource)
    : undefined;
  /** false once the commit thread could not start: the main thread decodes and commits instead */
  let useThread = thread !== undefined;
  const decodeHere = (msg: { topic: string; payload: Buffer; retain: boolean; receivedAtMs: number }) => {
    const r = mapper.map(msg.topic, msg.payload, msg.retain, msg.receivedAtMs);
    if (r.kind === 'signal') return { signals: [r.signal] };
    if (r.kind === 'dead') return { deadLetter: { code: r.code, reason: r.reason } };
    return { ignore: r.reason };
  };
  const makeSession = (onThread: boolean) =>
    new MqttSession({
      config,
      subscriptions: mapper.subs.map((s) => ({ filter: s.filter.mqtt, qos: s.sub.qos })),
      ctx,
      log,
      health,
      deadLetterKey: (topic, payload) => deadLetterKey(config.name, topic, payload),
      ...(onThread
        ? {
            commitRaw: async (batch): Promise<RawCommitResult> => {
              const r = await thread!.commit(batch);
              writer!.committed(r.result);
              return { committed: r.signals, deadByCode: r.deadByCode, ignored: r.ignored };
            },
          }
        : { handle: decodeHere }),
    });
  let session = makeSession(useThread);
  const prepare = async () => {
    if (!useThread) return;
    try {
      await thread!.start();
      log.info('MQTT commit thread started: payloads are decoded and committed off the main thread');
    } catch (err) {
      // e.g. a runtime without worker threads: correct either way, only slower
      useThread = false;
      session = makeSession(false);
      log.warn({ err: (err as Error).message }, 'MQTT commit thread unavailable: decoding and committing on the main thread (lower ingest rate)');
    }
  };
  return {
    name: config.name,
    type: 'mqtt',
    prepare,
    async start() {
      await prepare();
      session.start();
    },
    stop: async () => {
      await session.stop();
      await thread?.close();
      health.set('stopped');
    },
    health: () => health.get(),
    stats: () => ({ ...structuredClone(session.counters), commitThreadCpuSeconds: (thread?.cpuMicros() ?? 0) / 1e6 }),
    commitsOn: () => (useThread ? 'worker' : 'main'),
    threadCpuMicros: () => thread?.cpuMicros() ?? 0,
    crashThread: async () => thread?.terminate(),
  };
}
