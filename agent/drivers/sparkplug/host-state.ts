import { createHash } from 'node:crypto';
import type { Signal, SignalValue } from '../../../contracts/index.ts';
import { decodePayload, type Metric, type Payload } from './codec.ts';

/**
 * What a Sparkplug B host application remembers about each edge node and device: the birth that defined
 * its metrics and aliases, bdSeq, the last seq, online or not. Messages go in (in arrival order), signals
 * and "please rebirth" requests come out. No I/O: the driver publishes the requests and commits the signals.
 */

export const NAMESPACE = 'spBv1.0';
const MESSAGE_TYPES = new Set(['NBIRTH', 'NDATA', 'NDEATH', 'DBIRTH', 'DDATA', 'DDEATH']);

interface MetricDef {
  name: string;
  type: string;
}

interface DeviceState {
  birthTs: number;
  online: boolean;
  aliases: Map<number, MetricDef>;
  metrics: Map<string, MetricDef>;
}

interface NodeState {
  bdSeq: string;
  birthTs: number;
  lastSeq: number | undefined;
  online: boolean;
  /** restored from the state file: its birth is confirmed by a Rebirth at the first message */
  restored?: boolean;
  aliases: Map<number, MetricDef>;
  metrics: Map<string, MetricDef>;
  devices: Map<string, DeviceState>;
  /** fallback identity for payloads without a timestamp */
  counter: number;
}

export interface HostCounters {
  births: number;
  deaths: number;
  staleDeaths: number;
  seqGaps: number;
  unknownNode: number;
  unknownAlias: number;
}

/** What survives an agent restart: each node's and device's birth (bdSeq, birth time, metrics, aliases), online or not. */
/** The in-memory state at one point (births, deaths, aliases), for a rollback; not persisted. */
export interface HostCheckpoint {
  readonly nodes: Map<string, NodeState>;
}

export interface HostSnapshot {
  v: 1;
  nodes: Array<{
    node: string;
    bdSeq: string;
    birthTs: number;
    online: boolean;
    metrics: SnapshotMetric[];
    devices: Array<{ device: string; birthTs: number; online: boolean; metrics: SnapshotMetric[] }>;
  }>;
}
type SnapshotMetric = [name: string, type: string, alias?: number];

export type HostResult =
  | { kind: 'signals'; signals: Signal[]; rebirth?: { group: string; edge: string; why: string } }
  | { kind: 'dead'; code: 'PAYLOAD_INVALID'; reason: string }
  | { kind: 'ignore'; reason: string; rebirth?: { group: string; edge: string; why: string } };

export interface ParsedTopic {
  group: string;
  type: string;
  edge: string;
  device?: string;
}

export function parseTopic(topic: string): ParsedTopic | undefined {
  const p = topic.split('/');
  if (p[0] !== NAMESPACE || p.length < 4 || p.length > 5) return undefined;
  const [, group, type, edge, device] = p;
  if (!group || !edge || (p.length === 5 && !device)) return undefined;
  return { group, type, edge, ...(device ? { device } : {}) };
}

const pad = (n: number, w: number) => String(n).padStart(w, '0');
const iso = (ms: number | undefined, fallback: string): string => (ms !== undefined && Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : fallback);
const MAX_KEY = 300;

/** group/edge/device/b<bdSeq>/<13-digit ms>/<3-digit seq>/<metric>: ordered per node, never a hash first. */
export function metricKey(prefix: string, metric: string): string {
  const full = `${prefix}/${metric}`;
  if (full.length <= MAX_KEY) return full;
  const room = MAX_KEY - prefix.length - 15;
  if (room >= 0) return `${prefix}/${metric.slice(0, room)}~${createHash('sha256').update(metric).digest('hex').slice(0, 12)}`;
  // the prefix alone is too long (group, edge and device ids of ~280 characters): cutting it would cut off
  // the birth, time, seq and metric, and every message of the device would have one key (all but the first
  // dropped as duplicates); the whole key is digested instead, its head kept for locality
  return `${full.slice(0, MAX_KEY - 13)}~${createHash('sha256').update(full).digest('hex').slice(0, 12)}`;
}

export class SparkplugHost {
  readonly counters: HostCounters = { births: 0, deaths: 0, staleDeaths: 0, seqGaps: 0, unknownNode: 0, unknownAlias: 0 };
  private nodes = new Map<string, NodeState>();
  /** bumped by every birth and death: the persisted snapshot is behind while it differs from savedVersion */
  version = 0;
  savedVersion = 0;
  private readonly source: string;
  private readonly maxPayloadBytes: number;
  private readonly onSeqGap: 'rebirth' | 'warn';
  private readonly rebirthOnUnknown: boolean;
  private readonly warn: (msg: string, data: Record<string, unknown>) => void;

