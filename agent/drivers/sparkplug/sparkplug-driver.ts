import { HealthTracker, type Driver, type DriverContext } from '../driver.ts';
import { checkFiles } from '../mqtt/connect-options.ts';
import { assertAckHookSupported, MqttSession, type SessionCounters } from '../mqtt/mqtt-session.ts';
import { encodePayload } from './codec.ts';
import type { SparkplugConfig } from './config.ts';
import { NAMESPACE, SparkplugHost, type HostCounters } from './host-state.ts';

export { checkLive } from './check-live.ts';

export interface SparkplugDriver extends Driver {
  stats(): SessionCounters & HostCounters & { rebirthRequests: number };
  /** edge nodes seen since start, online or not */
  nodes(): Array<{ node: string; online: boolean; bdSeq: string; devices: number }>;
}

/**
 * Sparkplug B host application on top of the MQTT session (same ack-after-commit path as the mqtt driver):
 * births define metrics and aliases and are committed as baseline values, data is resolved by alias,
 * deaths mark the node's and devices' metrics bad, seq gaps ask for a Rebirth (or warn). See README.md.
 */
export function create(config: SparkplugConfig, ctx: DriverContext): SparkplugDriver {
  assertAckHookSupported();
  checkFiles(config);
  const log = ctx.log.child({ driver: config.name });
  const health = new HealthTracker(log);
  const host = new SparkplugHost({
    source: config.name,
    maxPayloadBytes: config.maxPayloadBytes,
    onSeqGap: config.onSeqGap,
    rebirthOnUnknown: config.rebirthOnUnknown,
    warn: (msg, data) => log.warn(data, msg),
  });
  const lastRebirth = new Map<string, number>();
  let rebirthRequests = 0;
  const stateTopic = config.primaryHost ? `${NAMESPACE}/STATE/${config.primaryHost.hostId}` : undefined;
  let connectTs = Date.now();

  const requestRebirth = (group: string, edge: string, why: string) => {
    const key = `${group}/${edge}`;
    const now = performance.now();
    if (now - (lastRebirth.get(key) ?? -Infinity) < config.rebirthMinInterval) return;
    lastRebirth.set(key, now);
    rebirthRequests++;
    log.info({ node: key, why }, 'Requesting a Rebirth from the edge node');
    const payload = encodePayload({ timestamp: Date.now(), metrics: [{ name: 'Node Control/Rebirth', type: 'Boolean', value: true }] });
    session.publish(`${NAMESPACE}/${group}/NCMD/${edge}`, payload, { qos: 0 }).catch((err: unknown) => {
      log.warn({ node: key, err: String(err) }, 'Could not publish the Rebirth request; will ask again on the next gap');
      lastRebirth.delete(key);
    });
  };

  const session = new MqttSession({
    config,
    subscriptions: config.groups.map((g) => ({ filter: `${NAMESPACE}/${g}/#`, qos: 1 as const })),
    ctx,
    log,
    health,
    handle: (msg) => {
      const r = host.handle(msg.topic, msg.payload, msg.receivedAtMs);
      if ((r.kind === 'signals' || r.kind === 'ignore') && r.rebirth) requestRebirth(r.rebirth.group, r.rebirth.edge, r.rebirth.why);
      if (r.kind === 'signals') return r.signals.length > 0 ? { signals: r.signals } : { ignore: 'no metrics' };
      if (r.kind === 'dead') return { deadLetter: { code: r.code, reason: `${msg.topic}: ${r.reason}` } };
      return { ignore: r.reason };
    },
    // Sparkplug 3.0 primary host: the will says offline with the same timestamp the online message carries
    connectOverrides: () => {
      connectTs = Date.now();
      return stateTopic ? { will: { topic: stateTopic, payload: Buffer.from(JSON.stringify({ online: false, timestamp: connectTs })), qos: 1, retain: true } } : {};
    },
    onReady: () => {
      if (!stateTopic) return;
      session.publish(stateTopic, JSON.stringify({ online: true, timestamp: connectTs }), { qos: 1, retain: true }).catch((err: unknown) => {
        log.warn({ err: String(err) }, 'Could not publish the primary host STATE');
      });
    },
  });

  return {
    name: config.name,
    type: 'sparkplug',
    async start() {
      session.start();
    },
    async stop() {
      if (stateTopic && session.connected) {
        await session.publish(stateTopic, JSON.stringify({ online: false, timestamp: connectTs }), { qos: 1, retain: true }).catch(() => undefined);
      }
      await session.stop();
      health.set('stopped');
    },
    health: () => health.get(),
    stats: () => ({ ...structuredClone(session.counters), ...host.counters, rebirthRequests }),
    nodes: () => host.nodeStates(),
  };
}
