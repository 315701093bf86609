import {
  newTraceparent,
  txSchemaId,
  ulid,
  type MaterialConsumption,
  type ProductionConfirmation,
  type Signal,
  type Transaction,
} from '../../../contracts/index.ts';
import type { Quarantined } from '../../outbox/outbox.ts';
import { MAX_ORDER_HISTORY, currentOrder, orderAt, orderKey, parseOrder, recordOrderChange, roundedOrderNumber, sameOrder, type OrderEntry, type OrderInfo } from '../active-order.ts';
import { counterDelta, counterValue } from '../counter-delta.ts';
import { boundedKey } from '../map-event/map-event.ts';
import { asFlag, asQuantity, asText, atPath, roundedInteger, roundedProblem } from '../field-pick.ts';
import { instantMs, plantDate, type Rule, type RuleContext, type RuleOutput } from '../rule.ts';
import { shiftAt } from '../shift-calendar.ts';
import type { CountProductionConfig, CounterConfig } from './config.ts';

/**
 * count-production: good / scrap / rework counters -> ProductionConfirmations (and, per unit produced,
 * MaterialConsumptions) against the order active at each reading's source time.
 *
 * Identity: a confirmation's key is `plant:workCenter:order:operation:counterSource/counterRef:from-to`,
 * where from-to is the window on this order's cumulative part count (good + scrap + rework) as this rule
 * has counted it. The count is committed rule state, so re-deriving after a crash or a replay gives the
 * same key, and two windows of one order never share a key, even when the PLC counter resets. A
 * consumption's key is its confirmation's key + `:mc:<material>`.
 */

export { counterDelta } from '../counter-delta.ts';

const MAX_SOURCE_IDS = 20;
/** cumulative counts are kept for this many recently counted orders (least recently used go first) */
export const MAX_ORDERS_REMEMBERED = 200;

type Role = 'good' | 'scrap' | 'rework';

/** A source time more than this after the signal's receive time is a clock error, not a reading's time. */
const FUTURE_LIMIT_MS = 24 * 3600_000;

interface CounterState {
  /** last reading, decimal string (UInt64 safe) */
  last: string;
  /** source time (ms) of the newest reading: older readings arriving later are stale */
  at: number;
  /**
   * Set by a reading rejected as a jump (kept as the baseline in `last`): the baseline before it. If the
   * next reading fits this one, the rejected reading was a glitch (a brief 0 in a PLC restart, a bad
   * sample): counting from the rejected value would count the whole counter again.
   */
  before?: string;
}

export interface CountWindow {
  order: string;
  operation: string;
  material?: string;
  uom: string;
  good: number;
  scrap: number;
  rework: number;
  counterStart: number;
  counterEnd: number;
  resetDetected: boolean;
  /** ISO source times of the first and last reading in the window */
  from: string;
  to: string;
  /** source time (ms) of the first reading (minInterval) */
  firstAt: number;
  /** agent clock (ms) when the window opened (maxInterval) */
  openedAt: number;
  shiftEnd?: number;
  shiftDate?: string;
  events: number;
  sourceIds: string[];
  /** source time (ms) of the newest of its readings no longer in `recent` */
  untrackedTo?: number;
}

/** One reading's parts, as counted for an order. */
interface Part {
  role: Role;
  d: number;
  /** source time, ms and as received */
  t: number;
  at: string;
  id: string;
  reset: boolean;
  /** the good counter's reading and the one before it (a window's counterStart/End, for people) */
  v?: number;
  prev?: number;
}

/** A counted reading kept for a late order tag (`recent`). */
interface Counted {
  /** source time (ms) */
  t: number;
  role: Role;
  d: number;
  id: string;
  /** the `order/operation` it was counted for */
  key: string;
  /** the confirmation holding it, once that order's window closed */
  in?: string;
  /** confirmed to `key`, then reported as belonging to this order (a late tag) */
  said?: string;
  v?: number;
  prev?: number;
  reset?: true;
}

/** counted readings kept for re-attribution when an order tag arrives after them (a bound, not a buffer) */
export const MAX_RECENT = 16;

export interface CountState {
  good?: CounterState;
  scrap?: CounterState;
  rework?: CounterState;
  /** order changes by source time, oldest first (capped) */
  orders: OrderEntry[];
  /** open windows by `order/operation` */
  windows: Record<string, CountWindow>;
  /** cumulative parts confirmed per `order/operation`: the key space of the windows */
  cum: Record<string, number>;
  /** last value of the final signal (edge detection) */
  finalLast?: boolean;
  /**
   * source time (ms) of the final confirmation per `order/operation` (capped like `cum`): parts counted for
   * such an order later are reported, never confirmed (a second confirmation after the final one)
   */
  done?: Record<string, number>;
  /** the last MAX_RECENT counted readings (orders from a tag only), oldest first */
  recent?: Counted[];
  /** source time (ms) of the newest reading dropped from `recent` */
  forgotten?: number;
  /**
   * source time (ms) of the newest part counted per `order/operation`, for the orders counted last (as
   * many as the order history holds): a final flag seen true without its edge finishes only an order
   * counted since it became active
   */
  counted?: Record<string, number>;
}

