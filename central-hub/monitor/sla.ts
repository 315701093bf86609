import type { HubConfig } from '../config/schema.ts';

/** The SLAs that hold for one plant: hub.yaml's monitor.plants entry over monitor.sla's defaults. */
export type Sla = HubConfig['monitor']['sla'];
export type Percentile = 'p50' | 'p95' | 'p99';

export function slaFor(monitor: HubConfig['monitor'], plant: string): Sla {
  const own = Object.hasOwn(monitor.plants, plant) ? monitor.plants[plant] : undefined;
  if (!own) return monitor.sla;
  const out: Sla = { ...monitor.sla };
  for (const [k, v] of Object.entries(own)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/** the latency objective of one plant and transaction type */
export function latencyObjective(sla: Sla, type: string): { percentile: Percentile; objective: number } {
  return (Object.hasOwn(sla.latencyByType, type) ? sla.latencyByType[type] : undefined) ?? sla.latency;
}

/** Nearest-rank percentiles of `values` (sorted in place). */
export function percentiles(values: number[]): Record<Percentile, number> {
  values.sort((a, b) => a - b);
  const at = (p: number) => values[Math.min(values.length - 1, Math.max(0, Math.ceil((p / 100) * values.length) - 1))];
  return { p50: at(50), p95: at(95), p99: at(99) };
}

/** What an SLA check found wrong. */
export const BREACH_KINDS = ['latency', 'accepted-not-completed', 'agent-offline', 'backlog', 'driver-unhealthy', 'data-watchdog', 'released-not-started'] as const;
export type BreachKind = (typeof BREACH_KINDS)[number];

/** A transaction a breach concerns. */
export interface BreachTx {
  idempotencyKey: string;
  workCenter: string | null;
  order: string;
  /** latency: its event → ERP document time; else what it waits for */
  latencyMs?: number;
  state?: 'queued' | 'in-doubt' | 'held-back' | 'dead-letter';
}

export interface Breach {
  /** stable while the condition lasts: `kind:plant:subject` (alerts deduplicate on it) */
  id: string;
  kind: BreachKind;
  plant: string;
  /** the work center and order concerned (for a breach spanning several: the worst one; see transactions) */
  workCenter: string | null;
  order: string | null;
  agentId?: string;
  driver?: string;
  /** what was measured (ms), against the objective (ms) */
  valueMs: number;
  objectiveMs: number;
  /** since when the condition holds, as far as the hub can tell */
  since: string;
  message: string;
  /** accepted-not-completed: the transactions of the order not posted, and how many wait behind its dead letter */
  count?: number;
  heldBack?: number;
  deadLetter?: { idempotencyKey: string; errorCode: string | null; errorMessage: string | null };
  /** the transactions concerned, at most monitor.keysPerBreach */
  transactions: BreachTx[];
}

export interface LatencyStat {
  plant: string;
  type: string;
  count: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  percentile: Percentile;
  objectiveMs: number;
  ok: boolean;
}

export interface SlaReport {
  /** when the cycle ran */
  at: string;
  /** how long it took (ms): the store's queries and the checks */
  tookMs: number;
  windowMs: number;
  latency: LatencyStat[];
  /** per plant: transactions accepted and not posted, by state (all of them, old or not) */
  open: Array<{ plant: string; queued: number; inDoubt: number; heldBack: number; deadLetters: number; oldestAt: string | null }>;
  breaches: Breach[];
}
