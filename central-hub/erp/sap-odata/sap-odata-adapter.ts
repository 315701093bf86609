import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { erpMessageCode, transactionTypeOf, uuidv5, type ErpCode, type GoodsReceipt, type MaterialConsumption, type ProductionConfirmation, type Transaction } from '../../../contracts/index.ts';
import { ErpError, type ErpAdapter, type ErpCallContext, type ErpLookupResult, type ErpPostResult, type ErpDocument, type ReleasedOrder, type ReleasedOrdersResult } from '../erp-adapter.ts';
import { ClientCredentialsToken, CookieJar, ErpHttpClient, excerpt, jsonBody, retryAfterMs, reveal, type ErpHttpResponse } from '../http/erp-http.ts';
import type { SapOdataConfig } from './config.ts';

/**
 * SAP S/4HANA over OData V2 (README.md in this folder has the mapping and the error table).
 * - ProductionConfirmation -> POST ProdnOrdConf2 (API_PROD_ORDER_CONFIRMATION_2_SRV)
 * - MaterialConsumption    -> POST A_MaterialDocumentHeader, code 03, movement 261 (262 for a reversal)
 * - GoodsReceipt           -> POST A_MaterialDocumentHeader, code 02, movement 101
 * The key travels as ExternalSystemConfirmation = UUIDv5(key) (confirmations) or as a 25-character
 * MaterialDocumentHeaderText (material documents); lookup() searches for exactly that.
 */

export const CONF_SERVICE = '/sap/opu/odata/sap/API_PROD_ORDER_CONFIRMATION_2_SRV';
export const MATDOC_SERVICE = '/sap/opu/odata/sap/API_MATERIAL_DOCUMENT_SRV';
export const PRODORD_SERVICE = '/sap/opu/odata/sap/API_PRODUCTION_ORDER_2_SRV';
/** released orders read per plant at most (pages of 500): more is an answer the monitor cannot use whole */
const RELEASED_MAX = 20_000;
const EDM_DATE = /^\/Date\((-?\d{1,15})(?:[+-]\d{4})?\)\/$/;
const EDM_TIME = /^PT(\d{1,2})H(\d{1,2})M(\d{1,2})S$/;

/**
 * One A_ProductionOrder_2 row as a ReleasedOrder, or undefined when a field is missing or malformed.
 * SAP writes the scheduled start as a date (Edm.DateTime at midnight) and a time (Edm.Time) in the plant's
 * time: read here as UTC (docs/MONITORING.md).
 */
export function sapReleasedOrder(row: Record<string, unknown>, plant: string): ReleasedOrder | undefined {
  const order = row.ManufacturingOrder;
  const d = typeof row.MfgOrderScheduledStartDate === 'string' ? EDM_DATE.exec(row.MfgOrderScheduledStartDate) : null;
  if (typeof order !== 'string' || order === '' || order.length > 12 || !d) return undefined;
  const t = typeof row.MfgOrderScheduledStartTime === 'string' ? EDM_TIME.exec(row.MfgOrderScheduledStartTime) : null;
  const ms = Number(d[1]) + (t ? (Number(t[1]) * 3600 + Number(t[2]) * 60 + Number(t[3])) * 1000 : 0);
  const at = new Date(ms);
  if (Number.isNaN(at.getTime())) return undefined;
  const ops = (row.to_ProductionOrderOperation as { results?: unknown } | undefined)?.results;
  const wc = Array.isArray(ops) ? (ops as Array<{ WorkCenter?: unknown }>).map((o) => o?.WorkCenter).find((w): w is string => typeof w === 'string' && w !== '' && w.length <= 64) : undefined;
  return { order, plant, workCenter: wc ?? null, scheduledStart: at.toISOString() };
}

type Service = typeof CONF_SERVICE | typeof MATDOC_SERVICE | typeof PRODORD_SERVICE;

/** ExternalSystemConfirmation for a key: the same key always gives the same GUID (DESIGN.md §3). */
export function sapExternalId(idempotencyKey: string): string {
  return uuidv5(idempotencyKey);
}