function normalise(s: Partial<CountState> & { order?: OrderInfo; window?: CountWindow }): CountState {
  if (s.orders && s.windows && s.cum) return s as CountState;
  // state written by the first version of this rule: one order, one window
  return {
    ...(s.good ? { good: { last: String(s.good.last), at: s.good.at ?? 0 } } : {}),
    ...(s.scrap ? { scrap: { last: String(s.scrap.last), at: s.scrap.at ?? 0 } } : {}),
    orders: s.orders ?? (s.order ? [{ ...s.order, since: 0 }] : []),
    windows: s.windows ?? {},
    cum: s.cum ?? {},
  };
}

const round6 = (n: number) => Math.round(n * 1e6) / 1e6;

/**
 * A copy of obj without key (and without its first `skip` other keys), built by assignment: `delete`
 * turns an object into a slow dictionary for good, and every later copy of the window map with it. The
 * keys are order keys (`order/operation`, never `__proto__`), so assignment defines them as a spread does.
 */
function without<T>(obj: Record<string, T>, key: string, skip = 0): Record<string, T> {
  const out: Record<string, T> = {};
  for (const k of Object.keys(obj)) {
    if (k === key) continue;
    if (skip > 0) {
      skip--;
      continue;
    }
    out[k] = obj[k];
  }
  return out;
}

/** ids.includes(id), in half the time (Array.prototype.includes compares strings through a slower path) */
function listed(ids: readonly string[], id: string): boolean {
  for (let i = ids.length - 1; i >= 0; i--) if (ids[i] === id) return true;
  return false;
}