  constructor(opts: {
    source: string;
    maxPayloadBytes: number;
    onSeqGap: 'rebirth' | 'warn';
    rebirthOnUnknown: boolean;
    warn: (msg: string, data: Record<string, unknown>) => void;
  }) {
    this.source = opts.source;
    this.maxPayloadBytes = opts.maxPayloadBytes;
    this.onSeqGap = opts.onSeqGap;
    this.rebirthOnUnknown = opts.rebirthOnUnknown;
    this.warn = opts.warn;
  }

  /** Edge nodes currently online / known. */
  nodeStates(): Array<{ node: string; online: boolean; bdSeq: string; devices: number }> {
    return [...this.nodes].map(([node, s]) => ({ node, online: s.online, bdSeq: s.bdSeq, devices: s.devices.size }));
  }

  handle(topic: string, buf: Buffer, receivedAtMs: number): HostResult {
    const t = parseTopic(topic);
    if (!t || !MESSAGE_TYPES.has(t.type)) return { kind: 'ignore', reason: `not a Sparkplug B message topic: ${topic}` };
    if ((t.type.startsWith('D') && !t.device) || (t.type.startsWith('N') && t.device)) return { kind: 'ignore', reason: `malformed Sparkplug topic ${topic}` };
    if (buf.length > this.maxPayloadBytes) {
      return { kind: 'dead', code: 'PAYLOAD_INVALID', reason: `payload of ${buf.length} bytes exceeds maxPayloadBytes ${this.maxPayloadBytes}` };
    }
    let p: Payload;
    try {
      p = decodePayload(buf, 16 * this.maxPayloadBytes);
    } catch (err) {
      return { kind: 'dead', code: 'PAYLOAD_INVALID', reason: `not a Sparkplug B payload: ${String((err as Error).message).slice(0, 200)}` };
    }
    const nodeKey = `${t.group}/${t.edge}`;
    const rebirth = (why: string) => ({ group: t.group, edge: t.edge, why });
    const ts = p.timestamp ?? receivedAtMs;
    const receivedAt = new Date(receivedAtMs).toISOString();

    if (t.type === 'NBIRTH') {
      const bd = p.metrics.find((m) => m.name === 'bdSeq');
      const node: NodeState = {
        bdSeq: bd && bd.value !== null ? String(bd.value) : 'x',
        birthTs: ts,
        lastSeq: p.seq,
        online: true,
        aliases: new Map(),
        metrics: new Map(),
        devices: new Map(),
        counter: 0,
      };
      this.nodes.set(nodeKey, node);
      this.version++;
      this.counters.births++;
      const signals = this.define(node.aliases, node.metrics, p.metrics).map((m) =>
        this.signal(t, node, undefined, m, p, receivedAt, true),
      );
      return { kind: 'signals', signals };
    }

    const node = this.nodes.get(nodeKey);
    if (t.type === 'NDEATH') {
      const bd = p.metrics.find((m) => m.name === 'bdSeq');
      if (!node) return { kind: 'ignore', reason: `NDEATH of unknown node ${nodeKey}` };
      if (bd && bd.value !== null && String(bd.value) !== node.bdSeq) {
        this.counters.staleDeaths++;
        return { kind: 'ignore', reason: `stale NDEATH of ${nodeKey}: bdSeq ${String(bd.value)}, current ${node.bdSeq}` };
      }
      if (!node.online) return { kind: 'ignore', reason: `${nodeKey} is already offline` };
      node.online = false;
      this.version++;
      this.counters.deaths++;
      const signals: Signal[] = [];
      const prefix = `${t.group}/${t.edge}/-/b${node.bdSeq}/${pad(node.birthTs, 13)}/death`;
      for (const def of node.metrics.values()) signals.push(this.stale(t.group, t.edge, undefined, def, prefix, ts, receivedAt));
      for (const [device, dev] of node.devices) {
        if (!dev.online) continue;
        dev.online = false;
        const dprefix = `${t.group}/${t.edge}/${device}/b${node.bdSeq}/${pad(dev.birthTs, 13)}/death`;
        for (const def of dev.metrics.values()) signals.push(this.stale(t.group, t.edge, device, def, dprefix, ts, receivedAt));
      }
      return { kind: 'signals', signals };
    }

    // NDATA, DBIRTH, DDATA, DDEATH: need the node's birth
    if (!node || !node.online) {
      this.counters.unknownNode++;
      const why = `${t.type} from ${nodeKey} before its NBIRTH`;
      return { kind: 'ignore', reason: why, ...(this.rebirthOnUnknown ? { rebirth: rebirth(why) } : {}) };
    }
    let request: { group: string; edge: string; why: string } | undefined;
    if (node.restored) {
      // its birth came from the state file: resolve by it now, and ask for the node's current birth in case
      // it rebirthed while the agent was down and that birth (QoS 0) never reached us
      node.restored = false;
      if (this.rebirthOnUnknown) request = rebirth(`first message from ${nodeKey} since the agent restarted: confirming its persisted birth`);
    }
    if (p.seq !== undefined) {
      if (node.lastSeq !== undefined && p.seq !== (node.lastSeq + 1) % 256) {
        this.counters.seqGaps++;
        const why = `seq gap from ${nodeKey}: expected ${(node.lastSeq + 1) % 256}, got ${p.seq}`;
        this.warn('Sparkplug seq gap: messages from this edge node were lost or reordered', { node: nodeKey, expected: (node.lastSeq + 1) % 256, got: p.seq });
        if (this.onSeqGap === 'rebirth') request ??= rebirth(why);
      }
      node.lastSeq = p.seq;
    }
    node.counter++;

    if (t.type === 'DBIRTH') {
      const dev: DeviceState = { birthTs: ts, online: true, aliases: new Map(), metrics: new Map() };
      node.devices.set(t.device!, dev);
      this.version++;
      this.counters.births++;
      const signals = this.define(dev.aliases, dev.metrics, p.metrics).map((m) => this.signal(t, node, t.device, m, p, receivedAt, true));
      return { kind: 'signals', signals, ...(request ? { rebirth: request } : {}) };
    }

    if (t.type === 'DDEATH') {
      const dev = node.devices.get(t.device!);
      if (!dev || !dev.online) return { kind: 'ignore', reason: `DDEATH of unknown or offline device ${nodeKey}/${t.device}`, ...(request ? { rebirth: request } : {}) };
      dev.online = false;
      this.version++;
      this.counters.deaths++;
      const prefix = `${t.group}/${t.edge}/${t.device}/b${node.bdSeq}/${pad(dev.birthTs, 13)}/death`;
      const signals = [...dev.metrics.values()].map((def) => this.stale(t.group, t.edge, t.device, def, prefix, ts, receivedAt));
      return { kind: 'signals', signals, ...(request ? { rebirth: request } : {}) };
    }

    // NDATA / DDATA
    let aliases = node.aliases;
    if (t.type === 'DDATA') {
      const dev = node.devices.get(t.device!);
      if (!dev || !dev.online) {
        this.counters.unknownNode++;
        const why = `DDATA from ${nodeKey}/${t.device} before its DBIRTH`;
        return { kind: 'ignore', reason: why, ...(this.rebirthOnUnknown ? { rebirth: rebirth(why) } : request ? { rebirth: request } : {}) };
      }
      aliases = dev.aliases;
    }
    const signals: Signal[] = [];
    for (const m of p.metrics) {
      const name = m.name ?? (m.alias !== undefined ? (aliases.get(m.alias) ?? node.aliases.get(m.alias))?.name : undefined);
      if (!name) {
        this.counters.unknownAlias++;
        const why = `${t.type} from ${nodeKey} uses alias ${m.alias} that its birth did not define`;
        if (this.rebirthOnUnknown) request ??= rebirth(why);
        continue;
      }
      signals.push(this.signal(t, node, t.device, { ...m, name }, p, receivedAt, false));
    }
    return { kind: 'signals', signals, ...(request ? { rebirth: request } : {}) };
  }

