import { z } from 'zod';
import type { Signal } from '../../contracts/index.ts';
import { asText, atPath, jsonPath, roundedInteger } from './field-pick.ts';

/**
 * The order (and operation, material, unit) running on a work center, kept as a short history ordered by
 * source time, so a counter value that arrives just after an order change but was measured before it is
 * still attributed to the order that was running when it was measured.
 */

const signalRef = {
  source: z.string().min(1).max(64),
  ref: z.string().min(1).max(500),
};

/** Paths into an object value (an MQTT JSON payload, an OPC UA structure); all optional. */
const orderPaths = {
  /** where the order number is (default: the value itself: "1000123" or "1000123/0020") */
  orderPath: jsonPath.optional(),
  operationPath: jsonPath.optional(),
  materialPath: jsonPath.optional(),
  uomPath: jsonPath.optional(),
  /** the operation when the value names none */
  operation: z.string().min(1).max(10).default('0010'),
};

export const activeOrderSchema = z.union([
  /** from a tag or a topic of its own */
  z.strictObject({ ...signalRef, ...orderPaths }),
  /** from the counter events themselves (each MQTT cycle event names its order) */
  z.strictObject({ fromCounter: z.literal(true), ...orderPaths }),
  /** fixed: a work center that always runs one order (tests, rework cells) */
  z.strictObject({ order: z.string().min(1).max(40), operation: z.string().min(1).max(10).default('0010'), material: z.string().min(1).max(40).optional() }),
]);
export type ActiveOrderConfig = z.infer<typeof activeOrderSchema>;

export interface OrderInfo {
  order: string;
  operation: string;
  material?: string;
  uom?: string;
}

export interface OrderEntry extends OrderInfo {
  /** source time (ms) from which this order is active */
  since: number;
  /**
   * Source times (ms) of later announcements of the same order while it was active (a republished topic, a
   * Sparkplug rebirth), the last MAX_ORDER_HISTORY of them: no entry of their own, but when another order's
   * announcement arrives late and falls before one of them, that one is where this order comes back.
   */
  repeats?: number[];
}

export const MAX_ORDER_HISTORY = 16;

export function sameOrder(a: OrderInfo | undefined, b: OrderInfo | undefined): boolean {
  return !!a && !!b && a.order === b.order && a.operation === b.operation;
}

export function orderKey(o: OrderInfo): string {
  return `${o.order}/${o.operation}`;
}

/** Reads an order from a signal value. A string may carry "order/operation". */
export function parseOrder(
  value: Signal['value'],
  paths: { orderPath?: string; operationPath?: string; materialPath?: string; uomPath?: string; operation: string },
): OrderInfo | undefined {
  const defaultOperation = paths.operation;
  const raw = paths.orderPath ? atPath(value, paths.orderPath) : value;
  let order: string | undefined;
  let operation: string | undefined;
  if (raw && typeof raw === 'object' && !paths.orderPath) {
    order = asText((raw as Record<string, unknown>).order);
    operation = asText((raw as Record<string, unknown>).operation);
  } else {
    const text = asText(raw);
    if (text !== undefined) {
      const [o, op] = text.split('/', 2);
      order = asText(o);
      operation = asText(op);
    }
  }
  if (!order || order.length > 40) return undefined;
  if (paths.operationPath) operation = asText(atPath(value, paths.operationPath)) ?? operation;
  const obj = raw && typeof raw === 'object' ? (raw as Record<string, unknown>) : undefined;
  const material = paths.materialPath ? asText(atPath(value, paths.materialPath)) : obj ? asText(obj.material) : undefined;
  const uom = paths.uomPath ? asText(atPath(value, paths.uomPath)) : obj ? asText(obj.uom) : undefined;
  return {
    order,
    operation: (operation ?? defaultOperation).slice(0, 10),
    ...(material ? { material: material.slice(0, 40) } : {}),
    ...(uom ? { uom: uom.slice(0, 8) } : {}),
  };
}

/**
 * The order number a value carries when it is an integer beyond 2^53 (rounded when parsed: it could name
 * another order); parseOrder reads no order from such a value, and callers say why.
 */
