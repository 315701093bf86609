import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FaultQueue, noAnswer, readBody, sendJson, sleep, startSimServer, writeHostile, type SimFault } from '../sim-kit.ts';

/**
 * A real HTTP server that behaves like SAP S/4HANA's API_PROD_ORDER_CONFIRMATION_2_SRV and
 * API_MATERIAL_DOCUMENT_SRV (OData V2, JSON) closely enough for the adapter's tests and the demo:
 * basic auth or an OAuth token endpoint, CSRF token fetch bound to session cookies, strict payload
 * checks (an unknown property is an error, as in Gateway), $filter/$top/$skip/$select on reads,
 * SAP error bodies, closed orders, locks, and failure knobs (see SimFault and SapSimulatorOptions).
 */

export const SAP_CONF_PATH = '/sap/opu/odata/sap/API_PROD_ORDER_CONFIRMATION_2_SRV';
export const SAP_MATDOC_PATH = '/sap/opu/odata/sap/API_MATERIAL_DOCUMENT_SRV';
export const SAP_PRODORD_PATH = '/sap/opu/odata/sap/API_PRODUCTION_ORDER_2_SRV';
export const SAP_TOKEN_PATH = '/oauth/token';

export const SAP_SIM_USER = { username: 'PLANTBRIDGE', password: 'sim-password' };
export const SAP_SIM_CLIENT = { clientId: 'plantbridge-hub', clientSecret: 'sim-client-secret' };

export interface SapSimulatorOptions {
  port?: number;
  /** added to every call, token and CSRF fetches included */
  latencyMs?: number;
  /** lifetime of a CSRF token (default 30 min) */
  csrfTtlMs?: number;
  /** lifetime of an OAuth token (default 1 h) */
  tokenTtlS?: number;
  /** like some releases: $filter on ExternalSystemConfirmation is refused (the adapter must fall back) */
  externalSystemConfirmationFilterable?: boolean;
  /** orders that are closed from the start */
  closedOrders?: string[];
  /**
   * Keeps the documents and the number ranges in this JSON file (written after every posting, read at
   * start), as an ERP keeps them: the demo restarts without handing out document numbers again.
   */
  stateFile?: string;
}

interface SimState {
  confirmations: SimConfirmation[];
  materialDocuments: SimMaterialDocument[];
  groups: [string, string][];
  nextGroup: number;
  nextMaterialDocument: number;
}

export interface SimConfirmation {
  ConfirmationGroup: string;
  ConfirmationCount: string;
  OrderID: string;
  OrderOperation: string;
  Sequence: string;
  ConfirmationYieldQuantity: string;
  ConfirmationScrapQuantity: string;
  ConfirmationReworkQuantity: string;
  ConfirmationUnit: string;
  FinalConfirmationType: string;
  PostingDate: string;
  ExternalSystemConfirmation: string;
  ConfirmationText: string;
  Plant: string;
  WorkCenter: string;
  ConfirmationEntryDate: string;
  items: SimMaterialDocItem[];
  /** convenience for tests: ConfirmationYieldQuantity as a number */
  yield: number;
}

export interface SimMaterialDocItem {
  MaterialDocument: string;
  MaterialDocumentYear: string;
  MaterialDocumentItem: string;
  Material: string;
  Plant: string;
  StorageLocation: string;
  Batch: string;
  GoodsMovementType: string;
  ManufacturingOrder: string;
  EntryUnit: string;
  QuantityInEntryUnit: string;
}

export interface SimMaterialDocument {
  MaterialDocument: string;
  MaterialDocumentYear: string;
  GoodsMovementCode: string;
  PostingDate: string;
  DocumentDate: string;
  MaterialDocumentHeaderText: string;
  ReferenceDocument: string;
  items: SimMaterialDocItem[];
}

/** A production order as the simulator keeps it (API_PRODUCTION_ORDER_2_SRV, A_ProductionOrder_2). */
export interface SimProductionOrder {
  order: string;
  /** SAP plant (WERKS) */
  plant: string;
  workCenter: string;
  scheduledStart: Date;
  /** REL: released; CRTD: created, not released; TECO: technically completed */
  status: 'CRTD' | 'REL' | 'TECO';
}