export function countProduction(cfg: CountProductionConfig, mode: 'live' | 'shadow'): Rule<CountState> {
  const counterName = `${cfg.counter.source}/${cfg.counter.ref}`;
  const counters: Array<[Role, CounterConfig]> = [['good', cfg.counter]];
  if (cfg.scrapCounter) counters.push(['scrap', cfg.scrapCounter]);
  if (cfg.reworkCounter) counters.push(['rework', cfg.reworkCounter]);
  const ao = cfg.activeOrder;
  const orderFromTag = 'source' in ao ? ao : undefined;
  const orderFromCounter = 'fromCounter' in ao ? ao : undefined;
  const fixedOrder: OrderEntry | undefined =
    'order' in ao && !('source' in ao) && !('fromCounter' in ao)
      ? { order: ao.order, operation: ao.operation, ...(ao.material ? { material: ao.material } : {}), since: 0 }
      : undefined;
  const matches = (s: Signal, r: { source: string; ref: string } | undefined) => r !== undefined && s.source === r.source && s.ref === r.ref;

  const inputs = [...counters.map(([, c]) => c), ...(orderFromTag ? [orderFromTag] : []), ...(cfg.final ? [cfg.final] : [])].map((r) => ({
    source: r.source,
    ref: r.ref,
  }));

  /** the key of the order last counted against: the same entry of the order history comes back reading after reading */
  let keyOf: OrderInfo | undefined;
  let keyOfKey = '';
  function windowKey(o: OrderInfo): string {
    if (o !== keyOf) {
      keyOf = o;
      keyOfKey = orderKey(o);
    }
    return keyOfKey;
  }

  // Source times parsed before: a window's last reading is usually the reading before this one, and its
  // first reading stays the same for the window's life (instantMs is a function of the string alone).
  let lastIso = '';
  let lastMs = NaN;
  let startIso = '';
  let startMs = NaN;
  function windowStartMs(iso: string): number {
    if (iso !== startIso) {
      startIso = iso;
      startMs = instantMs(iso);
    }
    return startMs;
  }

  function confirmationKey(w: { order: string; operation: string }, from: number, to: number, ctx: RuleContext): string {
    // bounded like map-event's: a long counter ref (a Sparkplug metric path) must not make the key too long
    return boundedKey(`${ctx.plant}:${cfg.workCenter}:${w.order}:${w.operation}:${counterName}:${from}-${to}`);
  }

  /** Closes the window of one order: a confirmation (and consumptions) unless it is empty and not final. */
  function close(state: CountState, key: string, ctx: RuleContext, final?: { type: 'final' | 'auto'; at: string; sourceId: string; order: OrderInfo }): RuleOutput<CountState> {
    const w = state.windows[key];
    const windows = without(state.windows, key);
    const parts = w ? w.good + w.scrap + w.rework : 0;
    if (parts === 0 && !final) return { state: { ...state, windows }, transactions: [] };
    const doneAt = state.done?.[key];
    if (doneAt !== undefined && !final) {
      // parts held after the order's final confirmation: nothing more is confirmed for it, they are reported
      return { state: { ...state, windows, ...settled(state.recent, key, undefined) }, transactions: [], quarantined: [afterFinal(w!, doneAt, 'after')] };
    }
    const o: OrderInfo = w ?? final!.order;
    const from = state.cum[key] ?? 0;
    const to = from + parts;
    // this order moves to the end (most recently counted); the least recently counted beyond the cap go
    const cum = without(state.cum, key, Object.keys(state.cum).length + (Object.hasOwn(state.cum, key) ? 0 : 1) - MAX_ORDERS_REMEMBERED);
    cum[key] = to;
    const at = w?.to ?? final!.at;
    const firstAt = w?.from ?? final!.at;
    const uom = w?.uom ?? o.uom ?? cfg.uom;
    const material = o.material ?? cfg.material;
    const idempotencyKey = confirmationKey(o, from, to, ctx);
    const sourceIds = w ? w.sourceIds : [final!.sourceId];
    const derivedFrom = { events: w ? w.events + (final ? 1 : 0) : 1, sourceIds, firstEventTime: firstAt, lastEventTime: at };
    const postingDate = cfg.postingDate === 'shift-start' && w?.shiftDate ? w.shiftDate : plantDate(at, ctx.timeZone);
    const envelope = {
      correlationId: `order:${o.order}`,
      plant: ctx.plant,
      agentId: ctx.agentId,
      workCenter: cfg.workCenter,
      eventTime: at,
      observedTime: new Date(ctx.now).toISOString(),
      source: { driver: cfg.counter.source, ref: cfg.counter.ref },
    };
    const tx: ProductionConfirmation = {
      schema: txSchemaId('ProductionConfirmation'),
      id: ulid(ctx.now),
      idempotencyKey,
      traceparent: newTraceparent(),
      ...envelope,
      data: {
        order: o.order,
        operation: o.operation,
        ...(material ? { material } : {}),
        yield: { qty: w?.good ?? 0, uom },
        ...(cfg.scrapCounter ? { scrap: { qty: w?.scrap ?? 0, uom, ...(cfg.scrapReason ? { reasonCode: cfg.scrapReason } : {}) } } : {}),
        ...(cfg.reworkCounter ? { rework: { qty: w?.rework ?? 0, uom } } : {}),
        final: final ? final.type : 'none',
        postingDate,
        window: {
          from: firstAt,
          to: at,
          // the wire allows 200 characters (a longer one made every confirmation of the rule a rejection)
          counterRef: counterName.slice(0, 200),
          counterStart: w?.counterStart ?? 0,
          counterEnd: w?.counterEnd ?? 0,
          resetDetected: w?.resetDetected ?? false,
        },
        derivedFrom,
      },
    };
    const transactions: Transaction[] = [tx];
    if (cfg.consumption?.mode === 'per-unit' && w) {
      for (const c of cfg.consumption.components) {
        if (c.forMaterial !== undefined && c.forMaterial !== material) continue;
        const qty = round6(c.perUnit * (c.basis === 'yield' ? w.good : parts));
        if (qty <= 0) continue;
        const mc: MaterialConsumption = {
          schema: txSchemaId('MaterialConsumption'),
          id: ulid(ctx.now),
          idempotencyKey: boundedKey(`${idempotencyKey}:mc:${c.material}`),
          traceparent: newTraceparent(),
          ...envelope,
          data: {
            order: o.order,
            operation: o.operation,
            material: c.material,
            ...(c.batch ? { batch: c.batch } : {}),
            ...(c.storageLocation ? { storageLocation: c.storageLocation } : {}),
            quantity: { qty, uom: c.uom },
            movement: 'issue',
            postingDate,
            derivedFrom,
          },
        };
        transactions.push(mc);
      }
    }
    let done = state.done;
    if (final) {
      // nothing more is confirmed for this order: later parts are reported (afterFinal)
      done = without(state.done ?? {}, key, Object.keys(state.done ?? {}).length + (state.done && Object.hasOwn(state.done, key) ? 0 : 1) - MAX_ORDERS_REMEMBERED);
      done[key] = instantMs(final.at);
    }
    const next = done ? { ...state, windows, cum, done } : { ...state, windows, cum };
    return { state: w && state.recent ? { ...next, ...settled(state.recent, key, idempotencyKey) } : next, transactions };
  }

  /** The readings of a closed window in `recent`: marked with the confirmation holding them, or gone (reported). */
  function settled(recent: Counted[] | undefined, key: string, confirmation: string | undefined): { recent?: Counted[] } {
    if (!recent || !recent.some((c) => c.key === key && c.in === undefined)) return {};
    const open = (c: Counted) => c.key === key && c.in === undefined;
    return { recent: confirmation === undefined ? recent.filter((c) => !open(c)) : recent.map((c) => (open(c) ? { ...c, in: confirmation } : c)) };
  }

  /** The report (a dead letter) of parts that belong to an order whose final confirmation was already sent. */
  function afterFinal(w: Pick<CountWindow, 'order' | 'operation' | 'good' | 'scrap' | 'rework' | 'from' | 'to' | 'sourceIds'>, doneAt: number, when: string): Quarantined {
    const finalAt = new Date(doneAt).toISOString();
    const parts = (['good', 'scrap', 'rework'] as const).filter((r) => w[r] > 0).map((r) => `${w[r]} ${r}`);
    return {
      code: 'ORDER_ATTRIBUTION',
      reason: `${cfg.id}: ${parts.join(', ')} parts of order ${w.order}/${w.operation} measured ${w.from === w.to ? `at ${w.from}` : `from ${w.from} to ${w.to}`}, ${when} its final confirmation (${finalAt}): not confirmed, as no confirmation follows a final one; post them by hand if they belong to the order`,
      source: cfg.counter.source,
      payload: { order: w.order, operation: w.operation, good: w.good, scrap: w.scrap, rework: w.rework, from: w.from, to: w.to, finalAt, sourceIds: w.sourceIds },
    };
  }

  /** Closes every open window that does not belong to the current order. */
  function closeStale(state: CountState, ctx: RuleContext, out: Transaction[], quarantined: Quarantined[]): CountState {
    const cur = currentOrder(state.orders) ?? fixedOrder;
    for (const key of Object.keys(state.windows)) {
      if (cur && key === orderKey(cur)) continue;
      state = closeInto(state, key, ctx, out, quarantined);
    }
    return state;
  }

  function closeInto(state: CountState, key: string, ctx: RuleContext, out: Transaction[], quarantined: Quarantined[]): CountState {
    const r = close(state, key, ctx);
    out.push(...r.transactions);
    if (r.quarantined) quarantined.push(...r.quarantined);
    return r.state;
  }

  function addParts(state: CountState, role: Role, d: number, reading: { v?: number | bigint; prev?: string; reset: boolean }, signal: Signal, t: number, ctx: RuleContext, out: Transaction[], quarantined: Quarantined[]): CountState {
    // an event that names its order is that order's; otherwise the order active at the reading's source time
    const named = orderFromCounter ? parseOrder(signal.value, orderFromCounter) : undefined;
    const rounded = orderFromCounter && !named ? roundedOrderNumber(signal.value, orderFromCounter) : undefined;
    if (rounded !== undefined) {
      // the event names its order, but not faithfully: neither that number nor the active order is certain
      quarantined.push({
        code: 'ORDER_ATTRIBUTION',
        reason: `${cfg.id}: ${d} ${role} parts counted at ${signal.sourceTime} are not confirmed: ${roundedProblem('order', rounded, orderFromCounter!.orderPath)}`,
        source: signal.source,
        payload: signal,
      });
      return state;
    }
    const order = named ?? orderAt(state.orders, t) ?? fixedOrder;
    if (!order) {
      quarantined.push({
        code: 'ORDER_ATTRIBUTION',
        reason: `${cfg.id}: ${d} ${role} parts counted at ${signal.sourceTime} while no order is active; they are not confirmed`,
        source: signal.source,
        payload: signal,
      });
      return state;
    }
    const part: Part = { role, d, t, at: signal.sourceTime, id: signal.sourceId, reset: reading.reset };
    if (role === 'good' && reading.v !== undefined) {
      part.v = Number(reading.v);
      if (reading.prev !== undefined) part.prev = Number(reading.prev);
    }
    return place(state, order, part, ctx, out, quarantined);
  }

  /** Counts one reading's parts for an order: in its open window, or reported when the order is done. */
  function place(state: CountState, order: OrderInfo, p: Part, ctx: RuleContext, out: Transaction[], quarantined: Quarantined[]): CountState {
    const { role, d, t } = p;
    const key = windowKey(order);
    const doneAt = state.done?.[key];
    if (doneAt !== undefined && (t <= doneAt || !sameOrder(currentOrder(state.orders) ?? fixedOrder, order))) {
      // measured before the order's final confirmation but received after it, or the order is over: reported
      const parts = { good: 0, scrap: 0, rework: 0 };
      parts[role] = d;
      quarantined.push(afterFinal({ order: order.order, operation: order.operation, ...parts, from: p.at, to: p.at, sourceIds: [p.id] }, doneAt, t <= doneAt ? 'before but received after' : 'after'));
      return state;
    }
    let w: CountWindow | undefined = state.windows[key];
    if (w && w.shiftEnd !== undefined && t >= w.shiftEnd) {
      state = closeInto(state, key, ctx, out, quarantined);
      w = undefined;
    }
    const good = p.v;
    if (!w) {
      const span = cfg.shifts?.length && cfg.emitEvery.onShiftEnd ? shiftAt(t, cfg.shifts, ctx.timeZone) : undefined;
      const shiftDate = cfg.shifts?.length ? (span ?? shiftAt(t, cfg.shifts, ctx.timeZone)).date : undefined;
      const lastGood = state.good ? Number(state.good.last) : 0;
      w = {
        order: order.order,
        operation: order.operation,
        ...(order.material ? { material: order.material } : {}),
        uom: order.uom ?? cfg.uom,
        good: 0,
        scrap: 0,
        rework: 0,
        counterStart: good !== undefined ? (p.prev ?? good) : lastGood,
        counterEnd: good !== undefined ? good : lastGood,
        resetDetected: false,
        from: p.at,
        to: p.at,
        firstAt: t,
        openedAt: ctx.now,
        ...(span ? { shiftEnd: span.end } : {}),
        ...(shiftDate ? { shiftDate } : {}),
        events: 0,
        sourceIds: [],
      };
    }
    // a copy, never a change in place: the state passed in is the committed one until the outbox commits
    const updated: CountWindow = { ...w };
    if (role === 'good') updated.good = w.good + d;
    else if (role === 'scrap') updated.scrap = w.scrap + d;
    else updated.rework = w.rework + d;
    if (good !== undefined) updated.counterEnd = good;
    if (p.reset) updated.resetDetected = true;
    if (t < windowStartMs(w.from)) updated.from = p.at;
    if (t > (w.to === lastIso ? lastMs : instantMs(w.to))) updated.to = p.at;
    updated.events = w.events + 1;
    if (w.sourceIds.length < MAX_SOURCE_IDS && !listed(w.sourceIds, p.id)) {
      const ids = w.sourceIds.slice();
      ids.push(p.id);
      updated.sourceIds = ids;
    }
    let windows = { ...state.windows };
    windows[key] = updated;
    const seen = state.counted?.[key];
    if (seen === undefined || t > seen) {
      // this order moves to the end (counted last); the least recently counted beyond the cap go
      const had = state.counted ?? {};
      const counted = without(had, key, Object.keys(had).length + (Object.hasOwn(had, key) ? 0 : 1) - MAX_ORDER_HISTORY);
      counted[key] = t;
      state = { ...state, counted };
    }
    if (orderFromTag) {
      // kept for a late order tag (reattribute); the oldest counted reading beyond the bound is forgotten
      const before = state.recent ?? [];
      const over = before.length + 1 - MAX_RECENT;
      const recent = over > 0 ? before.slice(over) : before.slice();
      const c: Counted = { t, role, d, id: p.id, key };
      if (p.v !== undefined) c.v = p.v;
      if (p.prev !== undefined) c.prev = p.prev;
      if (p.reset) c.reset = true;
      recent.push(c);
      let forgotten = state.forgotten;
      for (let i = 0; i < over; i++) {
        const gone = before[i];
        if (forgotten === undefined || gone.t > forgotten) forgotten = gone.t;
        const gw = gone.in === undefined ? windows[gone.key] : undefined;
        if (gw && (gw.untrackedTo === undefined || gone.t > gw.untrackedTo)) {
          if (gw === updated) updated.untrackedTo = gone.t;
          else windows = { ...windows, [gone.key]: { ...gw, untrackedTo: gone.t } };
        }
      }
      state = forgotten === undefined ? { ...state, windows, recent } : { ...state, windows, recent, forgotten };
    } else {
      state = { ...state, windows };
    }
    const cur = currentOrder(state.orders) ?? fixedOrder;
    const late = !sameOrder(cur, order);
    // a finally confirmed order's window is held (the order change or the tick reports it), never closed early
    const full = doneAt === undefined && updated.good + updated.scrap + updated.rework >= cfg.emitEvery.parts && t - updated.firstAt >= cfg.emitEvery.minInterval;
    if (late || full) {
      // a late reading of a finished order is confirmed at once: that order's window was closed by the change
      state = closeInto(state, key, ctx, out, quarantined);
    }
    return state;
  }

  /**
   * An order announcement changed the history (`before` -> `state.orders`): the counted readings still
   * known (`recent`) that now belong to another order move there — an order tag often arrives after counter
   * readings measured after it was written. Readings already confirmed cannot move (a confirmation is not
   * taken back) and readings beyond `recent` are not known: both are reported.
   */
  function reattribute(state: CountState, before: readonly OrderEntry[], ctx: RuleContext, out: Transaction[], quarantined: Quarantined[]): CountState {
    const iso = (ms: number) => new Date(ms).toISOString();
    const moved: Array<[Counted, OrderEntry]> = [];
    const posted = new Map<string, { from: Counted[]; to: OrderEntry }>();
    const keep: Counted[] = [];
    // Before the oldest change either history remembers, the order is not known (orderAt's earliest order is
    // a guess for readings before the first announcement, not a fact): such a reading is neither moved nor
    // reported. Otherwise, once the entry of its order is out of the capped history, it would look like the
    // next order's.
    const known = Math.max(before[0]?.since ?? -Infinity, state.orders[0]?.since ?? -Infinity);
    for (const c of state.recent ?? []) {
      const o = c.t < known ? undefined : orderAt(state.orders, c.t);
      if (!o || orderKey(o) === (c.said ?? c.key)) keep.push(c);
      else if (c.in === undefined) moved.push([c, o]);
      else {
        // already confirmed to the order it was counted for: reported, and again if another tag changes it
        const k = `${c.in}\u0000${c.said ?? ''}\u0000${orderKey(o)}`;
        const g = posted.get(k) ?? { from: [], to: o };
        g.from.push(c);
        posted.set(k, g);
        const { said: _said, ...rest } = c;
        keep.push(orderKey(o) === c.key ? rest : { ...c, said: orderKey(o) });
      }
    }
    if (state.forgotten !== undefined && state.forgotten >= known) {
      const was = orderAt(before, state.forgotten);
      const now = orderAt(state.orders, state.forgotten);
      if (was && now && !sameOrder(was, now)) {
        quarantined.push({
          code: 'ORDER_ATTRIBUTION',
          reason: `${cfg.id}: order ${orderKey(now)} is active from ${iso(now.since)} by its tag, which arrived after more than ${MAX_RECENT} counted readings measured since then; only the last ${MAX_RECENT} counted readings are re-attributed, parts of older ones (up to ${iso(state.forgotten)}) stay with order ${orderKey(was)}; correct the two orders in the ERP if needed`,
          source: cfg.counter.source,
          payload: { order: now.order, operation: now.operation, since: iso(now.since), stayWith: { order: was.order, operation: was.operation }, upTo: iso(state.forgotten) },
        });
      }
    }
    for (const { from, to } of posted.values()) {
      const sum = { good: 0, scrap: 0, rework: 0 };
      for (const c of from) sum[c.role] += c.d;
      const first = iso(Math.min(...from.map((c) => c.t)));
      const last = iso(Math.max(...from.map((c) => c.t)));
      const parts = (['good', 'scrap', 'rework'] as const).filter((r) => sum[r] > 0).map((r) => `${sum[r]} ${r}`);
      const said = from[0].said;
      quarantined.push({
        code: 'ORDER_ATTRIBUTION',
        reason: `${cfg.id}: ${parts.join(', ')} parts measured ${first === last ? `at ${first}` : `from ${first} to ${last}`} were already confirmed to order ${from[0].key} (${from[0].in}) when the tag of order ${orderKey(to)}, active from ${iso(to.since)}, arrived${said ? ` (this replaces the report that they belong to order ${said})` : ''}; a confirmation is not taken back: correct the orders in the ERP if needed`,
        source: cfg.counter.source,
        payload: { confirmedTo: from[0].key, idempotencyKey: from[0].in, belongsTo: { order: to.order, operation: to.operation }, ...(said ? { previouslyReportedFor: said } : {}), ...sum, from: first, to: last, sourceIds: from.map((c) => c.id) },
      });
    }
    if (moved.length === 0 && posted.size === 0) return state;
    // take the moved readings out of their windows
    let windows = state.windows;
    for (const key of new Set(moved.map(([c]) => c.key))) {
      const w = windows[key];
      if (!w) continue;
      const gone = moved.filter(([c]) => c.key === key).map(([c]) => c);
      const stay = keep.filter((c) => c.key === key && c.in === undefined);
      const u: CountWindow = { ...w, events: w.events - gone.length, sourceIds: w.sourceIds.filter((id) => !gone.some((c) => c.id === id)) };
      for (const c of gone) u[c.role] -= c.d;
      if (u.good + u.scrap + u.rework <= 0) {
        windows = without(windows, key);
        continue;
      }
      const times = stay.map((c) => c.t);
      if (u.untrackedTo !== undefined) times.push(u.untrackedTo);
      if (times.length > 0) u.to = iso(Math.max(...times));
      if (u.untrackedTo === undefined && stay.length > 0) {
        u.firstAt = Math.min(...stay.map((c) => c.t));
        u.from = iso(u.firstAt);
      }
      const firstGood = gone.filter((c) => c.role === 'good').sort((a, b) => a.t - b.t)[0];
      if (firstGood?.prev !== undefined) u.counterEnd = firstGood.prev;
      windows = { ...windows, [key]: u };
    }
    state = { ...state, windows, recent: keep };
    // and count them again for the order active at their source time, oldest first
    moved.sort((a, b) => a[0].t - b[0].t);
    for (const [c, o] of moved) {
      const p: Part = { role: c.role, d: c.d, t: c.t, at: iso(c.t), id: c.id, reset: c.reset === true };
      if (c.v !== undefined) p.v = c.v;
      if (c.prev !== undefined) p.prev = c.prev;
      state = place(state, o, p, ctx, out, quarantined);
    }
    return state;
  }

  /**
   * Source time (ms) from which `order` is active without a break at t (-Infinity when that is before the
   * history: a fixed order, or the earliest known one); undefined when another order is active at t.
   */
  function activeSince(history: readonly OrderEntry[], order: OrderInfo, t: number): number | undefined {
    if (history.length === 0) return -Infinity;
    let i = history.length - 1;
    while (i > 0 && history[i].since > t) i--;
    if (!sameOrder(history[i], order)) return undefined;
    while (i > 0 && sameOrder(history[i - 1], order)) i--;
    return i === 0 ? -Infinity : history[i].since;
  }

  function readCounter(state: CountState, role: Role, c: CounterConfig, signal: Signal, t: number, ctx: RuleContext, out: Transaction[], quarantined: Quarantined[]): CountState {
    const raw = c.field ? atPath(signal.value, c.field) : signal.value;
    if (c.counts === 'increment') {
      if (signal.baseline) return state; // a retained or birth value repeats an event already counted
      if (raw === undefined || raw === null) return state;
      const qty = asQuantity(raw);
      if (qty === undefined || !Number.isInteger(qty)) {
        quarantined.push({ code: 'SCHEMA_INVALID', reason: `${cfg.id}: ${role} quantity ${JSON.stringify(raw)} is not a non-negative integer`, source: signal.source, payload: signal });
        return state;
      }
      if (qty > c.maxJump) {
        quarantined.push({ code: 'COUNTER_JUMP', reason: `${cfg.id}: ${signal.source}/${signal.ref} reports ${qty} ${role} parts in one event, more than maxJump ${c.maxJump}`, source: signal.source, payload: signal });
        return state;
      }
      return qty === 0 ? state : addParts(state, role, qty, { reset: false }, signal, t, ctx, out, quarantined);
    }
    const prev = state[role];
    if (prev && t < prev.at) return state; // stale: a newer reading of this cumulative counter is already in
    if (prev && t === prev.at) {
      // the same source time (1 s resolution is common) and lower: the older of two readings, arrived late
      const same = counterDelta(prev.last, raw, c, false);
      if (same.kind === 'delta' && (same.reset || same.wrapped)) return state;
    }
    // after a rejected jump: a reading that fits the baseline before it shows that the jump was a glitch
    const back = prev?.before !== undefined && signal.baseline !== true ? counterDelta(prev.before, raw, c, false) : undefined;
    let delta = back?.kind === 'delta' && !back.reset ? back : counterDelta(prev?.last, raw, c, signal.baseline === true);
    if (delta.kind === 'baseline' && prev && c.onBaseline === 'count') {
      const across = counterDelta(prev.last, raw, c, false);
      if (across.kind === 'delta' && !across.reset) delta = across;
    }
    if (delta.kind === 'invalid') {
      quarantined.push({ code: 'SCHEMA_INVALID', reason: `${cfg.id}: ${signal.source}/${signal.ref}: ${delta.reason}`, source: signal.source, payload: signal });
      return state;
    }
    // a valid number reading is a safe non-negative integer: its decimal string is the bigint's (+ 0 turns -0 into 0)
    const v = typeof raw === 'number' ? raw + 0 : counterValue(raw)!;
    const counter: CounterState = { last: String(v), at: Math.max(t, prev?.at ?? t) };
    state = { ...state };
    state[role] = counter;
    if (delta.kind === 'baseline') return state;
    if (delta.kind === 'jump') {
      // a PLC program download or a rescaled tag: never post it, keep the new value as the baseline (and
      // the one before it, in case the next reading shows this one was a glitch)
      counter.before = prev?.before ?? prev?.last;
      quarantined.push({
        code: 'COUNTER_JUMP',
        reason: `${cfg.id}: ${signal.source}/${signal.ref} ${delta.reason}, more than maxJump ${c.maxJump}; not confirmed, new baseline ${v}`,
        source: signal.source,
        payload: signal,
      });
      return state;
    }
    if (delta.d === 0) return state;
    return addParts(state, role, delta.d, { v, prev: prev?.last, reset: delta.reset }, signal, t, ctx, out, quarantined);
  }

  function apply(input: CountState, signal: Signal, ctx: RuleContext): RuleOutput<CountState> {
    if (signal.quality === 'bad') return { state: input, transactions: [] };
    const t = instantMs(signal.sourceTime);
    const received = instantMs(signal.receivedAt);
    if (t > received + FUTURE_LIMIT_MS) {
      // a PLC clock glitch (one reading stamped years ahead) would otherwise become the counter's newest
      // time, and every later reading would be dropped as older: counting would stop without a word
      return {
        state: input,
        transactions: [],
        quarantined: [{ code: 'SCHEMA_INVALID', reason: `${cfg.id}: ${signal.source}/${signal.ref}: source time ${signal.sourceTime} is more than a day after it was received (${signal.receivedAt}); not used (a clock error at the source?); a later reading with a sane time carries its parts`, source: signal.source, payload: signal }],
      };
    }
    const r = applyAt(input, signal, t, ctx);
    // the window the next reading lands in most likely ends at this one
    lastIso = signal.sourceTime;
    lastMs = t;
    return r;
  }

  function applyAt(input: CountState, signal: Signal, t: number, ctx: RuleContext): RuleOutput<CountState> {
    let state = normalise(input);
    const out: Transaction[] = [];
    const quarantined: Quarantined[] = [];

    // 1. the order: from its tag or topic, or named by the counter event itself
    const orderCfg = matches(signal, orderFromTag) ? orderFromTag : orderFromCounter && counters.some(([, c]) => matches(signal, c)) ? orderFromCounter : undefined;
    if (orderCfg) {
      const info = parseOrder(signal.value, orderCfg);
      if (info) {
        const before = state.orders;
        const { orders, changed } = recordOrderChange(before, info, t);
        if (orders !== before) state = { ...state, orders };
        // a repeat of the order already active (a republished topic, a rebirth) changes no reading's order
        if (changed) {
          // readings counted before this announcement arrived but measured after it are the new order's
          if (state.recent?.length || state.forgotten !== undefined) state = reattribute(state, before, ctx, out, quarantined);
          // an order change closes the open window: no part is confirmed against the next order
          state = closeStale(state, ctx, out, quarantined);
        }
      } else if (orderCfg === orderFromTag && signal.value !== null && signal.value !== '') {
        const rounded = roundedOrderNumber(signal.value, orderCfg);
        const why = rounded !== undefined ? `: ${roundedProblem('order', rounded)}` : '';
        quarantined.push({ code: 'SCHEMA_INVALID', reason: `${cfg.id}: no order in ${signal.source}/${signal.ref} value ${JSON.stringify(signal.value).slice(0, 200)}${why}`, source: signal.source, payload: signal });
      }
    }

    // 2. the counters (one event may carry good, scrap and rework)
    for (const [role, c] of counters) {
      if (matches(signal, c)) state = readCounter(state, role, c, signal, t, ctx, out, quarantined);
    }

    // 3. the final confirmation, on the rising edge of its signal
    if (cfg.final && matches(signal, cfg.final)) {
      const f = cfg.final;
      let fire: boolean;
      /** true when the flag is seen true without a known edge: the rule never saw the flag before */
      let unseen = false;
      if (f.trigger === 'event') {
        fire = !signal.baseline;
      } else {
        const flag = asFlag(f.field ? atPath(signal.value, f.field) : signal.value);
        // A flag last seen false and now true rose, also when this reading is a baseline (a birth or a
        // reconnect after the job completed offline): the edge is not seen, the final is still due. The
        // order's `done` mark makes it fire once, and its key comes from committed state, so a replay after
        // a crash derives the same confirmation.
        fire = flag && state.finalLast !== true;
        unseen = state.finalLast === undefined;
        state = { ...state, finalLast: flag };
      }
      if (fire) {
        const namedRaw = f.orderPath ? atPath(signal.value, f.orderPath) : undefined;
        // an order number rounded when parsed names no order faithfully: not the active one either
        const rounded = roundedInteger(namedRaw);
        const named = asText(namedRaw);
        const active = orderAt(state.orders, t) ?? fixedOrder;
        const op = f.operationPath ? asText(atPath(signal.value, f.operationPath)) : undefined;
        const order: OrderInfo | undefined = rounded
          ? undefined
          : named
            ? { ...(active && active.order === named ? active : {}), order: named, operation: op ?? (active && active.order === named ? active.operation : ('operation' in ao ? ao.operation : '0010')) }
            : active;
        if (!order && f.orderPath) {
          const why = rounded ? `: ${roundedProblem('order', namedRaw)}` : '';
          quarantined.push({ code: 'SCHEMA_INVALID', reason: `${cfg.id}: final signal ${signal.source}/${signal.ref} names no order at ${f.orderPath}${why}`, source: signal.source, payload: signal });
        }
        const k = order && orderKey(order);
        // A repeated final of an order already finally confirmed (the flag toggled again): nothing more is
        // sent. A flag true without a live edge (in a baseline, or at first sight: a new rule, a final tag
        // just configured) may be left from an earlier job, while the tag already names the next order: it
        // finishes only an order this rule has counted parts for since that order became active.
        const unsure = f.trigger === 'rising' && (signal.baseline === true || unseen);
        if (order && k && state.done?.[k] === undefined) {
          const w = state.windows[k];
          const quantity = (state.cum[k] ?? 0) + (w ? w.good + w.scrap + w.rework : 0);
          const since = unsure ? activeSince(state.orders, order, t) : undefined;
          const last = state.counted?.[k];
          // state from before `counted` existed: an open window holds parts counted while the order is active
          const countedSince = since !== undefined && quantity > 0 && (last !== undefined ? last >= since : state.counted === undefined && w !== undefined);
          if (!unsure || countedSince) {
            const r = close(state, k, ctx, { type: cfg.final.type, at: signal.sourceTime, sourceId: signal.sourceId, order });
            state = r.state;
            out.push(...r.transactions);
          } else if (quantity > 0) {
            // parts were confirmed for the order before: its final may be due, the rule cannot tell
            const from = since === undefined || since === -Infinity ? undefined : new Date(since).toISOString();
            quarantined.push({
              code: 'ORDER_ATTRIBUTION',
              reason: `${cfg.id}: final signal ${signal.source}/${signal.ref} is true at ${signal.sourceTime} ${signal.baseline ? 'in a baseline (a birth, retained message or reconnect)' : 'the first time this rule sees it'}, with no rising edge seen, and order ${k}, active then, has had no parts counted since it became active${from ? ` (${from})` : ''}; the flag may be left from an earlier job, so no final confirmation is sent (${quantity} parts were confirmed for the order before): send it by hand if the order is complete`,
              source: signal.source,
              payload: { order: order.order, operation: order.operation, finalSignal: { source: signal.source, ref: signal.ref }, at: signal.sourceTime, baseline: signal.baseline === true, ...(from ? { activeSince: from } : {}), confirmedQuantity: quantity, sourceId: signal.sourceId },
            });
          }
          // nothing counted for the order: ignored, no confirmation is lost
        }
      }
    }
    return quarantined.length ? { state, transactions: out, quarantined } : { state, transactions: out };
  }

  return {
    id: cfg.id,
    mode,
    inputs,
    initialState: () => ({ orders: [], windows: {}, cum: {} }),
    apply,
    tick(input, ctx) {
      let state = normalise(input);
      const out: Transaction[] = [];
      const quarantined: Quarantined[] = [];
      let changed = false;
      for (const [key, w] of Object.entries(state.windows)) {
        const expired = ctx.now - w.openedAt >= cfg.emitEvery.maxInterval;
        const shiftOver = w.shiftEnd !== undefined && ctx.now >= w.shiftEnd;
        if (!expired && !shiftOver) continue;
        state = closeInto(state, key, ctx, out, quarantined);
        changed = true;
      }
      if (!changed) return { state: input, transactions: [] };
      return quarantined.length ? { state, transactions: out, quarantined } : { state, transactions: out };
    },
  };
}
