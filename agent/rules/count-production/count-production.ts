import { newTraceparent, txSchemaId, ulid, type ProductionConfirmation, type Signal } from '../../../contracts/index.ts';
import type { Quarantined } from '../../outbox/outbox.ts';
import { plantDate, type Rule, type RuleContext, type RuleOutput } from '../rule.ts';
import type { CountProductionConfig } from './config.ts';

/**
 * count-production: good / scrap counters -> ProductionConfirmations against the active order.
 *
 * Identity: the idempotency key is `plant:workCenter:order:operation:counterSource/ref:from-to`, where
 * from-to is the window on this order's cumulative part count (good + scrap) as this rule has counted
 * it. The count is part of the committed rule state, so re-deriving after a crash or a replay gives the
 * same key, and two windows of one order can never share a key even when the PLC counter resets.
 */

const WRAP_MAX = { uint16: 0xffff, uint32: 0xffffffff, uint64: 2 ** 64 - 1 } as const;
const MAX_SOURCE_IDS = 20;
const MAX_ORDERS_REMEMBERED = 50;

interface CounterState {
  last: number;
}

interface Window {
  order: string;
  operation: string;
  good: number;
  scrap: number;
  counterStart: number;
  counterEnd: number;
  resetDetected: boolean;
  from: string;
  to: string;
  openedAt: number;
  events: number;
  sourceIds: string[];
}

export interface CountState {
  good?: CounterState;
  scrap?: CounterState;
  order?: { order: string; operation: string };
  window?: Window;
  /** cumulative parts (good + scrap) confirmed per `order/operation`: the key space of the windows */
  cum: Record<string, number>;
}

type Delta = { kind: 'delta'; d: number; reset: boolean } | { kind: 'baseline' } | { kind: 'jump'; d: number } | { kind: 'invalid'; reason: string };

/** Counter delta with unsigned wrap, reset handling and implausible-jump detection (erp-apis.md §5). */
export function counterDelta(
  last: number | undefined,
  v: number,
  cfg: { wrap: keyof typeof WRAP_MAX; onReset: 'count-from-zero' | 'drop'; maxJump: number },
  baseline: boolean,
): Delta {
  if (!Number.isFinite(v) || v < 0 || !Number.isInteger(v)) return { kind: 'invalid', reason: `counter value ${v} is not a non-negative integer` };
  if (v > WRAP_MAX[cfg.wrap]) return { kind: 'invalid', reason: `counter value ${v} exceeds ${cfg.wrap}` };
  if (last === undefined || baseline) return { kind: 'baseline' };
  const d = v - last;
  if (d >= 0) return d <= cfg.maxJump ? { kind: 'delta', d, reset: false } : { kind: 'jump', d };
  // the value dropped: a wrap if the old value was near the top and the new one near zero, else a reset
  const wrapped = WRAP_MAX[cfg.wrap] - last + 1 + v;
  if (wrapped <= cfg.maxJump && last > WRAP_MAX[cfg.wrap] - cfg.maxJump) return { kind: 'delta', d: wrapped, reset: false };
  if (cfg.onReset === 'drop') return { kind: 'delta', d: 0, reset: true };
  return v <= cfg.maxJump ? { kind: 'delta', d: v, reset: true } : { kind: 'jump', d: v };
}

function parseOrder(value: Signal['value'], defaultOperation: string): { order: string; operation: string } | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return { order: String(value), operation: defaultOperation };
  if (typeof value === 'string') {
    const s = value.trim();
    if (s === '') return undefined;
    const [order, operation] = s.split('/', 2);
    return { order, operation: operation?.trim() || defaultOperation };
  }
  if (value && typeof value === 'object' && typeof (value as any).order === 'string') {
    return { order: (value as any).order, operation: typeof (value as any).operation === 'string' ? (value as any).operation : defaultOperation };
  }
  return undefined;
}

function toNumber(value: Signal['value']): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && /^\d+$/.test(value.trim())) return Number(value.trim());
  return Number.NaN;
}

