import type { LedgerSummary } from './ledger.ts';

/**
 * One chaos scenario: a fault, a load, a duration, and the ledger at the end. `run` returns the ledger and
 * whatever the scenario measured (recovery times, RSS, drain rate); `checks` are the scenario's own promises
 * beyond the ledger (e.g. "stops acknowledging within 1 s"), each true or false with what was seen.
 */

export interface ScenarioContext {
  short: boolean;
  /** a fresh scratch directory for this run */
  dir: string;
  /** one progress line for the operator (stderr) */
  progress(line: string): void;
}

export interface Check {
  name: string;
  ok: boolean;
  seen: string;
}

export interface ScenarioResult {
  ledger?: LedgerSummary;
  /** measured figures: numbers only, named with their unit (recoveryMaxS, agentRssMaxMB, ...) */
  metrics: Record<string, number>;
  checks: Check[];
  /** a scenario that cannot run here (not root, no nft) says why; it counts as not passed */
  skipped?: string;
}

export interface Scenario {
  id: string;
  title: string;
  fault: string;
  load: (short: boolean) => string;
  run(ctx: ScenarioContext): Promise<ScenarioResult>;
}