  /** The births to persist (see HostSnapshot); pairs with savedVersion = version once written. */
  /** The in-memory state as it is now, to go back to (rollback) if what came after it is not committed. */
  checkpoint(): HostCheckpoint {
    return { nodes: structuredClone(this.nodes) };
  }

  /**
   * Back to a checkpoint: the messages after it were not committed and come again. Their seq is not
   * checked against the checkpoint's (the first message of each node after a rollback starts afresh).
   */
  rollback(cp: HostCheckpoint): void {
    this.nodes = structuredClone(cp.nodes);
    for (const n of this.nodes.values()) n.lastSeq = undefined;
    this.version++;
  }

  snapshot(): HostSnapshot {
    const metricsOf = (metrics: Map<string, MetricDef>, aliases: Map<number, MetricDef>): SnapshotMetric[] => {
      const aliasOf = new Map<MetricDef, number>();
      for (const [a, def] of aliases) aliasOf.set(def, a);
      return [...metrics.values()].map((d) => (aliasOf.has(d) ? [d.name, d.type, aliasOf.get(d)!] : [d.name, d.type]));
    };
    return {
      v: 1,
      nodes: [...this.nodes].map(([node, n]) => ({
        node,
        bdSeq: n.bdSeq,
        birthTs: n.birthTs,
        online: n.online,
        metrics: metricsOf(n.metrics, n.aliases),
        devices: [...n.devices].map(([device, d]) => ({ device, birthTs: d.birthTs, online: d.online, metrics: metricsOf(d.metrics, d.aliases) })),
      })),
    };
  }

