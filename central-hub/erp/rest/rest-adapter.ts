import { createHmac, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { PlantBridgeError, erpMessageCode, transactionTypeOf, uuidv5, type Transaction } from '../../../contracts/index.ts';
import { ErpError, type ErpAdapter, type ErpCallContext, type ErpLookupResult, type ErpPostResult, type ReleasedOrder, type ReleasedOrdersResult } from '../erp-adapter.ts';
import { ErpHttpClient, excerpt, jsonBody, retryAfterMs, reveal, type ErpHttpResponse } from '../http/erp-http.ts';
import type { RestConfig } from './config.ts';
import { renderJson, renderUrl, unknownPlaceholders, valueAt } from './template.ts';

/**
 * A generic webhook (README.md in this folder). The receiver gets the key three ways: the
 * Idempotency-Key header, and whatever the body template puts in ({{key}}, {{externalId}}), so that a
 * lookup GET can find it again.
 */

export const SIGNATURE_CONTEXT = ['tx', 'key', 'externalId', 'type'];

function contextOf(tx: Transaction): Record<string, unknown> {
  return { tx, key: tx.idempotencyKey, externalId: uuidv5(tx.idempotencyKey), type: transactionTypeOf(tx) ?? 'unknown' };
}

/** `t=<unix seconds>,sha256=<hex HMAC-SHA256 of "<t>.<body>">`: the receiver recomputes it and checks t is recent. */
export function signBody(secret: string, body: string, nowMs = Date.now()): string {
  const t = Math.floor(nowMs / 1000);
  return `t=${t},sha256=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

export function createRestAdapter(config: RestConfig, deps: { logger?: Logger } = {}): ErpAdapter {
  const log = deps.logger?.child({ component: 'erp', adapter: 'rest' });
  const http = new ErpHttpClient({ maxSockets: config.concurrency });
  const s = config.statuses;

  const probe = { tx: {}, key: '', externalId: '', type: '' };
  const unknown = [
    ...unknownPlaceholders(config.post.url, probe),
    ...unknownPlaceholders(config.post.body, probe),
    ...(config.lookup.type === 'get' ? unknownPlaceholders(config.lookup.url, probe) : []),
    ...(config.releasedOrders ? unknownPlaceholders(config.releasedOrders.url, { plant: '', since: '' }) : []),
  ];
  if (unknown.length > 0) {
    throw new PlantBridgeError('CONFIG_INVALID', `erp: unknown template placeholders ${unknown.map((u) => `{{${u}}}`).join(', ')}; use ${SIGNATURE_CONTEXT.join(', ')}`);
  }

  const authHeader = (): Record<string, string> => {
    const a = config.auth;
    if (a.type === 'bearer') return { authorization: `Bearer ${reveal(a.token)}` };
    if (a.type === 'basic') return { authorization: `Basic ${Buffer.from(`${a.username}:${reveal(a.password)}`).toString('base64')}` };
    return {};
  };

  const erpCodeOf = (code: string | undefined) => (code === undefined ? undefined : erpMessageCode(code));
  const errorInfo = (res: ErpHttpResponse): { code?: string; message?: string } => {
    const json = jsonBody(res);
    if (json === undefined) return {};
    const pick = (paths: string[]) => {
      for (const p of paths) {
        const v = valueAt(json, p);
        if ((typeof v === 'string' && v !== '') || typeof v === 'number') return String(v).slice(0, 500);
      }
      return undefined;
    };
    return { code: pick(config.errorCodePaths), message: pick(config.errorMessagePaths) ?? excerpt(res.body) };
  };

  const refFrom = (res: ErpHttpResponse, tx: Transaction): string | undefined => {
    const r = config.erpRef;
    if (r.from === 'key') return tx.idempotencyKey;
    if (r.from === 'header') {
      const v = res.headers[r.name.toLowerCase()];
      return typeof v === 'string' && v !== '' ? v : undefined;
    }
    const v = valueAt(jsonBody(res), r.path);
    return (typeof v === 'string' && v !== '') || (typeof v === 'number' && Number.isFinite(v)) ? String(v) : undefined;
  };

  async function post(tx: Transaction, ctx: ErpCallContext): Promise<ErpPostResult> {
    const context = contextOf(tx);
    const url = renderUrl(config.post.url, context);
    const body = JSON.stringify(config.post.body === undefined ? tx : renderJson(config.post.body, context));
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'application/json',
      traceparent: tx.traceparent,
      ...config.post.headers,
      ...authHeader(),
      [config.idempotencyHeader.toLowerCase()]: tx.idempotencyKey,
    };
    if (config.signature) headers[config.signature.header.toLowerCase()] = signBody(reveal(config.signature.secret), body);
    const res = await http.request({
      method: config.post.method,
      url,
      headers,
      body,
      timeoutMs: config.timeout,
      maxResponseBytes: config.maxResponseSize,
      signal: ctx.signal,
      mutating: true,
    });
    const what = `${config.post.method} ${new URL(url).pathname}`;
    const status = res.status;
    const ra = retryAfterMs(res.headers);
    if (s.success.includes(status)) {
      const erpRef = refFrom(res, tx);
      if (erpRef !== undefined) return { status: 'posted', erpRef: erpRef.slice(0, 200) };
      throw new ErpError('ERP_IN_DOUBT', `${what}: ${status} without a readable reference: ${excerpt(res.body, 120)}`, { erpCode: 'BAD_RESPONSE' });
    }
    if (s.business.includes(status)) {
      const info = errorInfo(res);
      if (info.message !== undefined && jsonBody(res) !== undefined) {
        return { status: 'rejected', code: info.code ?? `HTTP_${status}`, reason: info.message, detail: { httpStatus: status } };
      }
      // an error page from something in between, not the receiver's answer
      throw new ErpError('UPSTREAM_UNAVAILABLE', `${what}: ${status} with an unreadable body: ${excerpt(res.body)}`, { erpCode: `HTTP_${status}`, retryAfterMs: ra });
    }
    if (s.transient.includes(status)) {
      if (status === 401 || status === 403) log?.warn({ status }, 'the receiver refused the credentials');
      throw new ErpError('UPSTREAM_UNAVAILABLE', `${what}: ${status}: ${excerpt(res.body)}`, { erpCode: erpCodeOf(errorInfo(res).code) ?? `HTTP_${status}`, retryAfterMs: ra });
    }
    if (s.inDoubt.includes(status) || (status >= 200 && status < 300) || status >= 500) {
      throw new ErpError('ERP_IN_DOUBT', `${what}: ${status}; the posting may have been applied: ${excerpt(res.body)}`, { erpCode: `HTTP_${status}`, retryAfterMs: ra });
    }
    throw new ErpError('UPSTREAM_UNAVAILABLE', `${what}: unexpected ${status}: ${excerpt(res.body)}`, { erpCode: `HTTP_${status}`, retryAfterMs: ra });
  }

  async function getLookup(tx: Transaction, ctx: ErpCallContext, urlTemplate: string): Promise<ErpHttpResponse> {
    return http.request({
      method: 'GET',
      url: renderUrl(urlTemplate, contextOf(tx)),
      headers: { accept: 'application/json', traceparent: tx.traceparent, ...config.post.headers, ...authHeader() },
      timeoutMs: config.timeout,
      maxResponseBytes: config.maxResponseSize,
      signal: ctx.signal,
      mutating: false,
    });
  }

  async function releasedOrders(plant: string, since: Date, ctx: ErpCallContext): Promise<ReleasedOrdersResult> {
    const r = config.releasedOrders!;
    const url = renderUrl(r.url, { plant, since: since.toISOString() });
    const res = await http.request({
      method: 'GET',
      url,
      headers: { accept: 'application/json', ...config.post.headers, ...authHeader() },
      timeoutMs: config.timeout,
      maxResponseBytes: config.maxResponseSize,
      signal: ctx.signal,
      mutating: false,
    });
    const what = `GET ${new URL(url).pathname} (released orders)`;
    if (res.status !== 200) throw new ErpError('UPSTREAM_UNAVAILABLE', `${what}: ${res.status}: ${excerpt(res.body)}`, { erpCode: `HTTP_${res.status}`, retryAfterMs: retryAfterMs(res.headers) });
    const json = jsonBody(res);
    const items = r.itemsPath ? valueAt(json, r.itemsPath) : json;
    if (!Array.isArray(items)) throw new ErpError('UPSTREAM_UNAVAILABLE', `${what}: not a list of orders${r.itemsPath ? ` at ${r.itemsPath}` : ''}: ${excerpt(res.body, 120)}`, { erpCode: 'BAD_RESPONSE' });
    const orders: ReleasedOrder[] = [];
    let skipped = 0;
    for (const it of items) {
      const order = valueAt(it, r.orderPath);
      const wc = valueAt(it, r.workCenterPath);
      const start = valueAt(it, r.scheduledStartPath);
      const t = typeof start === 'string' && start.length <= 40 ? Date.parse(start) : Number.NaN;
      if (typeof order !== 'string' || order === '' || order.length > 64 || Number.isNaN(t)) {
        skipped++;
        continue;
      }
      if (t < since.getTime()) continue;
      orders.push({ order, plant, workCenter: typeof wc === 'string' && wc !== '' && wc.length <= 64 ? wc : null, scheduledStart: new Date(t).toISOString() });
    }
    return { orders, skipped };
  }

  async function lookup(tx: Transaction, ctx: ErpCallContext): Promise<ErpLookupResult> {
    const l = config.lookup;
    if (l.type === 'receiver-dedupes') return { found: false };
    const res = await getLookup(tx, ctx, l.url);
    if (l.notFound.includes(res.status)) {
      // a 404 page from a proxy is not the receiver saying "no such posting"
      if (res.status === 404 && res.body.length > 0 && jsonBody(res) === undefined) {
        throw new ErpError('UPSTREAM_UNAVAILABLE', `lookup: 404 that is not the receiver's answer: ${excerpt(res.body)}`, { erpCode: 'HTTP_404' });
      }
      return { found: false };
    }
    if (l.found.includes(res.status)) {
      const json = jsonBody(res);
      if (Array.isArray(json) && json.length === 0) return { found: false };
      let first = Array.isArray(json) ? json[0] : json;
      if (l.keyPath) {
        // the answer must show it is this posting: a receiver (or a proxy, or a cache) that ignores the
        // query and answers some other record must not make this transaction "posted" without a post
        const key = tx.idempotencyKey;
        if (Array.isArray(json)) {
          first = json.find((r) => valueAt(r, l.keyPath!) === key);
          if (first === undefined) return { found: false };
        } else if (valueAt(json, l.keyPath) !== key) {
          throw new ErpError('UPSTREAM_UNAVAILABLE', `lookup: ${res.status} answered a record whose ${l.keyPath} is not this posting's key: ${excerpt(res.body, 120)}`, { erpCode: 'BAD_RESPONSE' });
        }
      }
      const v = valueAt(first, l.erpRefPath);
      if ((typeof v === 'string' && v !== '') || typeof v === 'number') return { found: true, erpRef: String(v) };
      throw new ErpError('UPSTREAM_UNAVAILABLE', `lookup: ${res.status} without a readable reference at ${l.erpRefPath}: ${excerpt(res.body, 120)}`, { erpCode: 'BAD_RESPONSE' });
    }
    throw new ErpError('UPSTREAM_UNAVAILABLE', `lookup: ${res.status}: ${excerpt(res.body)}`, { erpCode: `HTTP_${res.status}`, retryAfterMs: retryAfterMs(res.headers) });
  }

  return {
    name: 'rest',
    post,
    lookup,
    ...(config.releasedOrders ? { releasedOrders } : {}),
    async healthcheck() {
      try {
        if (config.healthUrl) {
          const res = await http.request({
            method: 'GET',
            url: config.healthUrl,
            headers: { ...config.post.headers, ...authHeader() },
            timeoutMs: config.timeout,
            maxResponseBytes: 64 * 1024,
            mutating: false,
          });
          return res.status >= 200 && res.status < 300 ? { ok: true } : { ok: false, message: `health URL answered ${res.status}` };
        }
        if (config.lookup.type === 'get') {
          // a lookup for a key that cannot exist proves reachability, credentials and the lookup route
          const probeTx = { schema: 'plantbridge.healthcheck/1.0', idempotencyKey: `plantbridge-healthcheck-${randomUUID()}`, traceparent: `00-${'0'.repeat(31)}1-${'0'.repeat(15)}1-01`, data: {} };
          await lookup(probeTx as unknown as Transaction, { attempt: 1 });
          return { ok: true };
        }
        return { ok: true, message: 'no healthUrl and no lookup route: not checked' };
      } catch (err) {
        return { ok: false, message: err instanceof Error ? err.message : String(err) };
      }
    },
    async close() {
      http.close();
    },
  };
}