export function roundedOrderNumber(value: Signal['value'], paths: { orderPath?: string }): number | undefined {
  const raw = paths.orderPath ? atPath(value, paths.orderPath) : value;
  const order = raw && typeof raw === 'object' && !paths.orderPath ? (raw as Record<string, unknown>).order : raw;
  return roundedInteger(order) ? order : undefined;
}

const sameEntry = (a: OrderInfo, b: OrderInfo) => sameOrder(a, b) && a.material === b.material && a.uom === b.uom;

/** An entry with these repeat times (none: the field is left out, as in state from before it existed). */
function withRepeats(e: OrderEntry, repeats: number[]): OrderEntry {
  const { repeats: _old, ...rest } = e;
  return repeats.length > 0 ? { ...rest, repeats: repeats.slice(-MAX_ORDER_HISTORY) } : rest;
}

/**
 * Inserts an order announcement at its source time. `changed` is false when no order changes at any time
 * (the same array, or a repeat noted): a repeat of the order already active at its time (a topic
 * republished every few seconds, a rebirth) takes no entry of the capped history, so it can never push
 * the entries of real order changes out. It is noted on the entry (`repeats`): when another order's
 * announcement arrives out of order and falls between the first announcement and a repeat, the order
 * comes back at the first repeat after it, as if the repeat had an entry of its own.
 */
export function recordOrderChange(history: OrderEntry[], info: OrderInfo, since: number): { orders: OrderEntry[]; changed: boolean } {
  let i = history.length - 1;
  while (i >= 0 && history[i].since > since) i--;
  const prev = i >= 0 ? history[i] : undefined;
  if (prev && sameEntry(prev, info)) {
    // a repeat: the earliest since is kept
    if (prev.since === since || prev.repeats?.includes(since)) return { orders: history, changed: false };
    const orders = history.slice();
    orders[i] = withRepeats(prev, [...(prev.repeats ?? []), since].sort((a, b) => a - b));
    return { orders, changed: false };
  }
  const out: OrderEntry[] = history.slice(0, Math.max(i, 0));
  let split: OrderEntry | undefined;
  if (prev) {
    // the order active before this announcement keeps its repeats before it; the first repeat after it is
    // where that order comes back (an entry replaced at the same time comes back at its first repeat)
    const kept = prev.since === since ? [] : (prev.repeats ?? []).filter((r) => r < since);
    const later = (prev.repeats ?? []).filter((r) => r > since);
    if (prev.since !== since) out.push(withRepeats(prev, kept));
    if (later.length > 0) split = withRepeats({ ...prev, since: later[0] }, later.slice(1));
  }
  out.push({ ...info, since });
  if (split) out.push(split);
  out.push(...history.slice(i + 1));
  // two entries of the same order in a row (an announcement before the next one of its order, or a repeat
  // stored as an entry by an earlier version): one entry from the earlier time
  const orders: OrderEntry[] = [];
  for (const e of out) {
    const last = orders[orders.length - 1];
    if (last && sameEntry(last, e)) orders[orders.length - 1] = withRepeats(last, [...(last.repeats ?? []), e.since, ...(e.repeats ?? [])].sort((a, b) => a - b));
    else orders.push(e);
  }
  return { orders: orders.slice(-MAX_ORDER_HISTORY), changed: true };
}

/** Inserts an order announcement at its source time (`recordOrderChange`); the same array when nothing changed. */
export function recordOrder(history: OrderEntry[], info: OrderInfo, since: number): OrderEntry[] {
  return recordOrderChange(history, info, since).orders;
}

/**
 * The order active at source time t: the latest change at or before t. Before the first known change the
 * earliest known order applies (the order tag's source time is when it was last written, which may be
 * after the first counter values the agent sees).
 */
export function orderAt(history: readonly OrderEntry[], t: number): OrderEntry | undefined {
  for (let i = history.length - 1; i >= 0; i--) if (history[i].since <= t) return history[i];
  return history.length > 0 ? history[0] : undefined;
}

export function currentOrder(history: readonly OrderEntry[]): OrderEntry | undefined {
  // not history[-1] on an empty history (a fixed order): that is a property lookup up the prototype chain
  return history.length > 0 ? history[history.length - 1] : undefined;
}
