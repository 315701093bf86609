import type { HubMetricsSet } from '../metrics.ts';
import { BREACH_KINDS, type SlaReport } from './sla.ts';

/** Sets the SLA gauges from a report: every series of the last cycle, none left over from earlier ones. */
export function setSlaMetrics(m: HubMetricsSet['sla'], r: SlaReport): void {
  m.latency.reset();
  m.latencyObjective.reset();
  m.breaches.reset();
  m.open.reset();
  m.oldestOpen.reset();
  for (const s of r.latency) {
    m.latency.set({ plant: s.plant, type: s.type, quantile: '0.5' }, s.p50Ms / 1000);
    m.latency.set({ plant: s.plant, type: s.type, quantile: '0.95' }, s.p95Ms / 1000);
    m.latency.set({ plant: s.plant, type: s.type, quantile: '0.99' }, s.p99Ms / 1000);
    m.latencyObjective.set({ plant: s.plant, type: s.type, percentile: s.percentile }, s.objectiveMs / 1000);
  }
  const plants = new Set([...r.latency.map((s) => s.plant), ...r.open.map((o) => o.plant), ...r.breaches.map((b) => b.plant)]);
  // every kind of every plant the report knows, 0 included: an alert rule on the series sees it resolve
  for (const plant of plants) for (const kind of BREACH_KINDS) m.breaches.set({ plant, kind }, 0);
  for (const b of r.breaches) m.breaches.inc({ plant: b.plant, kind: b.kind });
  for (const o of r.open) {
    m.open.set({ plant: o.plant, state: 'queued' }, Math.max(0, o.queued - o.inDoubt - o.heldBack));
    m.open.set({ plant: o.plant, state: 'in_doubt' }, o.inDoubt);
    m.open.set({ plant: o.plant, state: 'held_back' }, o.heldBack);
    m.open.set({ plant: o.plant, state: 'dead_letter' }, o.deadLetters);
    m.oldestOpen.set({ plant: o.plant }, o.oldestAt ? Math.max(0, (Date.parse(r.at) - Date.parse(o.oldestAt)) / 1000) : 0);
  }
  m.cycleSeconds.set(r.tookMs / 1000);
  m.lastRun.set(Date.parse(r.at) / 1000);
}