/** ConfirmationText (40 characters) for people: the key itself when it fits, else its head and a hash. */
export function sapConfirmationText(idempotencyKey: string): string {
  if (idempotencyKey.length <= 40) return idempotencyKey;
  const hash = createHash('sha1').update(idempotencyKey).digest('hex').slice(0, 8);
  return `${idempotencyKey.slice(0, 31)}~${hash}`;
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * MaterialDocumentHeaderText (BKTXT, 25 characters) for a key: "PB" + 23 base32 characters of the
 * key's UUIDv5 (115 bits; a collision is not a practical concern). Upper case and [0-9A-Z] only, so
 * it survives any case or character conversion on the way.
 */
export function sapHeaderText(idempotencyKey: string): string {
  const hex = sapExternalId(idempotencyKey).replace(/-/g, '');
  let bits = BigInt(`0x${hex}`);
  let out = '';
  for (let i = 0; i < 23; i++) {
    out = CROCKFORD[Number(bits & 31n)] + out;
    bits >>= 5n;
  }
  return `PB${out}`;
}

/** /Date(ms)/ of midnight UTC of a plant-local posting date (Edm.DateTime carries no zone). */
export function sapDate(isoDate: string): string {
  return `/Date(${Date.parse(`${isoDate}T00:00:00Z`)})/`;
}

/** Edm.Decimal as a string with at most 3 decimals (SAP quantity fields are 13,3). */
export function sapDecimal(n: number): string {
  return String(Math.round(n * 1000) / 1000);
}

/** OrderOperation is NUMC 4 in SAP: "10" becomes "0010"; anything non-numeric is sent as it is. */
export function sapOperation(op: string): string {
  return /^\d{1,4}$/.test(op) ? op.padStart(4, '0') : op;
}

function odataString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

class MappingError extends Error {}

function field(value: string | undefined, name: string, max: number): string | undefined {
  if (value !== undefined && value.length > max) throw new MappingError(`${name} "${value}" is longer than SAP's ${max} characters`);
  return value;
}

export function toSapConfirmation(tx: ProductionConfirmation): Record<string, unknown> {
  const d = tx.data;
  for (const [name, q] of [['scrap', d.scrap], ['rework', d.rework]] as const) {
    if (q && q.uom !== d.yield.uom) throw new MappingError(`${name} is in ${q.uom} but yield is in ${d.yield.uom}; SAP takes one unit per confirmation`);
  }
  const body: Record<string, unknown> = {
    OrderID: field(d.order, 'order', 12),
    ConfirmationYieldQuantity: sapDecimal(d.yield.qty),
    ConfirmationUnit: field(d.yield.uom, 'unit', 3),
    FinalConfirmationType: d.final === 'final' ? 'X' : d.final === 'auto' ? '1' : '',
    PostingDate: sapDate(d.postingDate),
    ExternalSystemConfirmation: sapExternalId(tx.idempotencyKey),
    ConfirmationText: sapConfirmationText(tx.idempotencyKey),
  };
  if (d.operation !== undefined) {
    body.OrderOperation = field(sapOperation(d.operation), 'operation', 4);
    body.Sequence = d.sequence ?? '0';
  }
  if (d.scrap && d.scrap.qty > 0) body.ConfirmationScrapQuantity = sapDecimal(d.scrap.qty);
  if (d.rework && d.rework.qty > 0) body.ConfirmationReworkQuantity = sapDecimal(d.rework.qty);
  return body;
}

export function toSapMaterialDocument(tx: MaterialConsumption | GoodsReceipt, plant: string): Record<string, unknown> {
  const isReceipt = transactionTypeOf(tx) === 'GoodsReceipt';
  const d = tx.data;
  const movement = isReceipt ? '101' : (tx as MaterialConsumption).data.movement === 'reversal' ? '262' : '261';
  const item: Record<string, unknown> = {
    Material: field(d.material, 'material', 40),
    Plant: field(plant, 'plant', 4),
    GoodsMovementType: movement,
    ManufacturingOrder: field(d.order, 'order', 12),
    EntryUnit: field(d.quantity.uom, 'unit', 3),
    QuantityInEntryUnit: sapDecimal(d.quantity.qty),
  };
  if (d.storageLocation !== undefined) item.StorageLocation = field(d.storageLocation, 'storage location', 4);
  if (d.batch !== undefined) item.Batch = field(d.batch, 'batch', 10);
  if (isReceipt && (tx as GoodsReceipt).data.manufactureDate) item.ManufactureDate = sapDate((tx as GoodsReceipt).data.manufactureDate!);
  return {
    // 02: goods receipt for a production order; 03: goods issue (262 is the return to stock)
    GoodsMovementCode: isReceipt ? '02' : '03',
    PostingDate: sapDate(d.postingDate),
    DocumentDate: sapDate(d.postingDate),
    MaterialDocumentHeaderText: sapHeaderText(tx.idempotencyKey),
    to_MaterialDocumentItem: [item],
  };
}

export interface SapError {
  code: string;
  message: string;
  transactionId?: string;
}

/** SAP Gateway error bodies, JSON (message as object, array or string) or XML. */
export function parseSapError(res: ErpHttpResponse): SapError | undefined {
  const json = jsonBody(res) as { error?: { code?: unknown; message?: unknown; innererror?: { transactionid?: unknown } } } | undefined;
  if (json && typeof json === 'object' && json.error && typeof json.error.code === 'string' && json.error.code !== '') {
    const m = json.error.message;
    let message = '';
    if (typeof m === 'string') message = m;
    else if (Array.isArray(m)) message = String((m.find((x) => x?.lang === 'en') ?? m[0])?.value ?? '');
    else if (m && typeof m === 'object') message = String((m as { value?: unknown }).value ?? '');
    const tid = json.error.innererror?.transactionid;
    return { code: json.error.code.slice(0, 60), message: message.slice(0, 500), transactionId: typeof tid === 'string' ? tid : undefined };
  }
  const ct = String(res.headers['content-type'] ?? '');
  if (!res.truncated && /xml/i.test(ct)) {
    const text = res.body.toString('utf8');
    const code = /<code>([^<]{1,60})<\/code>/.exec(text)?.[1];
    const message = /<message[^>]*>([^<]{0,500})<\/message>/.exec(text)?.[1];
    if (code) return { code, message: message ?? '' };
  }
  return undefined;
}

function isCsrfFailure(res: ErpHttpResponse): boolean {
  if (res.status !== 403) return false;
  return String(res.headers['x-csrf-token'] ?? '').toLowerCase() === 'required' || /CSRF token validation failed/i.test(res.body.subarray(0, 2000).toString('utf8'));
}

/** The schema's defaults, for callers that build the config object by hand instead of parsing it. */
const DEFAULTS = { timeout: 30_000, concurrency: 4, maxResponseSize: 4_000_000, plants: {}, transientMessageCodes: ['M3/897'] } satisfies Partial<SapOdataConfig>;

export function createSapOdataAdapter(input: SapOdataConfig, deps: { logger?: Logger } = {}): ErpAdapter {
  const config: SapOdataConfig = { ...DEFAULTS, ...Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)) } as SapOdataConfig;
  const log = deps.logger?.child({ component: 'erp', adapter: 'sap-odata' });
  const http = new ErpHttpClient({ maxSockets: config.concurrency });
  const base = config.url.replace(/\/+$/, '');
  const jar = new CookieJar();
  const transientCodes = new Set(config.transientMessageCodes);
  const csrf = new Map<Service, { token?: string; inflight?: Promise<string> }>([
    [CONF_SERVICE, {}],
    [MATDOC_SERVICE, {}],
    [PRODORD_SERVICE, {}],
  ]);
  let escFilterUnsupported = false;

  const auth = config.auth;
  const oauth =
    auth.type === 'oauth-client-credentials'
      ? new ClientCredentialsToken({
          http,
          tokenUrl: auth.tokenUrl,
          clientId: auth.clientId,
          clientSecret: () => reveal(auth.clientSecret),
          scope: auth.scope,
          timeoutMs: config.timeout,
        })
      : undefined;

  const authorization = async (signal?: AbortSignal): Promise<string> => {
    if (auth.type === 'basic') return `Basic ${Buffer.from(`${auth.username}:${reveal(auth.password)}`).toString('base64')}`;
    return `Bearer ${await oauth!.get(signal)}`;
  };

  const urlFor = (service: Service, path: string, query: Record<string, string> = {}): URL => {
    const u = new URL(`${base}${service}/${path}`);
    const q = { ...query, ...(config.client ? { 'sap-client': config.client } : {}) };
    // %20, not '+', for spaces: OData servers need not read '+' as a space in $filter
    u.search = Object.entries(q)
      .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
      .join('&');
    return u;
  };

  /** One HTTP exchange with auth and cookies; a 401 with OAuth renews the token once (nothing was applied). */
  const exchange = async (
    method: 'GET' | 'POST',
    url: URL,
    extra: Record<string, string>,
    body: string | undefined,
    ctx: { signal?: AbortSignal; mutating: boolean },
  ): Promise<ErpHttpResponse> => {
    for (let renewed = false; ; renewed = true) {
      const authz = await authorization(ctx.signal);
      const cookie = jar.header();
      const res = await http.request({
        method,
        url,
        headers: {
          accept: 'application/json',
          authorization: authz,
          ...(cookie ? { cookie } : {}),
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...extra,
        },
        body,
        timeoutMs: config.timeout,
        maxResponseBytes: config.maxResponseSize,
        signal: ctx.signal,
        mutating: ctx.mutating,
      });
      jar.store(res.headers);
      if (res.status === 401 && oauth && !renewed) {
        oauth.invalidate(authz.slice('Bearer '.length));
        continue;
      }
      return res;
    }
  };

  const fetchCsrf = async (service: Service, signal?: AbortSignal): Promise<string> => {
    const res = await exchange('GET', urlFor(service, ''), { 'x-csrf-token': 'Fetch' }, undefined, { signal, mutating: false });
    const token = res.headers['x-csrf-token'];
    if (res.status >= 200 && res.status < 300 && typeof token === 'string' && token !== '' && token.toLowerCase() !== 'required') return token;
    throw failure(res, 'read', `CSRF token fetch on ${service}`);
  };

  const csrfToken = (service: Service, signal?: AbortSignal): Promise<string> => {
    const s = csrf.get(service)!;
    if (s.token) return Promise.resolve(s.token);
    s.inflight ??= fetchCsrf(service, signal)
      .then((t) => (s.token = t))
      .finally(() => (s.inflight = undefined));
    return s.inflight;
  };

  /** POST with a CSRF token; a token refused as invalid is fetched again once (the POST was not processed). */
  const postWithCsrf = async (service: Service, path: string, body: string, ctx: ErpCallContext & { traceparent: string }): Promise<ErpHttpResponse> => {
    for (let refetched = false; ; refetched = true) {
      const token = await csrfToken(service, ctx.signal);
      const res = await exchange('POST', urlFor(service, path), { 'x-csrf-token': token, traceparent: ctx.traceparent }, body, {
        signal: ctx.signal,
        mutating: true,
      });
      if (!isCsrfFailure(res)) return res;
      const s = csrf.get(service)!;
      if (s.token === token) {
        s.token = undefined;
        jar.clear();
      }
      if (refetched) {
        throw new ErpError('UPSTREAM_UNAVAILABLE', `SAP refused a freshly fetched CSRF token on ${service} (check that cookies survive the proxy)`, {
          erpCode: 'CSRF',
        });
      }
      log?.debug({ service }, 'CSRF token expired; fetching a new one');
    }
  };

  /**
   * Turns a non-success answer into an ErpError (thrown by the caller) or a business rejection.
   * op 'post' may be in doubt; op 'read' never is.
   */
  function failure(res: ErpHttpResponse, op: 'post' | 'read', what: string): ErpError;
  function failure(res: ErpHttpResponse, op: 'post' | 'read', what: string, allowReject: true): ErpError | ErpPostResult;
  function failure(res: ErpHttpResponse, op: 'post' | 'read', what: string, allowReject = false): ErpError | ErpPostResult {
    const status = res.status;
    const sap = parseSapError(res);
    const ra = retryAfterMs(res.headers);
    const detail = sap ? `${sap.code} ${sap.message}` : excerpt(res.body) || '(no body)';
    const transient = (erpCode: ErpCode, why: string) =>
      new ErpError('UPSTREAM_UNAVAILABLE', `${what}: SAP answered ${status} (${why}): ${detail}`, { erpCode, retryAfterMs: ra });
    const sapCode = sap ? erpMessageCode(sap.code) : undefined;
    const locked = sap !== undefined && (transientCodes.has(sap.code) || /\blocked\b/i.test(sap.message));

    if (status === 429) return transient(sapCode ?? 'HTTP_429', 'rate limited');
    if (status === 423 || locked) return transient(sapCode ?? 'HTTP_423', 'locked');
    if (status === 401) {
      log?.warn({ status }, 'SAP refused the credentials; check the user, password or OAuth client');
      return transient('AUTH', 'authentication failed; an operator must fix the credentials');
    }
    if (status === 403) {
      if (isCsrfFailure(res)) return transient('CSRF', 'CSRF token refused');
      log?.warn({ status }, 'SAP denied authorization for the communication user');
      return transient('AUTH', 'not authorized; an operator must grant the role');
    }
    if (status >= 500) {
      // 500: SAP may have committed before failing; 502/504: a gateway cannot know what SAP did
      if (op === 'post' && (status === 500 || status === 502 || status === 504)) {
        return new ErpError('ERP_IN_DOUBT', `${what}: SAP answered ${status}; the posting may have been applied: ${detail}`, {
          erpCode: sapCode ?? `HTTP_${status}`,
          retryAfterMs: ra,
        });
      }
      return transient(sapCode ?? `HTTP_${status}`, 'server unavailable');
    }
    if (status >= 400) {
      // a business refusal needs SAP's own message code; Gateway framework codes (/IWBEP/, /IWFND/) and
      // bodies we cannot read mean the request never reached the application (a proxy, a wrong path,
      // a payload the service does not know) — an operator problem, not a reason to dead-letter the data
      if (allowReject && sap && !/^\/IW(BEP|FND)\//.test(sap.code)) {
        return {
          status: 'rejected',
          code: sap.code,
          reason: sap.message || `HTTP ${status}`,
          detail: { httpStatus: status, ...(sap.transactionId ? { transactionId: sap.transactionId } : {}) },
        };
      }
      return transient(sapCode ?? `HTTP_${status}`, sap ? 'request refused by the Gateway' : 'not an SAP answer');
    }
    if (status >= 300) return transient(`HTTP_${status}`, 'redirected, probably to a logon page');
    // a 2xx we cannot read
    if (op === 'post') {
      return new ErpError('ERP_IN_DOUBT', `${what}: SAP answered ${status} with a body that is not the expected entity: ${excerpt(res.body, 120)}`, {
        erpCode: 'BAD_RESPONSE',
      });
    }
    return transient('BAD_RESPONSE', 'unreadable answer');
  }

  const localReject = (err: MappingError): ErpPostResult => ({ status: 'rejected', code: 'PLANTBRIDGE/MAPPING', reason: err.message });

  const postConfirmation = async (tx: ProductionConfirmation, ctx: ErpCallContext): Promise<ErpPostResult> => {
    let payload: Record<string, unknown>;
    try {
      payload = toSapConfirmation(tx);
    } catch (err) {
      if (err instanceof MappingError) return localReject(err);
      throw err;
    }
    const res = await postWithCsrf(CONF_SERVICE, 'ProdnOrdConf2', JSON.stringify(payload), { ...ctx, traceparent: tx.traceparent });
    if (res.status !== 201 && res.status !== 200) {
      const f = failure(res, 'post', 'POST ProdnOrdConf2', true);
      if (f instanceof ErpError) throw f;
      return f;
    }
    const d = (jsonBody(res) as { d?: Record<string, unknown> } | undefined)?.d;
    const group = d?.ConfirmationGroup;
    const count = d?.ConfirmationCount;
    const esc = d?.ExternalSystemConfirmation;
    if (typeof group !== 'string' || !/^\d{1,10}$/.test(group) || typeof count !== 'string' || !/^\d{1,8}$/.test(count)) {
      throw failure(res, 'post', 'POST ProdnOrdConf2');
    }
    if (typeof esc === 'string' && esc.toLowerCase() !== String(payload.ExternalSystemConfirmation)) {
      throw new ErpError('ERP_IN_DOUBT', `POST ProdnOrdConf2 answered confirmation ${group}/${count} for another ExternalSystemConfirmation (${esc})`, {
        erpCode: 'BAD_RESPONSE',
      });
    }
    const items = (d?.to_ProdnOrdConfMatlDocItm as { results?: Array<Record<string, unknown>> } | undefined)?.results;
    const docs = Array.isArray(items) ? [...new Set(items.map((i) => `${String(i.MaterialDocument)}/${String(i.MaterialDocumentYear)}`))] : [];
    return { status: 'posted', erpRef: `${group}/${count}`, detail: { confirmationGroup: group, confirmationCount: count, materialDocuments: docs } };
  };

  const postMaterialDocument = async (tx: MaterialConsumption | GoodsReceipt, ctx: ErpCallContext): Promise<ErpPostResult> => {
    let payload: Record<string, unknown>;
    try {
      payload = toSapMaterialDocument(tx, config.plants[tx.plant] ?? tx.plant);
    } catch (err) {
      if (err instanceof MappingError) return localReject(err);
      throw err;
    }
    const res = await postWithCsrf(MATDOC_SERVICE, 'A_MaterialDocumentHeader', JSON.stringify(payload), { ...ctx, traceparent: tx.traceparent });
    if (res.status !== 201 && res.status !== 200) {
      const f = failure(res, 'post', 'POST A_MaterialDocumentHeader', true);
      if (f instanceof ErpError) throw f;
      return f;
    }
    const d = (jsonBody(res) as { d?: Record<string, unknown> } | undefined)?.d;
    const doc = d?.MaterialDocument;
    const year = d?.MaterialDocumentYear;
    if (typeof doc !== 'string' || !/^\d{1,10}$/.test(doc) || typeof year !== 'string' || !/^\d{4}$/.test(year)) {
      throw failure(res, 'post', 'POST A_MaterialDocumentHeader');
    }
    return { status: 'posted', erpRef: `${doc}/${year}`, detail: { materialDocument: doc, materialDocumentYear: year } };
  };

  const read = async (service: Service, path: string, query: Record<string, string>, ctx: ErpCallContext): Promise<ErpHttpResponse> => {
    return exchange('GET', urlFor(service, path, { ...query, $format: 'json' }), {}, undefined, { signal: ctx.signal, mutating: false });
  };

  const results = (res: ErpHttpResponse, what: string): Array<Record<string, unknown>> => {
    const r = (jsonBody(res) as { d?: { results?: unknown } } | undefined)?.d?.results;
    if (res.status !== 200 || !Array.isArray(r)) throw failure(res, 'read', what);
    return r.filter((x): x is Record<string, unknown> => x !== null && typeof x === 'object');
  };

  const confRef = (row: Record<string, unknown>, what: string): string => {
    const g = row.ConfirmationGroup;
    const c = row.ConfirmationCount;
    if (typeof g !== 'string' || typeof c !== 'string' || g === '' || c === '') {
      throw new ErpError('UPSTREAM_UNAVAILABLE', `${what}: SAP returned a confirmation without its keys`, { erpCode: 'BAD_RESPONSE' });
    }
    return `${g}/${c}`;
  };

  const lookupConfirmation = async (tx: ProductionConfirmation, ctx: ErpCallContext): Promise<ErpLookupResult> => {
    const guid = sapExternalId(tx.idempotencyKey);
    let scope = `OrderID eq ${odataString(tx.data.order)}`;
    if (tx.data.operation !== undefined) scope += ` and OrderOperation eq ${odataString(sapOperation(tx.data.operation))}`;
    const select = 'ConfirmationGroup,ConfirmationCount,ExternalSystemConfirmation';
    const what = 'GET ProdnOrdConf2 (lookup)';
    if (!escFilterUnsupported) {
      const res = await read(CONF_SERVICE, 'ProdnOrdConf2', { $filter: `${scope} and ExternalSystemConfirmation eq guid'${guid}'`, $select: select, $top: '10' }, ctx);
      if (res.status === 400 && parseSapError(res)) {
        // some releases refuse to filter on the GUID: list the order's confirmations and match here
        escFilterUnsupported = true;
        log?.info('SAP refuses $filter on ExternalSystemConfirmation; lookups match client-side per order');
      } else {
        const rows = results(res, what).filter((r) => String(r.ExternalSystemConfirmation ?? '').toLowerCase() === guid);
        if (rows.length > 1) {
          // cannot happen through PlantBridge; someone posted the key by hand or from another system
          log?.error({ idempotencyKey: tx.idempotencyKey, erpRefs: rows.map((r) => confRef(r, what)) }, 'SAP holds several confirmations for one key: cancel the extra ones (CancelProdnOrdConf)');
        }
        return rows.length > 0 ? { found: true, erpRef: confRef(rows[0], what) } : { found: false };
      }
    }
    const page = 500;
    for (let skip = 0; skip < 200 * page; skip += page) {
      const rows = results(await read(CONF_SERVICE, 'ProdnOrdConf2', { $filter: scope, $select: select, $top: String(page), $skip: String(skip) }, ctx), what);
      const hit = rows.find((r) => String(r.ExternalSystemConfirmation ?? '').toLowerCase() === guid);
      if (hit) return { found: true, erpRef: confRef(hit, what) };
      if (rows.length < page) return { found: false };
    }
    throw new ErpError('UPSTREAM_UNAVAILABLE', `${what}: order ${tx.data.order} has more than ${200 * page} confirmations; cannot decide`, { erpCode: 'LOOKUP_LIMIT' });
  };

  const lookupMaterialDocument = async (tx: MaterialConsumption | GoodsReceipt, ctx: ErpCallContext): Promise<ErpLookupResult> => {
    const text = sapHeaderText(tx.idempotencyKey);
    const what = 'GET A_MaterialDocumentHeader (lookup)';
    const res = await read(
      MATDOC_SERVICE,
      'A_MaterialDocumentHeader',
      { $filter: `MaterialDocumentHeaderText eq ${odataString(text)}`, $select: 'MaterialDocument,MaterialDocumentYear,MaterialDocumentHeaderText', $top: '10' },
      ctx,
    );
    // only a row that shows this key's header text is this posting (it is $selected: a row without it is
    // not evidence, whatever a proxy or a service that ignores $filter answers)
    const rows = results(res, what).filter((r) => r.MaterialDocumentHeaderText === text);
    if (rows.length === 0) return { found: false };
    const doc = rows[0].MaterialDocument;
    const year = rows[0].MaterialDocumentYear;
    if (typeof doc !== 'string' || typeof year !== 'string' || doc === '') {
      throw new ErpError('UPSTREAM_UNAVAILABLE', `${what}: SAP returned a material document without its keys`, { erpCode: 'BAD_RESPONSE' });
    }
    return { found: true, erpRef: `${doc}/${year}` };
  };

  return {
    name: 'sap-odata',

    async post(tx, ctx) {
      switch (transactionTypeOf(tx)) {
        case 'ProductionConfirmation':
          return postConfirmation(tx as ProductionConfirmation, ctx);
        case 'MaterialConsumption':
        case 'GoodsReceipt':
          return postMaterialDocument(tx as MaterialConsumption | GoodsReceipt, ctx);
        default:
          return { status: 'rejected', code: 'PLANTBRIDGE/UNSUPPORTED', reason: `sap-odata cannot post ${(tx as Transaction).schema}` };
      }
    },

    async lookup(tx, ctx) {
      switch (transactionTypeOf(tx)) {
        case 'ProductionConfirmation':
          return lookupConfirmation(tx as ProductionConfirmation, ctx);
        case 'MaterialConsumption':
        case 'GoodsReceipt':
          return lookupMaterialDocument(tx as MaterialConsumption | GoodsReceipt, ctx);
        default:
          return { found: false };
      }
    },

    async releasedOrders(plant: string, since: Date, ctx: ErpCallContext): Promise<ReleasedOrdersResult> {
      const sapPlant = config.plants[plant] ?? plant;
      const what = 'GET A_ProductionOrder_2 (released orders)';
      const orders: ReleasedOrder[] = [];
      let skipped = 0;
      const page = 500;
      for (let skip = 0; ; skip += page) {
        if (skip >= RELEASED_MAX) throw new ErpError('UPSTREAM_UNAVAILABLE', `${what}: plant ${sapPlant} has more than ${RELEASED_MAX} released orders; cannot read them whole`, { erpCode: 'LOOKUP_LIMIT' });
        const res = await read(
          PRODORD_SERVICE,
          'A_ProductionOrder_2',
          {
            // REL and not TECO; the scheduled start is compared here (the date filter differs between releases)
            $filter: `ProductionPlant eq ${odataString(sapPlant)} and OrderIsReleased eq 'X' and OrderIsTechnicallyCompleted eq ''`,
            $select: 'ManufacturingOrder,ProductionPlant,MfgOrderScheduledStartDate,MfgOrderScheduledStartTime,to_ProductionOrderOperation/WorkCenter',
            $expand: 'to_ProductionOrderOperation',
            $top: String(page),
            $skip: String(skip),
          },
          ctx,
        );
        const rows = results(res, what);
        for (const r of rows) {
          const o = sapReleasedOrder(r, plant);
          if (!o) skipped++;
          else if (Date.parse(o.scheduledStart) >= since.getTime()) orders.push(o);
        }
        if (rows.length < page) return { orders, skipped };
      }
    },

    externalIdOf: (key: string) => sapExternalId(key),

    async postedFor(_plant: string, order: string, ctx: ErpCallContext): Promise<{ documents: ErpDocument[]; skipped: number }> {
      const what = 'GET ProdnOrdConf2 (reconciliation)';
      const documents: ErpDocument[] = [];
      let skipped = 0;
      const page = 500;
      for (let skip = 0; ; skip += page) {
        if (skip >= 200 * page) throw new ErpError('UPSTREAM_UNAVAILABLE', `${what}: order ${order} has more than ${200 * page} confirmations`, { erpCode: 'LOOKUP_LIMIT' });
        const rows = results(
          await read(CONF_SERVICE, 'ProdnOrdConf2', { $filter: `OrderID eq ${odataString(order)}`, $select: 'ConfirmationGroup,ConfirmationCount,ExternalSystemConfirmation,OrderOperation,ConfirmationYieldQuantity,ConfirmationUnit', $top: String(page), $skip: String(skip) }, ctx),
          what,
        );
        for (const r of rows) {
          const g = r.ConfirmationGroup;
          const c = r.ConfirmationCount;
          const qty = typeof r.ConfirmationYieldQuantity === 'string' && /^-?\d{1,13}(\.\d{1,3})?$/.test(r.ConfirmationYieldQuantity) ? Number(r.ConfirmationYieldQuantity) : null;
          if (typeof g !== 'string' || typeof c !== 'string' || g === '' || c === '' || g.length > 20 || c.length > 20) {
            skipped++;
            continue;
          }
          const ext = typeof r.ExternalSystemConfirmation === 'string' ? r.ExternalSystemConfirmation.toLowerCase() : '';
          documents.push({
            erpRef: `${g}/${c}`,
            externalId: ext === '' || ext === '00000000-0000-0000-0000-000000000000' ? null : ext,
            operation: typeof r.OrderOperation === 'string' ? r.OrderOperation.replace(/^0+(?=\d)/, '') : null,
            quantity: qty,
            uom: typeof r.ConfirmationUnit === 'string' ? r.ConfirmationUnit : null,
          });
        }
        if (rows.length < page) return { documents, skipped };
      }
    },

    async healthcheck() {
      try {
        for (const service of [CONF_SERVICE, MATDOC_SERVICE] as const) {
          const token = await fetchCsrf(service);
          const s = csrf.get(service)!;
          s.token = token;
        }
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
