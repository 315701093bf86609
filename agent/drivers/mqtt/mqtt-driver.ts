import { HealthTracker, type Driver, type DriverContext } from '../driver.ts';
import type { MqttConfig } from './config.ts';
import { checkFiles } from './connect-options.ts';
import { Mapper } from './mapping.ts';
import { assertAckHookSupported, MqttSession, type SessionCounters } from './mqtt-session.ts';

export { checkLive } from './check-live.ts';

export interface MqttDriver extends Driver {
  /** counts for metrics: received, committed, dead letters by code, acks sent and dropped */
  stats(): SessionCounters;
}

/**
 * The MQTT driver: JSON machine events from topic filters with named levels, mapped to signals, committed
 * in batches and acknowledged (PUBACK) only after the commit. See README.md for the ack design.
 */
export function create(config: MqttConfig, ctx: DriverContext): MqttDriver {
  assertAckHookSupported();
  checkFiles(config);
  const log = ctx.log.child({ driver: config.name });
  const health = new HealthTracker(log);
  const mapper = new Mapper(config);
  const session = new MqttSession({
    config,
    subscriptions: mapper.subs.map((s) => ({ filter: s.filter.mqtt, qos: s.sub.qos })),
    ctx,
    log,
    health,
    handle: (msg) => {
      const r = mapper.map(msg.topic, msg.payload, msg.retain, msg.receivedAtMs);
      if (r.kind === 'signal') return { signals: [r.signal] };
      if (r.kind === 'dead') return { deadLetter: { code: r.code, reason: r.reason } };
      return { ignore: r.reason };
    },
  });
  return {
    name: config.name,
    type: 'mqtt',
    async start() {
      session.start();
    },
    stop: async () => {
      await session.stop();
      health.set('stopped');
    },
    health: () => health.get(),
    stats: () => structuredClone(session.counters),
  };
}
