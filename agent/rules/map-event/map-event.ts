import { createHash } from 'node:crypto';
import {
  newTraceparent,
  txSchemaId,
  ulid,
  type GoodsReceipt,
  type MaterialConsumption,
  type ProductionConfirmation,
  type Signal,
  type Transaction,
} from '../../../contracts/index.ts';
import type { Quarantined } from '../../outbox/outbox.ts';
import { orderAt, parseOrder, recordOrder, type OrderEntry } from '../active-order.ts';
import { asText, atPath, pick, roundedInteger, roundedProblem, type FieldPick } from '../field-pick.ts';
import { plantDate, type Rule, type RuleContext, type RuleOutput } from '../rule.ts';
import type { MapEventConfig } from './config.ts';

/**
 * map-event: one event (cycle complete, material loaded, order finished) -> one transaction, with field
 * picks and constants. Identity: `plant:source:eventId` (+ `:keySuffix`), where eventId is the event's
 * own id (fields picked by `eventId`, else the signal's dedupe id), so a redelivered event maps to the
 * same key and the hub stores it once.
 */

export interface MapEventState {
  orders?: OrderEntry[];
}

const MAX_KEY = 300;

/** Keys longer than the wire allows keep their readable head and a digest of the whole. */
export function boundedKey(key: string): string {
  if (key.length <= MAX_KEY) return key;
  return `${key.slice(0, MAX_KEY - 41)}#${createHash('sha256').update(key).digest('hex').slice(0, 40)}`;
}

function signedNumber(v: unknown): number | undefined {
  const n = typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) ? n : undefined;
}