export function countProduction(cfg: CountProductionConfig, mode: 'live' | 'shadow'): Rule<CountState> {
  const counterName = `${cfg.counter.source}/${cfg.counter.ref}`;
  const isGood = (s: Signal) => s.source === cfg.counter.source && s.ref === cfg.counter.ref;
  const isScrap = (s: Signal) => cfg.scrapCounter !== undefined && s.source === cfg.scrapCounter.source && s.ref === cfg.scrapCounter.ref;
  const isOrder = (s: Signal) => 'source' in cfg.activeOrder && s.source === cfg.activeOrder.source && s.ref === cfg.activeOrder.ref;
  const fixedOrder = 'order' in cfg.activeOrder ? { order: cfg.activeOrder.order, operation: cfg.activeOrder.operation } : undefined;

  const inputs = [cfg.counter, ...(cfg.scrapCounter ? [cfg.scrapCounter] : []), ...('source' in cfg.activeOrder ? [cfg.activeOrder] : [])].map((r) => ({
    source: r.source,
    ref: r.ref,
  }));

  function close(state: CountState, ctx: RuleContext): RuleOutput<CountState> {
    const w = state.window;
    if (!w || w.good + w.scrap === 0) return { state: { ...state, window: undefined }, transactions: [] };
    const orderKey = `${w.order}/${w.operation}`;
    const from = state.cum[orderKey] ?? 0;
    const to = from + w.good + w.scrap;
    const cum = { ...state.cum, [orderKey]: to };
    const keys = Object.keys(cum);
    if (keys.length > MAX_ORDERS_REMEMBERED) delete cum[keys[0]];
    const tx: ProductionConfirmation = {
      schema: txSchemaId('ProductionConfirmation'),
      id: ulid(ctx.now),
      idempotencyKey: `${ctx.plant}:${cfg.workCenter}:${w.order}:${w.operation}:${counterName}:${from}-${to}`,
      correlationId: `order:${w.order}`,
      traceparent: newTraceparent(),
      plant: ctx.plant,
      agentId: ctx.agentId,
      workCenter: cfg.workCenter,
      eventTime: w.to,
      observedTime: new Date(ctx.now).toISOString(),
      source: { driver: cfg.counter.source, ref: cfg.counter.ref },
      data: {
        order: w.order,
        operation: w.operation,
        ...(cfg.material ? { material: cfg.material } : {}),
        yield: { qty: w.good, uom: cfg.uom },
        ...(cfg.scrapCounter ? { scrap: { qty: w.scrap, uom: cfg.uom } } : {}),
        final: 'none',
        postingDate: plantDate(w.to, ctx.timeZone),
        window: {
          from: w.from,
          to: w.to,
          counterRef: counterName,
          counterStart: w.counterStart,
          counterEnd: w.counterEnd,
          resetDetected: w.resetDetected,
        },
        derivedFrom: { events: w.events, sourceIds: w.sourceIds, firstEventTime: w.from, lastEventTime: w.to },
      },
    };
    return { state: { ...state, window: undefined, cum }, transactions: [tx] };
  }

  function apply(state: CountState, signal: Signal, ctx: RuleContext): RuleOutput<CountState> {
    if (signal.quality === 'bad') return { state, transactions: [] };
    if (isOrder(signal)) {
      const next = parseOrder(signal.value, 'source' in cfg.activeOrder ? cfg.activeOrder.operation : '0010');
      if (!next) return { state, transactions: [] };
      if (state.order && state.order.order === next.order && state.order.operation === next.operation) return { state, transactions: [] };
      // an order change closes the open window: no part is confirmed against the next order
      const closed = close(state, ctx);
      return { state: { ...closed.state, order: next }, transactions: closed.transactions };
    }
    const which = isGood(signal) ? 'good' : isScrap(signal) ? 'scrap' : undefined;
    if (!which) return { state, transactions: [] };
    const counterCfg = which === 'good' ? cfg.counter : cfg.scrapCounter!;
    const v = toNumber(signal.value);
    const last = state[which]?.last;
    const delta = counterDelta(last, v, counterCfg, signal.baseline === true);
    const quarantined: Quarantined[] = [];
    if (delta.kind === 'invalid') {
      quarantined.push({ code: 'SCHEMA_INVALID', reason: `${cfg.id}: ${delta.reason}`, source: signal.source, payload: signal });
      return { state, transactions: [], quarantined };
    }
    let next: CountState = { ...state, [which]: { last: v } };
    if (delta.kind === 'baseline') return { state: next, transactions: [] };
    if (delta.kind === 'jump') {
      // a PLC program download or a rescaled tag: never post it, keep the new value as the baseline
      quarantined.push({
        code: 'COUNTER_JUMP',
        reason: `${cfg.id}: ${signal.source}/${signal.ref} jumped by ${delta.d} (from ${last} to ${v}), more than maxJump ${counterCfg.maxJump}`,
        source: signal.source,
        payload: signal,
      });
      return { state: next, transactions: [], quarantined };
    }
    if (delta.d === 0 && !delta.reset) return { state: next, transactions: [] };
    const order = next.order ?? fixedOrder;
    if (!order) {
      quarantined.push({
        code: 'SCHEMA_INVALID',
        reason: `${cfg.id}: ${delta.d} ${which} parts counted while no order is active; they are not confirmed`,
        source: signal.source,
        payload: signal,
      });
      return { state: next, transactions: [], quarantined };
    }
    const w: Window = next.window ?? {
      order: order.order,
      operation: order.operation,
      good: 0,
      scrap: 0,
      counterStart: which === 'good' ? (last ?? v) : (next.good?.last ?? 0),
      counterEnd: which === 'good' ? v : (next.good?.last ?? 0),
      resetDetected: false,
      from: signal.sourceTime,
      to: signal.sourceTime,
      openedAt: ctx.now,
      events: 0,
      sourceIds: [],
    };
    const updated: Window = {
      ...w,
      good: w.good + (which === 'good' ? delta.d : 0),
      scrap: w.scrap + (which === 'scrap' ? delta.d : 0),
      counterEnd: which === 'good' ? v : w.counterEnd,
      resetDetected: w.resetDetected || delta.reset,
      to: signal.sourceTime > w.to ? signal.sourceTime : w.to,
      from: signal.sourceTime < w.from ? signal.sourceTime : w.from,
      events: w.events + 1,
      sourceIds: w.sourceIds.length < MAX_SOURCE_IDS ? [...w.sourceIds, signal.sourceId] : w.sourceIds,
    };
    next = { ...next, window: updated };
    if (updated.good + updated.scrap >= cfg.emitEvery.parts) {
      const closed = close(next, ctx);
      return { state: closed.state, transactions: closed.transactions, quarantined };
    }
    return { state: next, transactions: [], quarantined };
  }

  return {
    id: cfg.id,
    mode,
    inputs,
    initialState: () => ({ cum: {} }),
    apply,
    tick(state, ctx) {
      if (!state.window || ctx.now - state.window.openedAt < cfg.emitEvery.maxInterval) return { state, transactions: [] };
      return close(state, ctx);
    },
  };
}
