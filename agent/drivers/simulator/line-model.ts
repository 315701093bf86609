/**
 * A deterministic production line: everything is a function of the tick number, and the tick number is
 * a function of the wall clock. A restarted simulator therefore continues where a real line would be,
 * like a PLC that kept running while the agent was down.
 */
export interface LineParams {
  intervalMs: number;
  partsPerTick: number;
  scrapEvery: number;
  orderSize: number;
  firstOrder: number;
  operation: string;
  counterBits: 16 | 32;
}

export interface LineSnapshot {
  tick: number;
  time: string;
  good: number;
  scrap: number;
  order: string;
}

/** 2026-01-01T00:00:00Z: ticks count from here so that numbers stay readable. */
const EPOCH = Date.UTC(2026, 0, 1);

export function tickAt(nowMs: number, intervalMs: number): number {
  return Math.floor((nowMs - EPOCH) / intervalMs);
}

export function lineAt(tick: number, p: LineParams): LineSnapshot {
  const total = tick * p.partsPerTick;
  const scrapTotal = p.scrapEvery > 0 ? Math.floor(total / p.scrapEvery) : 0;
  const goodTotal = total - scrapTotal;
  const mod = 2 ** p.counterBits;
  return {
    tick,
    time: new Date(EPOCH + tick * p.intervalMs).toISOString(),
    good: goodTotal % mod,
    scrap: scrapTotal % mod,
    order: `${p.firstOrder + (Math.floor(total / p.orderSize) % 100_000)}/${p.operation}`,
  };
}
