import type { IncomingMessage, ServerResponse } from 'node:http';
import { FaultQueue, noAnswer, readBody, sendJson, sleep, startSimServer, writeHostile, type SimFault } from '../sim-kit.ts';

/**
 * An Odoo MRP database as far as the odoo adapter goes, over JSON-2 (`POST /json/2/<model>/<method>`,
 * bearer API key) and JSON-RPC (`/jsonrpc`, common.authenticate + object.execute_kw). Models:
 * mrp.production (name, state, qty_producing, product_qty) with component moves (stock.move with
 * product_id.default_code, quantity / quantity_done, picked) and the reference field. search_read with a
 * small domain language (=, !=, in, not in, ilike; dotted many2one paths), write, button_mark_done
 * (returns the backorder wizard when qty_producing < product_qty unless context.skip_backorder).
 * Each call is one "transaction": an exception leaves nothing behind, as in Odoo.
 */

export const ODOO_SIM_API_KEY = 'sim-odoo-api-key';
export const ODOO_SIM_DB = 'plantbridge';
export const ODOO_SIM_LOGIN = 'plantbridge@example.com';

export interface OdooSimulatorOptions {
  port?: number;
  latencyMs?: number;
  referenceField?: string;
  /** 17+: `quantity`; 16 and older: `quantity_done` */
  quantityField?: 'quantity' | 'quantity_done';
  /** components every auto-created MO consumes (default RM-1, RM-2) */
  components?: string[];
  /** product_qty of auto-created MOs (default 1000) */
  productQty?: number;
}

export interface OdooSimMo {
  id: number;
  name: string;
  state: 'confirmed' | 'progress' | 'to_close' | 'done' | 'cancel';
  product_code: string;
  product_qty: number;
  qty_producing: number;
  ref: string;
  /** monitoring: the warehouse code (the plant), the scheduled start (UTC, "YYYY-MM-DD HH:MM:SS"), the work center */
  warehouse?: string;
  date_start?: string;
  workcenter?: string;
}

export interface OdooSimMove {
  id: number;
  mo: number;
  product_code: string;
  state: 'assigned' | 'done' | 'cancel';
  quantity: number;
  picked: boolean;
  ref: string;
}

export interface OdooSimulator {
  url: string;
  /** adds a manufacturing order in a state, for a warehouse, with a scheduled start and a work center */
  putOrder(o: { name: string; state: OdooSimMo['state']; warehouse: string; dateStart: Date; workcenter: string }): void;
  stop(): Promise<void>;
  orders(): OdooSimMo[];
  moves(): OdooSimMove[];
  /** how many times a key's UUID was written into a reference field (1 = applied exactly once) */
  applied(uuid: string): number;
  setFault(fault: SimFault): void;
  clearFaults(): void;
  setLatency(ms: number): void;
  closeOrder(name: string): void;
  reopenOrder(name: string): void;
  stats(): { calls: number; writes: number };
}

class OdooException extends Error {
  readonly odooName: string;
  readonly status: number;
  constructor(name: string, message: string, status: number) {
    super(message);
    this.odooName = name;
    this.status = status;
  }
}
const userError = (m: string) => new OdooException('odoo.exceptions.UserError', m, 422);
const valueError = (m: string) => new OdooException('builtins.ValueError', m, 500);

const READS = new Set(['search_read', 'read', 'search', 'search_count', 'fields_get', 'authenticate']);

