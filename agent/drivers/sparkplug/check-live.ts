import { probe, type CheckLiveOptions } from '../mqtt/check-live.ts';
import { decodePayload } from './codec.ts';
import type { SparkplugConfig } from './config.ts';
import { NAMESPACE, parseTopic } from './host-state.ts';

/**
 * `check-config --live` for Sparkplug B: subscribes (throwaway clean session, QoS 0) to each configured
 * group for a few seconds and reports the message types, edge nodes and devices seen, and payloads that do
 * not decode. Sends nothing to the edge nodes (no Rebirth requests, no STATE).
 */

export interface SparkplugLiveGroup {
  filter: string;
  granted: boolean;
  matched: number;
  byType: Record<string, number>;
  /** group/edge[/device], up to 20 */
  nodes: string[];
  invalid: number;
  firstProblem?: string;
}

export interface SparkplugLiveReport {
  driver: string;
  url: string;
  ok: boolean;
  connected: boolean;
  error?: string;
  durationMs: number;
  filters: SparkplugLiveGroup[];
}

export async function checkLive(config: SparkplugConfig, opts: CheckLiveOptions = {}): Promise<SparkplugLiveReport> {
  const started = Date.now();
  const filters = config.groups.map((g) => `${NAMESPACE}/${g}/#`);
  const groups: SparkplugLiveGroup[] = filters.map((filter) => ({ filter, granted: false, matched: 0, byType: {}, nodes: [], invalid: 0 }));
  const r = await probe(
    config,
    filters,
    opts,
    (topic, payload) => {
      const t = parseTopic(topic);
      if (!t) return;
      const i = config.groups.findIndex((g) => g === '+' || g === t.group);
      if (i < 0) return;
      const g = groups[i];
      g.matched++;
      g.byType[t.type] = (g.byType[t.type] ?? 0) + 1;
      const id = `${t.group}/${t.edge}${t.device ? `/${t.device}` : ''}`;
      if (g.nodes.length < 20 && !g.nodes.includes(id)) g.nodes.push(id);
      try {
        decodePayload(payload);
      } catch (err) {
        g.invalid++;
        g.firstProblem ??= `PAYLOAD_INVALID: ${topic}: ${String((err as Error).message).slice(0, 200)}`;
      }
    },
    () => undefined,
  );
  r.granted.forEach((ok, i) => (groups[i].granted = ok));
  return {
    driver: config.name,
    url: config.url,
    ok: r.connected && r.granted.every(Boolean),
    connected: r.connected,
    ...(r.error ? { error: r.error } : {}),
    durationMs: Date.now() - started,
    filters: groups,
  };
}
