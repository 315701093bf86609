import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { HealthTracker, type Driver, type DriverContext } from '../driver.ts';
import { checkFiles } from '../mqtt/connect-options.ts';
import { deadLetterKey } from '../mqtt/mapping.ts';
import { assertAckHookSupported, MqttSession, type SessionCounters } from '../mqtt/mqtt-session.ts';
import { encodePayload } from './codec.ts';
import type { SparkplugConfig } from './config.ts';
import { NAMESPACE, SparkplugHost, type HostCounters, type HostSnapshot } from './host-state.ts';

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
  // the agent hands each driver a logger already bound to { component: driver, driver: <name> }
  const log = ctx.log;
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

  // Births survive a restart (README: "Births across restarts"). The file is written after the commit of a
  // batch that changed a birth or death and before that batch is acknowledged, with the state as of that
  // batch's last message: an acknowledged birth is always in it, and it holds nothing that is not
  // committed (a birth it lacks is still unacknowledged, so the broker delivers it again).
  const statePath = join(ctx.stateDir, `sparkplug-${config.name}.state.json`);
  const saveState = (snap: HostSnapshot, version: number) => {
    if (version <= host.savedVersion) return;
    try {
      writeDurably(statePath, JSON.stringify(snap));
      host.savedVersion = version;
    } catch (err) {
      log.warn({ err: String(err), path: statePath }, 'Could not save the Sparkplug births: after a restart, data before the next birth is skipped and a Rebirth requested');
    }
  };
  // The host state runs ahead of the outbox: each message changes it when it arrives, its batch commits
  // later. `durable` is the state as of the last committed batch; when the connection ends with messages
  // unacknowledged (a failed commit, a lost socket), the host goes back to it, so that the redelivered
  // messages meet the state they first met (an NDEATH whose commit failed is not "already offline").
  let durable = host.checkpoint();
  let cutVersion = host.version;
  const checkpoint = () => {
    if (host.version === cutVersion) return undefined;
    cutVersion = host.version;
    const version = host.version;
    const cp = host.checkpoint();
    const snap = host.snapshot();
    return () => {
      durable = cp;
      saveState(snap, version);
    };
  };
  const rewind = () => {
    host.rollback(durable);
    cutVersion = host.version;
  };

  const session = new MqttSession({
    config,
    subscriptions: config.groups.map((g) => ({ filter: `${NAMESPACE}/${g}/#`, qos: 1 as const })),
    ctx: { emit: ctx.emit, deadLetter: ctx.deadLetter },
    checkpoint,
    onRewind: rewind,
    log,
    health,
    handle: (msg) => {
      const before = host.version;
      const r = host.handle(msg.topic, msg.payload, msg.receivedAtMs);
      if ((r.kind === 'signals' || r.kind === 'ignore') && r.rebirth) requestRebirth(r.rebirth.group, r.rebirth.edge, r.rebirth.why);
      // a birth or death without signals still changed the host: it is saved (and acknowledged) with the
      // batch it closes, after everything before it is committed, never ahead of it
      if (r.kind === 'signals') return r.signals.length > 0 ? { signals: r.signals } : { ignore: 'no metrics', commitPoint: host.version !== before };
      if (r.kind === 'dead') return { deadLetter: { code: r.code, reason: `${msg.topic}: ${r.reason}` } };
      return { ignore: r.reason };
    },
    // a redelivered bad message (crash or dropped connection between commit and PUBACK) carries the same
    // topic and bytes: one open dead letter (mqtt README: "Dead letters of identical bytes")
    deadLetterKey: (topic, payload) => deadLetterKey(config.name, topic, payload),
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

  const loadState = () => {
    let text: string;
    try {
      text = readFileSync(statePath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ err: String(err), path: statePath }, 'Could not read the saved Sparkplug births; Rebirths will be requested');
      return;
    }
    try {
      host.restore(JSON.parse(text) as HostSnapshot);
      log.info({ nodes: host.nodeStates().length, path: statePath }, 'Sparkplug births restored from the last run');
    } catch (err) {
      log.warn({ err: String(err), path: statePath }, 'The saved Sparkplug births are unreadable; ignoring them, Rebirths will be requested');
    }
  };

  return {
    name: config.name,
    type: 'sparkplug',
    async start() {
      loadState();
      durable = host.checkpoint();
      cutVersion = host.version;
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

/** write to a temp file, fsync, rename over the target, fsync the directory (where the platform allows) */
function writeDurably(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  try {
    const dfd = openSync(dirname(path), 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // Windows cannot open a directory; NTFS orders the rename's metadata itself
  }
}