export async function startOdooSimulator(opts: OdooSimulatorOptions = {}): Promise<OdooSimulator> {
  let latencyMs = opts.latencyMs ?? 0;
  const refField = opts.referenceField ?? 'x_plantbridge_keys';
  const qtyField = opts.quantityField ?? 'quantity';
  const components = opts.components ?? ['RM-1', 'RM-2'];
  const faults = new FaultQueue();
  const mos: OdooSimMo[] = [];
  const moves: OdooSimMove[] = [];
  const appliedCount = new Map<string, number>();
  const stats = { calls: 0, writes: 0 };
  let nextId = 1;

  const moByName = (name: string, create: boolean): OdooSimMo | undefined => {
    let mo = mos.find((m) => m.name === name);
    if (!mo && create) {
      mo = { id: nextId++, name, state: 'progress', product_code: 'FG-7', product_qty: opts.productQty ?? 1000, qty_producing: 0, ref: '' };
      mos.push(mo);
      for (const c of components) moves.push({ id: nextId++, mo: mo.id, product_code: c, state: 'assigned', quantity: 0, picked: false, ref: '' });
    }
    return mo;
  };

  const moFields = (mo: OdooSimMo): Record<string, unknown> => ({
    id: mo.id,
    name: mo.name,
    state: mo.state,
    product_id: [1, mo.product_code],
    'product_id.default_code': mo.product_code,
    product_qty: mo.product_qty,
    qty_producing: mo.qty_producing,
    [refField]: mo.ref || false,
    date_start: mo.date_start ?? false,
    'picking_type_id.warehouse_id.code': mo.warehouse ?? false,
    workorder_ids: mo.workcenter ? [100_000 + mo.id] : [],
  });
  const workorderFields = (mo: OdooSimMo): Record<string, unknown> => ({ id: 100_000 + mo.id, production_id: [mo.id, mo.name], workcenter_id: [7, mo.workcenter ?? ''] });
  const PROBE_MO: OdooSimMo = { id: 0, name: '', state: 'progress', product_code: '', product_qty: 0, qty_producing: 0, ref: '' };
  const PROBE_MOVE: OdooSimMove = { id: 0, mo: 0, product_code: '', state: 'assigned', quantity: 0, picked: false, ref: '' };
  const moveFields = (mv: OdooSimMove): Record<string, unknown> => {
    const mo = mos.find((m) => m.id === mv.mo) ?? PROBE_MO;
    return {
      id: mv.id,
      state: mv.state,
      raw_material_production_id: [mo.id, mo.name],
      'raw_material_production_id.name': mo.name,
      product_id: [2, mv.product_code],
      'product_id.default_code': mv.product_code,
      [qtyField]: mv.quantity,
      picked: mv.picked,
      [refField]: mv.ref || false,
    };
  };

  const matches = (rec: Record<string, unknown>, model: string, domain: unknown): boolean => {
    if (!Array.isArray(domain)) throw valueError('Invalid domain');
    return domain.every((term) => {
      if (!Array.isArray(term) || term.length !== 3) throw valueError(`Invalid leaf ${JSON.stringify(term)}`);
      const [field, op, value] = term as [string, string, unknown];
      if (!(field in rec)) throw valueError(`Invalid field '${field}' on model '${model}'`);
      let v = rec[field];
      if (Array.isArray(v) && typeof v[0] === 'number') v = v[0];
      switch (op) {
        case '=':
          return v === value || (v === false && value === false);
        case '!=':
          return v !== value;
        case 'in':
          return Array.isArray(value) && value.includes(v);
        case 'not in':
          return Array.isArray(value) && !value.includes(v);
        case '>=':
          return typeof v === 'string' && typeof value === 'string' && v >= value;
        case 'ilike':
          return typeof v === 'string' && v.toLowerCase().includes(String(value).toLowerCase());
        default:
          throw valueError(`Invalid operator ${op}`);
      }
    });
  };

  const countKeys = (before: string, after: string) => {
    const c = (s: string) => {
      const m = new Map<string, number>();
      for (const k of s.split(/\s+/).filter(Boolean)) m.set(k, (m.get(k) ?? 0) + 1);
      return m;
    };
    const b = c(before);
    for (const [k, n] of c(after)) {
      const added = n - (b.get(k) ?? 0);
      if (added > 0) appliedCount.set(k, (appliedCount.get(k) ?? 0) + added);
    }
  };

  const execute = (model: string, method: string, args: unknown[], kw: Record<string, unknown>): unknown => {
    stats.calls++;
    if (model === 'mrp.workorder' && method === 'search_read') {
      const domain = args[0] ?? kw.domain ?? [];
      const recs = mos.filter((m) => m.workcenter).map(workorderFields);
      const known = workorderFields(PROBE_MO);
      for (const term of Array.isArray(domain) ? domain : []) if (Array.isArray(term) && !(String(term[0]) in known)) throw valueError(`Invalid field '${String(term[0])}' on model '${model}'`);
      return recs.filter((r) => matches(r, model, domain)).slice(0, Number(kw.limit ?? 80));
    }
    if (model !== 'mrp.production' && model !== 'stock.move') throw new OdooException('builtins.KeyError', `'${model}'`, 404);
    if (method === 'search_read') {
      const domain = args[0] ?? kw.domain ?? [];
      const fields = (args[1] ?? kw.fields) as string[] | undefined;
      const limit = Number(kw.limit ?? args[4] ?? 80);
      if (model === 'mrp.production' && Array.isArray(domain)) {
        const byName = (domain as unknown[]).find((t) => Array.isArray(t) && t[0] === 'name' && t[1] === '=');
        if (byName) moByName(String((byName as unknown[])[2]), true);
      }
      const recs = model === 'mrp.production' ? mos.map(moFields) : moves.map(moveFields);
      // like Odoo, unknown fields are an error even when nothing matches
      const known = model === 'mrp.production' ? moFields(PROBE_MO) : { ...moveFields(PROBE_MOVE), ...{ 'raw_material_production_id.name': '' } };
      for (const term of Array.isArray(domain) ? domain : []) {
        if (Array.isArray(term) && !(String(term[0]) in known)) throw valueError(`Invalid field '${String(term[0])}' on model '${model}'`);
      }
      for (const f of fields ?? []) if (!(f in known)) throw valueError(`Invalid field '${f}' on model '${model}'`);
      const out = recs.filter((r) => matches(r, model, domain)).slice(0, limit);
      if (!fields) return out;
      return out.map((r) => Object.fromEntries(['id', ...fields].map((f) => [f, r[f]])));
    }
    if (method === 'write') {
      const ids = (args[0] ?? kw.ids) as number[];
      const vals = (args[1] ?? kw.vals) as Record<string, unknown>;
      if (!Array.isArray(ids) || !vals || typeof vals !== 'object') throw valueError('write(ids, vals) expected');
      stats.writes++;
      // validate everything first: an exception must leave nothing behind
      const targets = ids.map((id) => {
        const rec = model === 'mrp.production' ? mos.find((m) => m.id === id) : moves.find((m) => m.id === id);
        if (!rec) throw new OdooException('odoo.exceptions.MissingError', `Record does not exist or has been deleted. (Record: ${model}(${id},))`, 404);
        return rec;
      });
      const allowed = model === 'mrp.production' ? ['qty_producing', refField] : [qtyField, 'picked', refField];
      for (const k of Object.keys(vals)) if (!allowed.includes(k)) throw valueError(`Invalid field '${k}' on model '${model}'`);
      for (const rec of targets) {
        const mo = model === 'mrp.production' ? (rec as OdooSimMo) : mos.find((m) => m.id === (rec as OdooSimMove).mo)!;
        if (mo.state === 'done' || mo.state === 'cancel') throw userError(`You cannot change a ${mo.state === 'done' ? 'done' : 'cancelled'} manufacturing order (${mo.name}).`);
      }
      for (const rec of targets) {
        if (refField in vals) {
          countKeys(rec.ref, String(vals[refField] || ''));
          rec.ref = String(vals[refField] || '');
        }
        if (model === 'mrp.production' && 'qty_producing' in vals) (rec as OdooSimMo).qty_producing = Number(vals.qty_producing);
        if (model === 'stock.move') {
          if (qtyField in vals) (rec as OdooSimMove).quantity = Number(vals[qtyField]);
          if ('picked' in vals) (rec as OdooSimMove).picked = Boolean(vals.picked);
        }
      }
      return true;
    }
    if (method === 'button_mark_done' && model === 'mrp.production') {
      const ids = (args[0] ?? kw.ids) as number[];
      const context = (kw.context ?? {}) as Record<string, unknown>;
      for (const id of ids) {
        const mo = mos.find((m) => m.id === id);
        if (!mo) throw new OdooException('odoo.exceptions.MissingError', `Record does not exist (mrp.production(${id},))`, 404);
        if (mo.qty_producing <= 0) throw userError('The quantity to produce must be positive!');
        if (mo.qty_producing < mo.product_qty && !context.skip_backorder) {
          return {
            type: 'ir.actions.act_window',
            name: 'You produced less than initial demand',
            res_model: 'mrp.production.backorder',
            view_mode: 'form',
            target: 'new',
            context: { default_mrp_production_ids: [id], active_ids: [id] },
          };
        }
        mo.state = 'done';
        for (const mv of moves) if (mv.mo === id) mv.state = 'done';
      }
      return true;
    }
    throw new OdooException('builtins.AttributeError', `The method '${method}' does not exist on the model '${model}'`, 404);
  };

  const odooError = (res: ServerResponse, e: OdooException) =>
    sendJson(res, e.status, { name: e.odooName, message: e.message, arguments: [e.message], context: {}, debug: `Traceback (most recent call last):\n  ...\n${e.odooName}: ${e.message}` });

  const rpcResult = (res: ServerResponse, id: unknown, result: unknown) => sendJson(res, 200, { jsonrpc: '2.0', id, result });
  const rpcError = (res: ServerResponse, id: unknown, e: OdooException) =>
    sendJson(res, 200, { jsonrpc: '2.0', id, error: { code: 200, message: 'Odoo Server Error', data: { name: e.odooName, message: e.message, arguments: [e.message], debug: '' } } });

  /** applies the fault for this call; true when the answer has been written */
  const preFault = (res: ServerResponse, fault: SimFault | undefined): boolean => {
    if (fault?.kind === 'status') {
      if (fault.retryAfterS !== undefined) res.setHeader('retry-after', String(fault.retryAfterS));
      if (fault.body) writeHostile(res, fault.body, fault.status);
      else sendJson(res, fault.status, { name: 'werkzeug.exceptions.HTTPException', message: `simulated ${fault.status}`, arguments: [], context: {}, debug: '' });
      return true;
    }
    if (fault?.kind === 'hostile' && !fault.commit) {
      writeHostile(res, fault.body, fault.status ?? 200);
      return true;
    }
    if (fault?.kind === 'timeout-before-commit') {
      noAnswer(res, fault.mode);
      return true;
    }
    return false;
  };
  /** after a successful mutating call */
  const postFault = (res: ServerResponse, fault: SimFault | undefined): boolean => {
    if (fault?.kind === 'timeout-after-commit') {
      noAnswer(res, fault.mode);
      return true;
    }
    if (fault?.kind === 'hostile' && fault.commit) {
      writeHostile(res, fault.body, fault.status ?? 200);
      return true;
    }
    return false;
  };
  const lockFault = (fault: SimFault | undefined) => {
    if (fault?.kind === 'lock') throw new OdooException('psycopg2.errors.SerializationFailure', 'could not serialize access due to concurrent update', 500);
  };

  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    await sleep(latencyMs);
    const url = new URL(req.url ?? '/', 'http://sim');
    if (req.method !== 'POST') return sendJson(res, 405, { name: 'werkzeug.exceptions.MethodNotAllowed', message: 'POST only' });
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(await readBody(req)) as Record<string, unknown>;
    } catch {
      return sendJson(res, 400, { name: 'werkzeug.exceptions.BadRequest', message: 'Invalid JSON data' });
    }
    const json2 = /^\/json\/2\/([a-z0-9_.]+)\/([a-z0-9_]+)$/.exec(url.pathname);
    if (json2) {
      const [, model, method] = json2;
      const auth = req.headers.authorization ?? '';
      if (!/^bearer /i.test(auth) || auth.slice(7) !== ODOO_SIM_API_KEY) {
        return sendJson(res, 401, { name: 'werkzeug.exceptions.Unauthorized', message: 'Invalid apikey', arguments: [], context: {}, debug: '' });
      }
      const fault = faults.take(READS.has(method) ? 'GET' : 'POST');
      if (preFault(res, fault)) return;
      try {
        if (!READS.has(method)) lockFault(fault);
        const { ids, context, ...named } = body;
        const result = execute(model, method, [], { ...named, ids, context });
        if (postFault(res, fault)) return;
        return sendJson(res, 200, result);
      } catch (e) {
        if (e instanceof OdooException) return odooError(res, e);
        throw e;
      }
    }
    if (url.pathname === '/jsonrpc') {
      const params = (body.params ?? {}) as { service?: string; method?: string; args?: unknown[] };
      const args = params.args ?? [];
      const isRead = params.service === 'common' || READS.has(String(args[4] ?? ''));
      const fault = faults.take(isRead ? 'GET' : 'POST');
      if (preFault(res, fault)) return;
      try {
        if (params.service === 'common' && params.method === 'authenticate') {
          const [db, login, key] = args;
          return rpcResult(res, body.id, db === ODOO_SIM_DB && login === ODOO_SIM_LOGIN && key === ODOO_SIM_API_KEY ? 2 : false);
        }
        if (params.service === 'object' && params.method === 'execute_kw') {
          const [db, uid, key, model, method, pos, kw] = args as [string, number, string, string, string, unknown[], Record<string, unknown>];
          if (db !== ODOO_SIM_DB || uid !== 2 || key !== ODOO_SIM_API_KEY) throw new OdooException('odoo.exceptions.AccessDenied', 'Access Denied', 200);
          if (!READS.has(method)) lockFault(fault);
          const result = execute(model, method, pos ?? [], kw ?? {});
          if (postFault(res, fault)) return;
          return rpcResult(res, body.id, result);
        }
        throw new OdooException('builtins.Exception', `unknown service ${params.service}.${params.method}`, 200);
      } catch (e) {
        if (e instanceof OdooException) return rpcError(res, body.id, e);
        throw e;
      }
    }
    sendJson(res, 404, { name: 'werkzeug.exceptions.NotFound', message: `${url.pathname} not found` });
  };

  const srv = await startSimServer(handler, { port: opts.port });
  return {
    url: srv.url,
    stop: srv.stop,
    orders: () => mos.map((m) => ({ ...m })),
    putOrder: (o) => {
      const mo = moByName(o.name, true)!;
      Object.assign(mo, { state: o.state, warehouse: o.warehouse, workcenter: o.workcenter, date_start: o.dateStart.toISOString().slice(0, 19).replace('T', ' ') });
    },
    moves: () => moves.map((m) => ({ ...m })),
    applied: (uuid) => appliedCount.get(uuid) ?? 0,
    setFault: (f) => faults.add(f),
    clearFaults: () => faults.clear(),
    setLatency: (ms) => (latencyMs = ms),
    closeOrder: (name) => (moByName(name, true)!.state = 'done'),
    reopenOrder: (name) => (moByName(name, true)!.state = 'progress'),
    stats: () => ({ ...stats }),
  };
}

if (import.meta.main) {
  const sim = await startOdooSimulator({ port: Number(process.argv[2] ?? 0), latencyMs: Number(process.argv[3] ?? 0) });
  console.log(`Odoo simulator on ${sim.url} (API key ${ODOO_SIM_API_KEY}, db ${ODOO_SIM_DB}, login ${ODOO_SIM_LOGIN})`);
  process.on('SIGINT', () => void sim.stop().then(() => process.exit(0)));
}
