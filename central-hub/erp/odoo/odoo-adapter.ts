import type { Logger } from 'pino';
import { erpMessageCode, transactionTypeOf, uuidv5, type GoodsReceipt, type MaterialConsumption, type ProductionConfirmation } from '../../../contracts/index.ts';
import { ErpError, type ErpAdapter, type ErpCallContext, type ErpLookupResult, type ErpPostResult, type ReleasedOrder, type ReleasedOrdersResult } from '../erp-adapter.ts';
import { ErpHttpClient, excerpt, jsonBody, retryAfterMs, reveal, type ErpHttpResponse } from '../http/erp-http.ts';
import { PerKeySerial } from '../per-key-serial.ts';
import type { OdooConfig } from './config.ts';

/**
 * Odoo MRP with standard methods only (README.md in this folder):
 * - ProductionConfirmation / GoodsReceipt -> mrp.production.write({qty_producing: +qty, <ref>: +uuid}),
 *   then button_mark_done for a final confirmation (a returned wizard is "needs attention")
 * - MaterialConsumption -> stock.move.write({quantity: ±qty, picked: true, <ref>: +uuid}) on the MO's
 *   component move for the material
 * The quantity and the key are written in ONE write call, which Odoo runs in one database
 * transaction: the key is in Odoo exactly when the quantity is. post() reads the record first and
 * skips the write when the key is already there, so a re-post after an unclear outcome is harmless.
 */

type Domain = Array<[string, string, unknown]>;

/** An Odoo error: JSON-2 `{name, message}` or JSON-RPC `error.data.{name, message}`. */
export interface OdooFault {
  name: string;
  message: string;
}

/** What classifies an Odoo exception (the transaction was rolled back: nothing was applied). */
function classifyOdooFault(f: OdooFault, what: string, status: number): ErpError | { status: 'rejected'; code: string; reason: string } {
  const short = f.name.split('.').pop() ?? f.name;
  if (/AccessDenied|AccessError|SessionExpired/.test(f.name)) {
    return new ErpError('UPSTREAM_UNAVAILABLE', `${what}: Odoo refused access (${short}): ${f.message}`, { erpCode: 'AUTH' });
  }
  if (/SerializationFailure|LockNotAvailable|ConcurrencyError|concurrent update/i.test(`${f.name} ${f.message}`)) {
    return new ErpError('UPSTREAM_UNAVAILABLE', `${what}: Odoo record locked by a concurrent update: ${f.message}`, { erpCode: erpMessageCode(short) });
  }
  if (/UserError|ValidationError|MissingError|RedirectWarning/.test(f.name)) {
    return { status: 'rejected', code: `odoo/${short}`, reason: f.message.slice(0, 500) };
  }
  // any other exception is a bug or a setup problem on the Odoo side (a missing field, a module); Odoo
  // rolled the call back, so it is safe to try again after someone fixed it
  return new ErpError('UPSTREAM_UNAVAILABLE', `${what}: Odoo raised ${f.name} (HTTP ${status}): ${f.message}`, { erpCode: erpMessageCode(short) });
}

function asFault(v: unknown): OdooFault | undefined {
  if (!v || typeof v !== 'object') return undefined;
  const o = v as { name?: unknown; message?: unknown };
  return typeof o.name === 'string' && o.name !== '' ? { name: o.name, message: typeof o.message === 'string' ? o.message : '' } : undefined;
}

/** A window action dict: Odoo wants a person to answer a wizard. */
function isAction(v: unknown): v is { type: string; res_model?: string; name?: string } {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && typeof (v as { type?: unknown }).type === 'string' && String((v as { type: string }).type).startsWith('ir.actions.');
}