export interface SapSimulator {
  url: string;
  /** as a person in SAP would: removes a confirmation (true when there was one) */
  deleteConfirmation(group: string, count: string): boolean;
  /** as a person in SAP would: a copy of an existing confirmation under a new count (the same ExternalSystemConfirmation) */
  duplicateConfirmation(group: string, count: string): SimConfirmation | undefined;
  /** adds or replaces a production order (monitoring reads released ones) */
  putProductionOrder(o: SimProductionOrder): void;
  stop(): Promise<void>;
  confirmations(): SimConfirmation[];
  materialDocuments(): SimMaterialDocument[];
  setFault(fault: SimFault): void;
  clearFaults(): void;
  setLatency(ms: number): void;
  closeOrder(order: string): void;
  reopenOrder(order: string): void;
  /** every CSRF token becomes invalid, as after a session timeout */
  expireCsrfTokens(): void;
  /** every OAuth access token becomes invalid */
  revokeTokens(): void;
  /** counts of calls by kind, for tests */
  stats(): { posts: number; gets: number; csrfFetches: number; tokenFetches: number; csrfRejections: number };
}

const CONF_FIELDS = new Set([
  'OrderID', 'Sequence', 'OrderOperation', 'ConfirmationYieldQuantity', 'ConfirmationScrapQuantity', 'ConfirmationReworkQuantity',
  'ConfirmationUnit', 'ConfirmationUnitISOCode', 'FinalConfirmationType', 'IsFinalConfirmation', 'OpenReservationsIsCleared',
  'PostingDate', 'ConfirmedExecutionStartDate', 'ConfirmedExecutionStartTime', 'ConfirmedExecutionEndDate', 'ConfirmedExecutionEndTime',
  'Plant', 'WorkCenter', 'Personnel', 'ConfirmationText', 'APIConfHasNoGoodsMovements', 'ExternalSystemConfirmation',
  'ConfirmationExternalEntryDate', 'ConfirmationExternalEntryTime', 'EnteredByExternalUser', 'VarianceReasonCode', 'to_ProdnOrdConfMatlDocItm',
]);
const CONF_ITEM_FIELDS = new Set([
  'Material', 'Plant', 'StorageLocation', 'Batch', 'GoodsMovementType', 'EntryUnit', 'QuantityInEntryUnit', 'Reservation', 'ReservationItem', 'ManufactureDate',
]);
const MATDOC_FIELDS = new Set(['PostingDate', 'DocumentDate', 'GoodsMovementCode', 'MaterialDocumentHeaderText', 'ReferenceDocument', 'to_MaterialDocumentItem']);
const MATDOC_ITEM_FIELDS = new Set([
  'Material', 'Plant', 'StorageLocation', 'Batch', 'GoodsMovementType', 'ManufacturingOrder', 'EntryUnit', 'QuantityInEntryUnit', 'ManufactureDate',
  'GoodsMovementRefDocType', 'MaterialDocumentItemText',
]);
const DECIMAL = /^\d{1,13}(\.\d{1,3})?$/;
const EDM_DATE = /^\/Date\(-?\d+\)\/$/;
const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const NULL_GUID = '00000000-0000-0000-0000-000000000000';

class SapFailure extends Error {
  readonly status: number;
  readonly sapCode: string;
  constructor(status: number, sapCode: string, message: string) {
    super(message);
    this.status = status;
    this.sapCode = sapCode;
  }
}

function sapError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, {
    error: {
      code,
      message: { lang: 'en', value: message },
      innererror: {
        application: { component_id: 'PP-SFC', service_namespace: '/SAP/', service_id: 'API_PROD_ORDER_CONFIRMATION_2_SRV', service_version: '0001' },
        transactionid: randomBytes(16).toString('hex').toUpperCase(),
        timestamp: new Date().toISOString().replace(/\D/g, '').slice(0, 14),
        Error_Resolution: { SAP_Transaction: 'Run transaction /IWFND/ERROR_LOG on SAP Gateway hub system', SAP_Note: 'See SAP Note 1797736' },
        errordetails: [{ code, message, propertyref: '', severity: 'error', target: '' }],
      },
    },
  });
}

function checkFields(obj: Record<string, unknown>, allowed: Set<string>, entity: string): void {
  for (const k of Object.keys(obj)) {
    if (k === '__metadata') continue;
    if (!allowed.has(k)) throw new SapFailure(400, '/IWBEP/CM_MGW_RT/022', `Property '${k}' is invalid (${entity})`);
  }
}