  /**
   * Takes the births of a previous run, so that data queued for this agent while it was down resolves by
   * alias instead of being skipped. seq is not persisted (it moves with every message): the first message
   * of each restored node is not checked for a gap, and asks for a Rebirth (rebirthOnUnknown) instead.
   */
  /**
   * Loads persisted births. All or nothing: a file with any entry of the wrong shape (edited, or from
   * another version) is refused whole and the host stays as it was; the driver then asks for Rebirths.
   */
  restore(snap: HostSnapshot): void {
    const bad = (what: string): never => {
      throw new Error(`not a Sparkplug host state (v1): ${what}`);
    };
    if (snap?.v !== 1 || !Array.isArray(snap.nodes)) bad('no v1 node list');
    const define = (list: unknown, where: string) => {
      if (!Array.isArray(list)) bad(`${where}.metrics is not a list`);
      const metrics = new Map<string, MetricDef>();
      const aliases = new Map<number, MetricDef>();
      for (const m of list as unknown[]) {
        const [name, type, alias] = Array.isArray(m) ? (m as unknown[]) : [];
        if (typeof name !== 'string' || typeof type !== 'string' || (alias !== undefined && !Number.isSafeInteger(alias))) bad(`${where}: a metric is not [name, type, alias?]`);
        const def = { name: name as string, type: type as string };
        metrics.set(def.name, def);
        if (alias !== undefined) aliases.set(alias as number, def);
      }
      return { metrics, aliases };
    };
    const nodes = new Map<string, NodeState>();
    for (const n of snap.nodes) {
      if (typeof n?.node !== 'string' || typeof n.bdSeq !== 'string' || typeof n.birthTs !== 'number' || typeof n.online !== 'boolean' || !Array.isArray(n.devices)) bad('a node entry is malformed');
      const devices = new Map<string, DeviceState>();
      for (const d of n.devices) {
        if (typeof d?.device !== 'string' || typeof d.birthTs !== 'number' || typeof d.online !== 'boolean') bad(`node ${n.node}: a device entry is malformed`);
        devices.set(d.device, { birthTs: d.birthTs, online: d.online, ...define(d.metrics, `${n.node}/${d.device}`) });
      }
      nodes.set(n.node, { bdSeq: n.bdSeq, birthTs: n.birthTs, lastSeq: undefined, online: n.online, restored: true, ...define(n.metrics, n.node), devices, counter: 0 });
    }
    this.nodes.clear();
    for (const [k, v] of nodes) this.nodes.set(k, v);
  }

  /** Records a birth's metrics and aliases; returns the metrics to emit as baseline values. */
  private define(aliases: Map<number, MetricDef>, metrics: Map<string, MetricDef>, list: Metric[]): Array<Metric & { name: string }> {
    const out: Array<Metric & { name: string }> = [];
    for (const m of list) {
      if (!m.name || m.name === 'bdSeq' || m.name.startsWith('Node Control/')) continue;
      const def = { name: m.name, type: m.type };
      metrics.set(m.name, def);
      if (m.alias !== undefined) aliases.set(m.alias, def);
      out.push({ ...m, name: m.name });
    }
    return out;
  }

  private signal(t: ParsedTopic, node: NodeState, device: string | undefined, m: Metric & { name: string }, p: Payload, receivedAt: string, baseline: boolean): Signal {
    // identity of the message: its timestamp and seq within this birth session (redelivery gives the same key)
    const msgId = p.timestamp !== undefined ? `${pad(p.timestamp, 13)}/${pad(p.seq ?? 0, 3)}` : `n${pad(node.birthTs, 13)}/${pad(node.counter, 9)}`;
    const prefix = `${t.group}/${t.edge}/${device ?? '-'}/b${node.bdSeq}/${msgId}`;
    const time = m.timestamp ?? p.timestamp;
    return {
      source: this.source,
      ref: `${t.group}/${t.edge}/${device ? `${device}/` : ''}${m.name}`.slice(0, 500),
      value: m.value,
      quality: 'good',
      sourceTime: iso(time, receivedAt),
      receivedAt,
      sourceId: metricKey(prefix, m.name),
      ...(baseline ? { baseline: true } : {}),
      meta: { messageType: t.type, datatype: m.type, bdSeq: node.bdSeq, ...(p.seq !== undefined ? { seq: p.seq } : {}) },
    };
  }

  private stale(group: string, edge: string, device: string | undefined, def: MetricDef, prefix: string, ts: number, receivedAt: string): Signal {
    const value: SignalValue = null;
    return {
      source: this.source,
      ref: `${group}/${edge}/${device ? `${device}/` : ''}${def.name}`.slice(0, 500),
      value,
      quality: 'bad',
      sourceTime: iso(ts, receivedAt),
      receivedAt,
      sourceId: metricKey(prefix, def.name),
      meta: { messageType: device ? 'DDEATH' : 'NDEATH', stale: true },
    };
  }
}