export function mapEvent(cfg: MapEventConfig, mode: 'live' | 'shadow'): Rule<MapEventState> {
  const orderTag = cfg.activeOrder && 'source' in cfg.activeOrder ? cfg.activeOrder : undefined;
  const fixedOrder = cfg.activeOrder && 'order' in cfg.activeOrder && !('source' in cfg.activeOrder) && !('fromCounter' in cfg.activeOrder) ? cfg.activeOrder : undefined;
  const isInput = (s: Signal) => cfg.inputs.some((i) => i.source === s.source && i.ref === s.ref);
  // ids picked from the payload are unique per input, not across a rule's inputs of one source (robot1 and
  // robot2 both send eventId 42): then the key carries the ref too, or one event would be dropped as the
  // other's duplicate. Single-input rules keep plant:source:eventId.
  const perSource = new Map<string, number>();
  for (const i of cfg.inputs) perSource.set(i.source, (perSource.get(i.source) ?? 0) + 1);
  const refInKey = (source: string) => cfg.eventId !== undefined && (perSource.get(source) ?? 0) > 1;
  const inputs = [...cfg.inputs, ...(orderTag ? [{ source: orderTag.source, ref: orderTag.ref }] : [])];

  function apply(state: MapEventState, signal: Signal, ctx: RuleContext): RuleOutput<MapEventState> {
    if (signal.quality === 'bad') return { state, transactions: [] };
    const t = Date.parse(signal.sourceTime);
    if (orderTag && signal.source === orderTag.source && signal.ref === orderTag.ref) {
      const info = parseOrder(signal.value, orderTag);
      if (info) {
        const orders = recordOrder(state.orders ?? [], info, t);
        if (orders !== state.orders) state = { ...state, orders };
      }
    }
    // retained messages and births are state, not new events
    if (!isInput(signal) || signal.baseline) return { state, transactions: [] };
    for (const w of cfg.when) {
      const v = atPath(signal.value, w.json);
      const ok = w.in ? w.in.some((x) => x === v) : v === w.equals;
      if (!ok) return { state, transactions: [] };
    }
    const problems: string[] = [];
    const get = (name: keyof MapEventConfig['fields']) => {
      const p: FieldPick | undefined = cfg.fields[name];
      return p ? pick(p, signal) : undefined;
    };
    const text = (name: keyof MapEventConfig['fields'], max: number, required: boolean): string | undefined => {
      const raw = get(name);
      const s = asText(raw);
      if (s === undefined) {
        if (roundedInteger(raw)) problems.push(roundedProblem(name, raw));
        else if (required || (raw !== undefined && raw !== null)) problems.push(`${name}: expected a text, got ${JSON.stringify(raw)}`);
        return undefined;
      }
      if (s.length > max) {
        problems.push(`${name}: longer than ${max} characters`);
        return undefined;
      }
      return s;
    };
    const qty = (name: keyof MapEventConfig['fields'], required: boolean, signed = false): number | undefined => {
      const raw = get(name);
      if (raw === undefined || raw === null) {
        if (required) problems.push(`${name}: missing`);
        return undefined;
      }
      const n = signedNumber(raw);
      if (n === undefined || (!signed && n < 0)) {
        problems.push(`${name}: expected a ${signed ? '' : 'non-negative '}number, got ${JSON.stringify(raw)}`);
        return undefined;
      }
      return n;
    };

    const active = cfg.fields.order ? undefined : (fixedOrder ? { ...fixedOrder, since: 0 } : orderAt(state.orders ?? [], t));
    const order = cfg.fields.order ? text('order', 40, true) : active?.order;
    if (!order && !cfg.fields.order) problems.push('order: no active order at the event time');
    const operation = text('operation', 10, false) ?? active?.operation;
    const material = text('material', 40, cfg.emit !== 'production-confirmation') ?? active?.material;
    const uom = text('uom', 8, false) ?? active?.uom ?? cfg.uom;
    const idPicked = cfg.eventId ? pick(cfg.eventId, signal) : undefined;
    const rawId = cfg.eventId ? asText(idPicked) : signal.sourceId;
    if (!rawId) problems.push(roundedInteger(idPicked) ? roundedProblem('eventId', idPicked) : 'eventId: missing');

    let tx: Transaction | undefined;
    const idempotencyKey = boundedKey(`${ctx.plant}:${signal.source}:${refInKey(signal.source) ? `${signal.ref}:` : ''}${rawId}${cfg.keySuffix ? `:${cfg.keySuffix}` : ''}`);
    const envelope = {
      id: ulid(ctx.now),
      idempotencyKey,
      correlationId: `order:${order}`,
      traceparent: newTraceparent(),
      plant: ctx.plant,
      agentId: ctx.agentId,
      ...(cfg.workCenter ? { workCenter: cfg.workCenter } : {}),
      eventTime: signal.sourceTime,
      observedTime: new Date(ctx.now).toISOString(),
      source: { driver: signal.source, ref: signal.ref },
    };
    const postingDate = plantDate(signal.sourceTime, ctx.timeZone);
    const derivedFrom = { events: 1, sourceIds: [signal.sourceId], firstEventTime: signal.sourceTime, lastEventTime: signal.sourceTime };
    if (cfg.emit === 'production-confirmation') {
      const good = qty('yield', false) ?? 0;
      const scrap = qty('scrap', false);
      const rework = qty('rework', false);
      const reason = text('scrapReason', 40, false);
      const rawFinal = get('final');
      const final = rawFinal === true ? 'final' : rawFinal === 'final' || rawFinal === 'auto' ? rawFinal : 'none';
      if (rawFinal !== undefined && rawFinal !== null && typeof rawFinal !== 'boolean' && !['none', 'auto', 'final'].includes(String(rawFinal))) {
        problems.push(`final: expected none, auto, final or a boolean, got ${JSON.stringify(rawFinal)}`);
      }
      if (problems.length === 0) {
        const pc: ProductionConfirmation = {
          schema: txSchemaId('ProductionConfirmation'),
          ...envelope,
          data: {
            order: order!,
            ...(operation ? { operation } : {}),
            ...(material ? { material } : {}),
            yield: { qty: good, uom },
            ...(scrap !== undefined ? { scrap: { qty: scrap, uom, ...(reason ? { reasonCode: reason } : {}) } } : {}),
            ...(rework !== undefined ? { rework: { qty: rework, uom } } : {}),
            final,
            postingDate,
            window: { from: signal.sourceTime, to: signal.sourceTime, counterRef: `${signal.source}/${signal.ref}`.slice(0, 200), counterStart: 0, counterEnd: good, resetDetected: false },
            derivedFrom,
          },
        };
        tx = pc;
      }
    } else if (cfg.emit === 'material-consumption') {
      const q = qty('quantity', true, true);
      const rawMove = text('movement', 10, false);
      if (rawMove !== undefined && rawMove !== 'issue' && rawMove !== 'reversal') problems.push(`movement: expected issue or reversal, got ${JSON.stringify(rawMove)}`);
      const batch = text('batch', 40, false);
      const storageLocation = text('storageLocation', 10, false);
      if (problems.length === 0) {
        // a negative quantity is a correction: a reversal of the absolute amount, never a negative issue
        const movement = (rawMove as 'issue' | 'reversal' | undefined) ?? (q! < 0 ? 'reversal' : 'issue');
        const mc: MaterialConsumption = {
          schema: txSchemaId('MaterialConsumption'),
          ...envelope,
          data: {
            order: order!,
            ...(operation ? { operation } : {}),
            material: material!,
            ...(batch ? { batch } : {}),
            ...(storageLocation ? { storageLocation } : {}),
            quantity: { qty: Math.abs(q!), uom },
            movement,
            postingDate,
            derivedFrom,
          },
        };
        tx = mc;
      }
    } else {
      const q = qty('quantity', true);
      const batch = text('batch', 40, false);
      const storageLocation = text('storageLocation', 10, false);
      if (problems.length === 0) {
        const gr: GoodsReceipt = {
          schema: txSchemaId('GoodsReceipt'),
          ...envelope,
          data: {
            order: order!,
            material: material!,
            ...(batch ? { batch } : {}),
            ...(storageLocation ? { storageLocation } : {}),
            quantity: { qty: q!, uom },
            manufactureDate: postingDate,
            postingDate,
            derivedFrom,
          },
        };
        tx = gr;
      }
    }
    if (!tx) {
      const quarantined: Quarantined[] = [
        { code: 'SCHEMA_INVALID', reason: `${cfg.id}: event ${signal.source}/${signal.ref} not mapped: ${problems.join('; ')}`.slice(0, 1000), source: signal.source, payload: signal },
      ];
      return { state, transactions: [], quarantined };
    }
    return { state, transactions: [tx] };
  }

  return { id: cfg.id, mode, inputs, initialState: () => ({}), apply };
}