function str(obj: Record<string, unknown>, k: string, max: number, required = false): string {
  const v = obj[k];
  if (v === undefined || v === null) {
    if (required) throw new SapFailure(400, '/IWBEP/CM_MGW_RT/004', `Property '${k}' is mandatory`);
    return '';
  }
  if (typeof v !== 'string') throw new SapFailure(400, '/IWBEP/CM_MGW_RT/021', `Invalid value for property '${k}': expected Edm.String`);
  if (v.length > max) throw new SapFailure(400, '/IWBEP/CM_MGW_RT/021', `Value '${v}' of property '${k}' is too long (max ${max})`);
  return v;
}

function decimal(obj: Record<string, unknown>, k: string, required = false): string {
  const v = obj[k];
  if (v === undefined || v === null) {
    if (required) throw new SapFailure(400, '/IWBEP/CM_MGW_RT/004', `Property '${k}' is mandatory`);
    return '0';
  }
  if (typeof v !== 'string' || !DECIMAL.test(v)) throw new SapFailure(400, '/IWBEP/CM_MGW_RT/021', `Invalid value for property '${k}': expected Edm.Decimal as a string`);
  return v;
}

function edmDate(obj: Record<string, unknown>, k: string): string {
  const v = obj[k];
  if (v === undefined || v === null) return `/Date(${Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate())})/`;
  if (typeof v !== 'string' || !EDM_DATE.test(v)) throw new SapFailure(400, '/IWBEP/CM_MGW_RT/021', `Invalid value for property '${k}': expected /Date(ms)/`);
  return v;
}

function yearOf(edm: string): string {
  const ms = Number(/-?\d+/.exec(edm)?.[0] ?? 0);
  return String(new Date(ms).getUTCFullYear());
}

/** `A eq 'x' and B eq guid'y'`: the subset of $filter the adapter uses (and a little more). */
function parseFilter(filter: string): Array<{ prop: string; value: string }> {
  const out: Array<{ prop: string; value: string }> = [];
  for (const part of filter.split(/\s+and\s+/i)) {
    const m = /^\s*\(?\s*([A-Za-z_][A-Za-z0-9_]*)\s+eq\s+(?:(guid|datetime)?'((?:[^']|'')*)')\s*\)?\s*$/i.exec(part);
    if (!m) throw new SapFailure(400, '/IWBEP/CM_MGW_RT/020', `Invalid filter expression: '${part.trim()}'`);
    out.push({ prop: m[1], value: m[3].replace(/''/g, "'") });
  }
  return out;
}

/** `/Date(ms)/` of the day and `PT..H..M..S` of the time, as OData V2 JSON writes Edm.DateTime and Edm.Time */
function prodOrderEntity(base: string, o: SimProductionOrder): Record<string, unknown> {
  const t = o.scheduledStart;
  const day = Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate());
  const pad = (n: number) => String(n).padStart(2, '0');
  return {
    __metadata: { uri: `${base}${SAP_PRODORD_PATH}/A_ProductionOrder_2('${o.order}')`, type: 'API_PRODUCTION_ORDER_2_SRV.A_ProductionOrder_2Type' },
    ManufacturingOrder: o.order,
    ProductionPlant: o.plant,
    MfgOrderScheduledStartDate: `/Date(${day})/`,
    MfgOrderScheduledStartTime: `PT${pad(t.getUTCHours())}H${pad(t.getUTCMinutes())}M${pad(t.getUTCSeconds())}S`,
    OrderIsCreated: 'X',
    OrderIsReleased: o.status === 'REL' || o.status === 'TECO' ? 'X' : '',
    OrderIsTechnicallyCompleted: o.status === 'TECO' ? 'X' : '',
    to_ProductionOrderOperation: { results: [{ ManufacturingOrder: o.order, ManufacturingOrderOperation: '0010', WorkCenter: o.workCenter }] },
  };
}