export function createOdooAdapter(config: OdooConfig, deps: { logger?: Logger } = {}): ErpAdapter {
  const log = deps.logger?.child({ component: 'erp', adapter: 'odoo' });
  const http = new ErpHttpClient({ maxSockets: config.concurrency });
  const base = config.url.replace(/\/+$/, '');
  const ref = config.referenceField;
  const perOrder = new PerKeySerial();
  let uid: Promise<number> | undefined;

  const request = (path: string, body: unknown, headers: Record<string, string>, ctx: { signal?: AbortSignal; mutating: boolean }) =>
    http.request({
      method: 'POST',
      url: `${base}${path}`,
      headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
      body: JSON.stringify(body),
      timeoutMs: config.timeout,
      maxResponseBytes: config.maxResponseSize,
      signal: ctx.signal,
      mutating: ctx.mutating,
    });

  /** HTTP-level failures shared by both protocols (no Odoo error body to go by). */
  const httpFailure = (res: ErpHttpResponse, what: string, mutating: boolean): ErpError => {
    const s = res.status;
    const ra = retryAfterMs(res.headers);
    if (mutating && (s === 500 || s === 502 || s === 504 || (s >= 200 && s < 300))) {
      return new ErpError('ERP_IN_DOUBT', `${what}: HTTP ${s} without a readable Odoo answer; the write may have been applied: ${excerpt(res.body)}`, {
        erpCode: s >= 200 && s < 300 ? 'BAD_RESPONSE' : `HTTP_${s}`,
        retryAfterMs: ra,
      });
    }
    if (s === 401 || s === 403) {
      log?.warn({ status: s }, 'Odoo refused the API key');
      return new ErpError('UPSTREAM_UNAVAILABLE', `${what}: HTTP ${s}: check the API key and the user's access rights`, { erpCode: 'AUTH' });
    }
    return new ErpError('UPSTREAM_UNAVAILABLE', `${what}: HTTP ${s}: ${excerpt(res.body)}`, { erpCode: s >= 200 && s < 300 ? 'BAD_RESPONSE' : `HTTP_${s}`, retryAfterMs: ra });
  };

  /** One model method; resolves with its result, or throws ErpError / returns a rejection. */
  async function call(
    model: string,
    method: string,
    named: Record<string, unknown>,
    positional: { args: unknown[]; kwargs: Record<string, unknown> },
    ctx: ErpCallContext & { mutating: boolean },
  ): Promise<{ ok: true; result: unknown } | { ok: false; rejected: { status: 'rejected'; code: string; reason: string } }> {
    const what = `${model}.${method}`;
    if (config.protocol === 'json2') {
      const headers: Record<string, string> = { authorization: `bearer ${reveal(config.apiKey)}` };
      if (config.database) headers['x-odoo-database'] = config.database;
      const res = await request(`/json/2/${model}/${method}`, named, headers, ctx);
      const j = jsonBody(res);
      if (res.status === 200 && j !== undefined) return { ok: true, result: j };
      // throttling and maintenance pages: nothing was applied, whatever the body says
      if (res.status === 429 || res.status === 503 || res.status === 401 || res.status === 403) throw httpFailure(res, what, false);
      const fault = res.status >= 400 ? asFault(j) : undefined;
      if (fault) {
        const c = classifyOdooFault(fault, what, res.status);
        if (c instanceof ErpError) throw c;
        return { ok: false, rejected: c };
      }
      throw httpFailure(res, what, ctx.mutating);
    }
    const rpc = async (service: string, m: string, args: unknown[], mutating: boolean) => {
      const res = await request('/jsonrpc', { jsonrpc: '2.0', method: 'call', id: Date.now(), params: { service, method: m, args } }, {}, { signal: ctx.signal, mutating });
      const j = jsonBody(res) as { result?: unknown; error?: { message?: unknown; data?: unknown } } | undefined;
      if (res.status !== 200 || !j || typeof j !== 'object' || (!('result' in j) && !('error' in j))) throw httpFailure(res, what, mutating);
      return { res, j };
    };
    uid ??= rpc('common', 'authenticate', [config.database, config.login, reveal(config.apiKey), {}], false)
      .then(({ j }) => {
        if (typeof j.result !== 'number') throw new ErpError('UPSTREAM_UNAVAILABLE', `Odoo refused the login ${config.login} on database ${config.database}`, { erpCode: 'AUTH' });
        return j.result;
      })
      .catch((err: unknown) => {
        uid = undefined;
        throw err;
      });
    const id = await uid;
    const { res, j } = await rpc('object', 'execute_kw', [config.database, id, reveal(config.apiKey), model, method, positional.args, positional.kwargs], ctx.mutating);
    if (j.error) {
      const fault = asFault(j.error.data) ?? { name: 'odoo.exceptions.Exception', message: String(j.error.message ?? '') };
      if (/AccessDenied|SessionExpired/.test(fault.name)) uid = undefined;
      const c = classifyOdooFault(fault, what, res.status);
      if (c instanceof ErpError) throw c;
      return { ok: false, rejected: c };
    }
    return { ok: true, result: j.result };
  }

  const searchRead = async (model: string, domain: Domain, fields: string[], ctx: ErpCallContext, limit = 10): Promise<Array<Record<string, unknown>>> => {
    const r = await call(model, 'search_read', { domain, fields, limit }, { args: [domain], kwargs: { fields, limit } }, { ...ctx, mutating: false });
    if (!r.ok) throw new ErpError('UPSTREAM_UNAVAILABLE', `${model}.search_read refused: ${r.rejected.reason}`, { erpCode: erpMessageCode(r.rejected.code) });
    if (!Array.isArray(r.result) || !r.result.every((x) => x && typeof x === 'object' && typeof (x as { id?: unknown }).id === 'number')) {
      throw new ErpError('UPSTREAM_UNAVAILABLE', `${model}.search_read: not a list of records: ${excerpt(JSON.stringify(r.result) ?? '', 120)}`, { erpCode: 'BAD_RESPONSE' });
    }
    return r.result as Array<Record<string, unknown>>;
  };

  const write = async (model: string, id: number, vals: Record<string, unknown>, ctx: ErpCallContext) => {
    const r = await call(model, 'write', { ids: [id], vals }, { args: [[id], vals], kwargs: {} }, { ...ctx, mutating: true });
    if (r.ok && r.result !== true) {
      throw new ErpError('ERP_IN_DOUBT', `${model}.write answered ${excerpt(JSON.stringify(r.result) ?? '', 80)} instead of true`, { erpCode: 'BAD_RESPONSE' });
    }
    return r;
  };

  const keysOf = (v: unknown): string[] => (typeof v === 'string' ? v.split(/\s+/).filter(Boolean) : []);
  const withKey = (v: unknown, uuid: string) => [...keysOf(v), uuid].slice(-config.keepKeys).join('\n');

  const findOrder = async (order: string, ctx: ErpCallContext) => {
    const rows = await searchRead('mrp.production', [['name', '=', order]], ['id', 'name', 'state', 'qty_producing', 'product_qty', ref], ctx, 2);
    return rows[0];
  };

  const markDone = async (mo: Record<string, unknown>, uuid: string, ctx: ErpCallContext): Promise<ErpPostResult> => {
    const id = mo.id as number;
    const context = config.markDoneContext;
    const r = await call('mrp.production', 'button_mark_done', { ids: [id], context }, { args: [[id]], kwargs: { context } }, { ...ctx, mutating: true });
    if (!r.ok) return r.rejected;
    if (r.result === true) return { status: 'posted', erpRef: refOf(mo.name, uuid), detail: { moId: id, done: true } };
    if (isAction(r.result)) {
      const what = r.result.res_model ?? r.result.type;
      return {
        status: 'rejected',
        code: `odoo/wizard:${what}`,
        reason: `${String(mo.name)}: the quantity is recorded, but Odoo asks "${r.result.name ?? what}" before finishing the order; answer it in Odoo (or set markDoneContext), then replay`,
        detail: { moId: id, wizard: what, quantityRecorded: true },
      };
    }
    throw new ErpError('ERP_IN_DOUBT', `mrp.production.button_mark_done answered ${excerpt(JSON.stringify(r.result) ?? '', 80)}`, { erpCode: 'BAD_RESPONSE' });
  };

  /** the MO (and move) plus the start of the key's UUID, which a person finds in the reference field */
  const refOf = (moName: unknown, uuid: string, moveId?: unknown) => `${String(moName)}${moveId !== undefined ? `/move ${String(moveId)}` : ''}@${uuid.slice(0, 8)}`;

  const closedReject = (mo: Record<string, unknown>): ErpPostResult => ({
    status: 'rejected',
    code: `odoo/mo-${String(mo.state)}`,
    reason: `manufacturing order ${String(mo.name)} is ${mo.state === 'done' ? 'done' : 'cancelled'}`,
  });

  const postProduction = async (tx: ProductionConfirmation | GoodsReceipt, ctx: ErpCallContext): Promise<ErpPostResult> => {
    const uuid = uuidv5(tx.idempotencyKey);
    const qty = transactionTypeOf(tx) === 'GoodsReceipt' ? (tx as GoodsReceipt).data.quantity.qty : (tx as ProductionConfirmation).data.yield.qty;
    const final = transactionTypeOf(tx) === 'ProductionConfirmation' && (tx as ProductionConfirmation).data.final === 'final' && config.markDoneOnFinal;
    const mo = await findOrder(tx.data.order, ctx);
    if (!mo) return { status: 'rejected', code: 'odoo/mo-not-found', reason: `no manufacturing order named ${tx.data.order}` };
    const already = keysOf(mo[ref]).includes(uuid);
    if (!already) {
      if (mo.state === 'done' || mo.state === 'cancel') return closedReject(mo);
      const current = typeof mo.qty_producing === 'number' ? mo.qty_producing : 0;
      const w = await write('mrp.production', mo.id as number, { qty_producing: current + qty, [ref]: withKey(mo[ref], uuid) }, ctx);
      if (!w.ok) return w.rejected;
    }
    if (final && mo.state !== 'done') return markDone(mo, uuid, ctx);
    return { status: 'posted', erpRef: refOf(mo.name, uuid), detail: { moId: mo.id, ...(already ? { alreadyRecorded: true } : {}) } };
  };

  const postConsumption = async (tx: MaterialConsumption, ctx: ErpCallContext): Promise<ErpPostResult> => {
    const uuid = uuidv5(tx.idempotencyKey);
    const d = tx.data;
    const mo = await findOrder(d.order, ctx);
    if (!mo) return { status: 'rejected', code: 'odoo/mo-not-found', reason: `no manufacturing order named ${d.order}` };
    const moves = await searchRead(
      'stock.move',
      [
        ['raw_material_production_id', '=', mo.id],
        ['product_id.default_code', '=', d.material],
      ],
      ['id', 'state', config.quantityField, ref],
      ctx,
    );
    const done = moves.find((m) => keysOf(m[ref]).includes(uuid));
    if (done) return { status: 'posted', erpRef: refOf(mo.name, uuid, done.id), detail: { moveId: done.id, alreadyRecorded: true } };
    if (mo.state === 'done' || mo.state === 'cancel') return closedReject(mo);
    const move = moves.find((m) => m.state !== 'done' && m.state !== 'cancel');
    if (!move) return { status: 'rejected', code: 'odoo/no-component-move', reason: `${String(mo.name)} has no open component move for ${d.material}` };
    const current = typeof move[config.quantityField] === 'number' ? (move[config.quantityField] as number) : 0;
    const next = d.movement === 'reversal' ? current - d.quantity.qty : current + d.quantity.qty;
    if (next < 0) return { status: 'rejected', code: 'odoo/negative-consumption', reason: `reversal of ${d.quantity.qty} exceeds the ${current} consumed on ${String(mo.name)}` };
    const w = await write('stock.move', move.id as number, { [config.quantityField]: next, picked: true, [ref]: withKey(move[ref], uuid) }, ctx);
    if (!w.ok) return w.rejected;
    return { status: 'posted', erpRef: refOf(mo.name, uuid, move.id), detail: { moveId: move.id } };
  };

  return {
    name: 'odoo',

    async post(tx, ctx) {
      // quantities are read-modify-write: one posting per order at a time (the posting service also orders per order)
      return perOrder.run(tx.data.order, async () => {
        switch (transactionTypeOf(tx)) {
          case 'ProductionConfirmation':
          case 'GoodsReceipt':
            return postProduction(tx as ProductionConfirmation | GoodsReceipt, ctx);
          case 'MaterialConsumption':
            return postConsumption(tx as MaterialConsumption, ctx);
          default:
            return { status: 'rejected', code: 'PLANTBRIDGE/UNSUPPORTED', reason: `odoo cannot post ${tx.schema}` };
        }
      });
    },

    async lookup(tx, ctx): Promise<ErpLookupResult> {
      const uuid = uuidv5(tx.idempotencyKey);
      if (transactionTypeOf(tx) === 'MaterialConsumption') {
        const rows = await searchRead('stock.move', [['raw_material_production_id.name', '=', tx.data.order], [ref, 'ilike', uuid]], ['id', ref, 'raw_material_production_id'], ctx);
        const hit = rows.find((r) => keysOf(r[ref]).includes(uuid));
        if (!hit) return { found: false };
        const mo = hit.raw_material_production_id;
        const moName = Array.isArray(mo) && typeof mo[1] === 'string' ? mo[1] : tx.data.order;
        return { found: true, erpRef: refOf(moName, uuid, hit.id) };
      }
      const rows = await searchRead('mrp.production', [['name', '=', tx.data.order], [ref, 'ilike', uuid]], ['id', 'name', 'state', ref], ctx);
      const hit = rows.find((r) => keysOf(r[ref]).includes(uuid));
      if (!hit) return { found: false };
      // a final confirmation is done only when the order is: its quantity may be recorded while Mark Done
      // is still outstanding (the backorder wizard, a timeout). "Not found" sends it through post(), which
      // sees the key recorded, adds nothing and only finishes the order.
      const final = transactionTypeOf(tx) === 'ProductionConfirmation' && (tx as ProductionConfirmation).data.final === 'final' && config.markDoneOnFinal;
      if (final && hit.state !== 'done' && hit.state !== 'cancel') return { found: false };
      return { found: true, erpRef: refOf(hit.name, uuid) };
    },

    async releasedOrders(plant: string, since: Date, ctx: ErpCallContext): Promise<ReleasedOrdersResult> {
      const r = config.releasedOrders;
      const value = Object.hasOwn(r.plants, plant) ? r.plants[plant] : plant;
      // Odoo datetimes are UTC "YYYY-MM-DD HH:MM:SS"
      const odooTime = (d: Date) => d.toISOString().slice(0, 19).replace('T', ' ');
      const limit = 5000;
      const mos = await searchRead('mrp.production', [['state', '=', 'confirmed'], [r.plantField, '=', value], [r.startField, '>=', odooTime(since)]], ['id', 'name', r.startField, 'workorder_ids'], ctx, limit);
      if (mos.length >= limit) throw new ErpError('UPSTREAM_UNAVAILABLE', `mrp.production: plant ${value} has ${limit} or more confirmed orders; cannot read them whole`, { erpCode: 'LOOKUP_LIMIT' });
      const woIds = mos.flatMap((m) => (Array.isArray(m.workorder_ids) ? m.workorder_ids.filter((x): x is number => typeof x === 'number') : []));
      const wcOf = new Map<number, string>();
      if (woIds.length > 0) {
        for (const w of await searchRead('mrp.workorder', [['id', 'in', woIds]], ['production_id', 'workcenter_id'], ctx, woIds.length + 10)) {
          const mo = Array.isArray(w.production_id) ? w.production_id[0] : undefined;
          const wc = Array.isArray(w.workcenter_id) ? w.workcenter_id[1] : undefined;
          if (typeof mo === 'number' && typeof wc === 'string' && wc !== '' && wc.length <= 64 && !wcOf.has(mo)) wcOf.set(mo, wc);
        }
      }
      const orders: ReleasedOrder[] = [];
      let skipped = 0;
      for (const m of mos) {
        const start = m[r.startField];
        const t = typeof start === 'string' && /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/.test(start) ? Date.parse(`${start.replace(' ', 'T')}Z`) : Number.NaN;
        if (typeof m.name !== 'string' || m.name === '' || m.name.length > 64 || Number.isNaN(t)) {
          skipped++;
          continue;
        }
        orders.push({ order: m.name, plant, workCenter: wcOf.get(m.id as number) ?? null, scheduledStart: new Date(t).toISOString() });
      }
      return { orders, skipped };
    },

    async healthcheck() {
      try {
        // proves reachability, the key, read access and that the reference field exists
        await searchRead('mrp.production', [['id', '=', 0]], ['id', ref], { attempt: 1 }, 1);
        return { ok: true };
      } catch (err) {
        return { ok: false, message: err instanceof Error ? err.message : String(err) };
      }
    },

    async close() {
      http.close();
    },
  };
}