export async function startSapSimulator(opts: SapSimulatorOptions = {}): Promise<SapSimulator> {
  let latencyMs = opts.latencyMs ?? 0;
  const csrfTtlMs = opts.csrfTtlMs ?? 30 * 60_000;
  const tokenTtlS = opts.tokenTtlS ?? 3600;
  const filterableEsc = opts.externalSystemConfirmationFilterable ?? true;
  const faults = new FaultQueue();
  const closed = new Set(opts.closedOrders ?? []);
  const sessions = new Map<string, { token: string; expiresAt: number }>();
  const tokens = new Map<string, number>();
  const confirmations: SimConfirmation[] = [];
  const productionOrders = new Map<string, SimProductionOrder>();
  const matDocs: SimMaterialDocument[] = [];
  const groups = new Map<string, string>();
  let nextGroup = 1000042;
  let nextMatDoc = 4900000001;
  if (opts.stateFile && existsSync(opts.stateFile)) {
    const saved = JSON.parse(readFileSync(opts.stateFile, 'utf8')) as SimState;
    confirmations.push(...saved.confirmations);
    matDocs.push(...saved.materialDocuments);
    for (const [k, v] of saved.groups) groups.set(k, v);
    nextGroup = saved.nextGroup;
    nextMatDoc = saved.nextMaterialDocument;
  }
  const persist = () => {
    if (!opts.stateFile) return;
    const state: SimState = { confirmations, materialDocuments: matDocs, groups: [...groups], nextGroup, nextMaterialDocument: nextMatDoc };
    const tmp = `${opts.stateFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(state));
    renameSync(tmp, opts.stateFile);
  };
  const stats = { posts: 0, gets: 0, csrfFetches: 0, tokenFetches: 0, csrfRejections: 0 };

  const authorised = (req: IncomingMessage): boolean => {
    const h = req.headers.authorization ?? '';
    if (h.startsWith('Basic ')) {
      const [u, ...p] = Buffer.from(h.slice(6), 'base64').toString('utf8').split(':');
      return u === SAP_SIM_USER.username && p.join(':') === SAP_SIM_USER.password;
    }
    if (h.startsWith('Bearer ')) {
      const exp = tokens.get(h.slice(7));
      return exp !== undefined && exp > Date.now();
    }
    return false;
  };

  const sessionOf = (req: IncomingMessage): string | undefined => {
    const m = /(?:^|;\s*)SAP_SESSIONID_SIM_100=([^;]+)/.exec(req.headers.cookie ?? '');
    return m?.[1];
  };

  const handleToken = async (req: IncomingMessage, res: ServerResponse) => {
    stats.tokenFetches++;
    const body = new URLSearchParams(await readBody(req));
    let id = body.get('client_id') ?? '';
    let secret = body.get('client_secret') ?? '';
    const h = req.headers.authorization ?? '';
    if (h.startsWith('Basic ')) {
      const [u, ...p] = Buffer.from(h.slice(6), 'base64').toString('utf8').split(':');
      id = decodeURIComponent(u);
      secret = decodeURIComponent(p.join(':'));
    }
    if (body.get('grant_type') !== 'client_credentials') return sendJson(res, 400, { error: 'unsupported_grant_type' });
    if (id !== SAP_SIM_CLIENT.clientId || secret !== SAP_SIM_CLIENT.clientSecret) return sendJson(res, 401, { error: 'invalid_client' });
    const token = randomBytes(24).toString('base64url');
    tokens.set(token, Date.now() + tokenTtlS * 1000);
    sendJson(res, 200, { access_token: token, token_type: 'bearer', expires_in: tokenTtlS, scope: 'API_PROD_ORDER_CONFIRMATION_2_SRV' });
  };

  const checkCsrf = (req: IncomingMessage): boolean => {
    const sid = sessionOf(req);
    const s = sid ? sessions.get(sid) : undefined;
    const sent = req.headers['x-csrf-token'];
    return s !== undefined && s.expiresAt > Date.now() && typeof sent === 'string' && sent === s.token;
  };

  const csrfFetch = (req: IncomingMessage, res: ServerResponse, body: unknown) => {
    stats.csrfFetches++;
    let sid = sessionOf(req);
    let s = sid ? sessions.get(sid) : undefined;
    if (!s || s.expiresAt <= Date.now()) {
      sid = randomBytes(16).toString('hex');
      s = { token: randomBytes(18).toString('base64'), expiresAt: Date.now() + csrfTtlMs };
      sessions.set(sid, s);
    }
    sendJson(res, 200, body, {
      'x-csrf-token': s.token,
      'set-cookie': [`SAP_SESSIONID_SIM_100=${sid}; path=/; HttpOnly`, `sap-usercontext=sap-client=100; path=/`] as unknown as string,
    });
  };

  const groupFor = (order: string, op: string) => {
    const k = `${order}/${op}`;
    let g = groups.get(k);
    if (!g) {
      g = String(nextGroup++);
      groups.set(k, g);
    }
    return g;
  };

  const assertOpen = (order: string) => {
    if (closed.has(order)) throw new SapFailure(400, 'RU/494', `Order ${order} closed`);
  };

  const lockFailure = (status: number | undefined) => {
    throw new SapFailure(status ?? 423, 'M3/897', 'The plant data of the material RM-1 is locked by the user BATCHJOB');
  };

  const makeItems = (raw: unknown, header: { order: string; postingDate: string }, allowed: Set<string>, entity: string): SimMaterialDocItem[] => {
    if (raw === undefined) return [];
    const list = Array.isArray(raw) ? raw : (raw as { results?: unknown })?.results;
    if (!Array.isArray(list)) throw new SapFailure(400, '/IWBEP/CM_MGW_RT/021', `Navigation property of ${entity} must be an array`);
    if (list.length === 0) return [];
    const doc = String(nextMatDoc++);
    const year = yearOf(header.postingDate);
    return list.map((it: unknown, i: number) => {
      if (!it || typeof it !== 'object') throw new SapFailure(400, '/IWBEP/CM_MGW_RT/021', `Invalid item in ${entity}`);
      const o = it as Record<string, unknown>;
      checkFields(o, allowed, entity);
      const mvt = str(o, 'GoodsMovementType', 3, true);
      if (!['101', '102', '261', '262'].includes(mvt)) throw new SapFailure(400, 'M7/022', `Movement type ${mvt} is not allowed here`);
      const mo = str(o, 'ManufacturingOrder', 12) || header.order;
      assertOpen(mo);
      return {
        MaterialDocument: doc,
        MaterialDocumentYear: year,
        MaterialDocumentItem: String(i + 1),
        Material: str(o, 'Material', 40, true),
        Plant: str(o, 'Plant', 4, true),
        StorageLocation: str(o, 'StorageLocation', 4),
        Batch: str(o, 'Batch', 10),
        GoodsMovementType: mvt,
        ManufacturingOrder: mo,
        EntryUnit: str(o, 'EntryUnit', 3, true),
        QuantityInEntryUnit: decimal(o, 'QuantityInEntryUnit', true),
      };
    });
  };

  const createConfirmation = (payload: Record<string, unknown>, fault: SimFault | undefined) => {
    checkFields(payload, CONF_FIELDS, 'ProdnOrdConf2');
    const order = str(payload, 'OrderID', 12, true);
    const op = str(payload, 'OrderOperation', 4);
    const esc = str(payload, 'ExternalSystemConfirmation', 36) || NULL_GUID;
    if (!GUID.test(esc)) throw new SapFailure(400, '/IWBEP/CM_MGW_RT/021', `Invalid value for property 'ExternalSystemConfirmation': expected Edm.Guid`);
    const fin = str(payload, 'FinalConfirmationType', 1);
    if (!['', ' ', '1', 'X'].includes(fin)) throw new SapFailure(400, 'RU/100', `Final confirmation type '${fin}' is not allowed`);
    const postingDate = edmDate(payload, 'PostingDate');
    const yieldQty = decimal(payload, 'ConfirmationYieldQuantity');
    const c: SimConfirmation = {
      ConfirmationGroup: '',
      ConfirmationCount: '',
      OrderID: order,
      OrderOperation: op,
      Sequence: str(payload, 'Sequence', 6) || '0',
      ConfirmationYieldQuantity: yieldQty,
      ConfirmationScrapQuantity: decimal(payload, 'ConfirmationScrapQuantity'),
      ConfirmationReworkQuantity: decimal(payload, 'ConfirmationReworkQuantity'),
      ConfirmationUnit: str(payload, 'ConfirmationUnit', 3),
      FinalConfirmationType: fin,
      PostingDate: postingDate,
      ExternalSystemConfirmation: esc.toLowerCase(),
      ConfirmationText: str(payload, 'ConfirmationText', 40),
      Plant: str(payload, 'Plant', 4),
      WorkCenter: str(payload, 'WorkCenter', 8),
      ConfirmationEntryDate: `/Date(${Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate())})/`,
      items: [],
      yield: Number(yieldQty),
    };
    assertOpen(order);
    if (fault?.kind === 'lock') lockFailure(fault.status);
    c.items = makeItems(payload.to_ProdnOrdConfMatlDocItm, { order, postingDate }, CONF_ITEM_FIELDS, 'ProdnOrdConfMatlDocItm');
    // numbers are only drawn once everything is valid: a refused posting leaves no trace
    c.ConfirmationGroup = groupFor(order, op);
    c.ConfirmationCount = String(confirmations.filter((x) => x.ConfirmationGroup === c.ConfirmationGroup).length + 1);
    confirmations.push(c);
    return c;
  };

  const createMaterialDocument = (payload: Record<string, unknown>, fault: SimFault | undefined) => {
    checkFields(payload, MATDOC_FIELDS, 'A_MaterialDocumentHeader');
    const code = str(payload, 'GoodsMovementCode', 2, true);
    if (!['01', '02', '03', '04', '05', '06', '07'].includes(code)) throw new SapFailure(400, 'M7/019', `Goods movement code ${code} is not defined`);
    const postingDate = edmDate(payload, 'PostingDate');
    const items = payload.to_MaterialDocumentItem;
    if (!Array.isArray(items) && !Array.isArray((items as { results?: unknown })?.results)) {
      throw new SapFailure(400, 'M7/016', 'Enter at least one item');
    }
    if (fault?.kind === 'lock') lockFailure(fault.status);
    const docItems = makeItems(items, { order: '', postingDate }, MATDOC_ITEM_FIELDS, 'A_MaterialDocumentItem');
    if (docItems.length === 0) throw new SapFailure(400, 'M7/016', 'Enter at least one item');
    for (const it of docItems) {
      if (!it.ManufacturingOrder) throw new SapFailure(400, 'M7/112', 'Enter the order for movement type ' + it.GoodsMovementType);
    }
    const doc: SimMaterialDocument = {
      MaterialDocument: docItems[0].MaterialDocument,
      MaterialDocumentYear: docItems[0].MaterialDocumentYear,
      GoodsMovementCode: code,
      PostingDate: postingDate,
      DocumentDate: edmDate(payload, 'DocumentDate'),
      MaterialDocumentHeaderText: str(payload, 'MaterialDocumentHeaderText', 25),
      ReferenceDocument: str(payload, 'ReferenceDocument', 16),
      items: docItems,
    };
    matDocs.push(doc);
    return doc;
  };

  const confEntity = (base: string, c: SimConfirmation) => {
    const { items, yield: _y, ...fields } = c;
    return {
      __metadata: {
        id: `${base}${SAP_CONF_PATH}/ProdnOrdConf2(ConfirmationGroup='${c.ConfirmationGroup}',ConfirmationCount='${c.ConfirmationCount}')`,
        uri: `${base}${SAP_CONF_PATH}/ProdnOrdConf2(ConfirmationGroup='${c.ConfirmationGroup}',ConfirmationCount='${c.ConfirmationCount}')`,
        type: 'API_PROD_ORDER_CONFIRMATION_2_SRV.A_ProdnOrdConf2Type',
      },
      ...fields,
      to_ProdnOrdConfMatlDocItm: { results: items.map((it) => ({ ConfirmationGroup: c.ConfirmationGroup, ConfirmationCount: c.ConfirmationCount, ...it })) },
    };
  };

  const matDocEntity = (base: string, d: SimMaterialDocument) => {
    const { items, ...fields } = d;
    return {
      __metadata: {
        uri: `${base}${SAP_MATDOC_PATH}/A_MaterialDocumentHeader(MaterialDocumentYear='${d.MaterialDocumentYear}',MaterialDocument='${d.MaterialDocument}')`,
        type: 'API_MATERIAL_DOCUMENT_SRV.A_MaterialDocumentHeaderType',
      },
      ...fields,
      to_MaterialDocumentItem: { results: items },
    };
  };

  const query = <T extends object>(rows: T[], url: URL, toEntity: (r: T) => Record<string, unknown>, unfilterable: string[]) => {
    // like a strict OData server: %20 is a space, '+' is a plus (URLSearchParams would turn it into a space)
    const rawFilter = /(?:^\?|&)\$filter=([^&]*)/.exec(url.search)?.[1];
    const filter = rawFilter === undefined ? null : decodeURIComponent(rawFilter);
    let out = rows;
    if (filter) {
      const terms = parseFilter(filter);
      for (const t of terms) {
        if (unfilterable.includes(t.prop)) throw new SapFailure(400, '/IWBEP/CM_MGW_RT/020', `Filter on property '${t.prop}' is not supported`);
      }
      out = out.filter((r) =>
        terms.every((t) => {
          const v = (r as Record<string, unknown>)[t.prop];
          if (v === undefined) throw new SapFailure(400, '/IWBEP/CM_MGW_RT/020', `Property '${t.prop}' not found`);
          return String(v).toLowerCase() === t.value.toLowerCase();
        }),
      );
    }
    const skip = Number(url.searchParams.get('$skip') ?? 0);
    const top = Math.min(Number(url.searchParams.get('$top') ?? 1000), 5000);
    const page = out.slice(skip, skip + top).map(toEntity);
    const select = url.searchParams.get('$select');
    const results = select
      ? page.map((e) => Object.fromEntries(select.split(',').map((k) => k.trim().split('/')[0]).map((k) => [k, e[k]]).concat([['__metadata', e.__metadata]])))
      : page;
    return { d: { results } };
  };

  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    await sleep(latencyMs);
    const url = new URL(req.url ?? '/', 'http://sim');
    const base = `http://${req.headers.host ?? 'localhost'}`;
    const method = req.method ?? 'GET';
    const isToken = url.pathname === SAP_TOKEN_PATH && method === 'POST';
    const conf = url.pathname.startsWith(SAP_CONF_PATH);
    const matdoc = url.pathname.startsWith(SAP_MATDOC_PATH);
    const prodord = url.pathname.startsWith(SAP_PRODORD_PATH);
    if (!isToken) {
      if (!conf && !matdoc && !prodord) return sapError(res, 404, '/IWFND/CM_MGW/020', `No service found for namespace '', name '${url.pathname}'`);
      if (!authorised(req)) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="SAP NetWeaver Application Server [SIM/100]"', 'content-type': 'text/html' });
        return void res.end('<html><body>Logon failed</body></html>');
      }
      if (method === 'POST' && !checkCsrf(req)) {
        stats.csrfRejections++;
        res.writeHead(403, { 'x-csrf-token': 'Required', 'content-type': 'text/plain' });
        return void res.end('CSRF token validation failed');
      }
    }
    // failure knobs act on calls that would otherwise be processed
    // the token endpoint is another service (Entra ID, the OAuth server): the ERP's knobs do not act on it
    const fault = isToken ? undefined : faults.take(method);
    if (fault?.kind === 'status') {
      const headers: Record<string, string> = fault.retryAfterS !== undefined ? { 'retry-after': String(fault.retryAfterS) } : {};
      for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
      if (fault.body) return writeHostile(res, fault.body, fault.status);
      if (fault.status === 401) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="SAP NetWeaver Application Server [SIM/100]"', 'content-type': 'text/html' });
        return void res.end('<html><body>Logon failed</body></html>');
      }
      return sapError(res, fault.status, fault.status === 403 ? '/IWFND/CM_CONSUMER/101' : '/IWFND/CM_BEC/026', fault.status === 403 ? 'No authorization to access service' : `HTTP ${fault.status}`);
    }
    if (fault?.kind === 'hostile' && !fault.commit) return writeHostile(res, fault.body, fault.status ?? 200);
    if (fault?.kind === 'timeout-before-commit') return noAnswer(res, fault.mode);
    if (isToken) return handleToken(req, res);

    const rest = url.pathname.slice((conf ? SAP_CONF_PATH : prodord ? SAP_PRODORD_PATH : SAP_MATDOC_PATH).length).replace(/^\//, '');

    try {
      if (method === 'GET' || method === 'HEAD') {
        stats.gets++;
        let body: unknown;
        if (rest === '' ) body = { d: { EntitySets: conf ? ['ProdnOrdConf2', 'ProdnOrdConfMatlDocItm'] : ['A_MaterialDocumentHeader', 'A_MaterialDocumentItem'] } };
        else if (rest === '$metadata') body = { d: { note: 'metadata' } };
        else if (conf && rest === 'ProdnOrdConf2') body = query(confirmations, url, (c) => confEntity(base, c), filterableEsc ? [] : ['ExternalSystemConfirmation']);
        else if (matdoc && rest === 'A_MaterialDocumentHeader') body = query(matDocs, url, (d) => matDocEntity(base, d), []);
        else if (prodord && rest === 'A_ProductionOrder_2') {
          const expand = url.searchParams.get('$expand');
          if (expand !== null && expand !== 'to_ProductionOrderOperation') throw new SapFailure(400, '/IWBEP/CM_MGW_RT/020', `Navigation property '${expand}' not found`);
          // filtered on the entity's properties (the simulator keeps the orders in its own shape)
          const entities = [...productionOrders.values()].map((o) => prodOrderEntity(base, o));
          body = query(entities, url, (e) => {
            if (expand === null) delete e.to_ProductionOrderOperation;
            return e;
          }, []);
        } else throw new SapFailure(404, '/IWBEP/CM_MGW_RT/021', `Resource not found for segment '${rest}'`);
        if (String(req.headers['x-csrf-token'] ?? '').toLowerCase() === 'fetch') return csrfFetch(req, res, body);
        return sendJson(res, 200, body);
      }
      if (method !== 'POST') throw new SapFailure(405, '/IWBEP/CM_MGW_RT/009', `Method ${method} not allowed`);
      stats.posts++;
      let payload: unknown;
      try {
        payload = JSON.parse(await readBody(req));
      } catch {
        throw new SapFailure(400, '/IWBEP/CM_MGW_RT/001', 'The server is refusing to process the request because the entity has a syntax error');
      }
      if (!payload || typeof payload !== 'object' || Array.isArray(payload)) throw new SapFailure(400, '/IWBEP/CM_MGW_RT/001', 'Expected an object');
      let entity: Record<string, unknown>;
      let location: string;
      if (prodord) throw new SapFailure(405, '/IWBEP/CM_MGW_RT/009', 'A_ProductionOrder_2 is read-only here');
      if (conf && rest === 'ProdnOrdConf2') {
        const c = createConfirmation(payload as Record<string, unknown>, fault);
        entity = confEntity(base, c);
        location = String((entity.__metadata as { uri: string }).uri);
      } else if (matdoc && rest === 'A_MaterialDocumentHeader') {
        const d = createMaterialDocument(payload as Record<string, unknown>, fault);
        entity = matDocEntity(base, d);
        location = String((entity.__metadata as { uri: string }).uri);
      } else {
        throw new SapFailure(404, '/IWBEP/CM_MGW_RT/021', `Resource not found for segment '${rest}'`);
      }
      persist();
      if (fault?.kind === 'timeout-after-commit') return noAnswer(res, fault.mode);
      if (fault?.kind === 'hostile' && fault.commit) return writeHostile(res, fault.body, fault.status ?? 201);
      sendJson(res, 201, { d: entity }, { location });
    } catch (err) {
      if (err instanceof SapFailure) return sapError(res, err.status, err.sapCode, err.message);
      throw err;
    }
  };

  const srv = await startSimServer(handler, { port: opts.port });
  return {
    url: srv.url,
    stop: srv.stop,
    putProductionOrder: (o) => productionOrders.set(o.order, { ...o }),
    deleteConfirmation: (g, c) => {
      const i = confirmations.findIndex((x) => x.ConfirmationGroup === g && x.ConfirmationCount === c);
      if (i >= 0) confirmations.splice(i, 1);
      return i >= 0;
    },
    duplicateConfirmation: (g, c) => {
      const src = confirmations.find((x) => x.ConfirmationGroup === g && x.ConfirmationCount === c);
      if (!src) return undefined;
      const count = String(Math.max(...confirmations.filter((x) => x.ConfirmationGroup === g).map((x) => Number(x.ConfirmationCount))) + 1);
      const copy = { ...src, ConfirmationCount: count, items: [] };
      confirmations.push(copy);
      return { ...copy };
    },
    confirmations: () => confirmations.map((c) => ({ ...c, items: [...c.items] })),
    materialDocuments: () => matDocs.map((d) => ({ ...d, items: [...d.items] })),
    setFault: (f) => faults.add(f),
    clearFaults: () => faults.clear(),
    setLatency: (ms) => (latencyMs = ms),
    closeOrder: (o) => closed.add(o),
    reopenOrder: (o) => closed.delete(o),
    expireCsrfTokens: () => sessions.clear(),
    revokeTokens: () => tokens.clear(),
    stats: () => ({ ...stats }),
  };
}

/** For the demo: `node central-hub/erp/sap-odata/sap-simulator.ts [port] [latencyMs]` */
if (import.meta.main) {
  const sim = await startSapSimulator({ port: Number(process.argv[2] ?? 0), latencyMs: Number(process.argv[3] ?? 0) });
  console.log(`SAP simulator on ${sim.url} (basic ${SAP_SIM_USER.username}/${SAP_SIM_USER.password}; OAuth ${sim.url}${SAP_TOKEN_PATH} ${SAP_SIM_CLIENT.clientId})`);
  process.on('SIGINT', () => void sim.stop().then(() => process.exit(0)));
}
