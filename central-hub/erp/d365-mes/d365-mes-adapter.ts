import type { Logger } from 'pino';
import { transactionTypeOf, type ErpCode, type GoodsReceipt, type MaterialConsumption, type ProductionConfirmation, type Transaction } from '../../../contracts/index.ts';
import { ErpError, type ErpAdapter, type ErpCallContext, type ErpLookupResult, type ErpPostResult, type ReleasedOrder, type ReleasedOrdersResult } from '../erp-adapter.ts';
import { ClientCredentialsToken, ErpHttpClient, excerpt, jsonBody, retryAfterMs, reveal, type ErpHttpResponse } from '../http/erp-http.ts';
import { PerKeySerial } from '../per-key-serial.ts';
import type { D365MesConfig } from './config.ts';

/**
 * Dynamics 365 SCM through the MES integration API (README.md in this folder):
 * - ProductionConfirmation -> ProdProductionOrderReportFinished (one line: good, error quantity, operation)
 * - GoodsReceipt           -> ProdProductionOrderReportFinished (the item, batch)
 * - MaterialConsumption    -> ProdProductionOrderPickingList (a reversal is a negative consumption)
 * - optional ProdProductionOrderStart before the first confirmation, ProdProductionOrderEnd after a final one
 *   once D365 has processed it
 * Messages for one production order are sent one at a time, in call order (D365 processes a queue per
 * order in arrival order).
 */

export const SEND_MESSAGE_PATH = '/api/services/SysMessageServices/SysMessageService/SendMessage';

export type D365MessageType =
  | 'ProdProductionOrderStart'
  | 'ProdProductionOrderReportFinished'
  | 'ProdProductionOrderPickingList'
  | 'ProdProductionOrderEnd';

/** D365 operation numbers are integers (OprNum); a non-numeric operation is left out. */
function operationNumber(op: string | undefined): number | undefined {
  return op !== undefined && /^\d{1,9}$/.test(op) ? Number(op) : undefined;
}

function compact(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

export function toD365Message(tx: Transaction, referenceField: string): { type: D365MessageType; content: Record<string, unknown> } {
  switch (transactionTypeOf(tx)) {
    case 'ProductionConfirmation': {
      const d = (tx as ProductionConfirmation).data;
      const op = operationNumber(d.operation);
      return {
        type: 'ProdProductionOrderReportFinished',
        content: {
          ProductionOrderNumber: d.order,
          [referenceField]: tx.idempotencyKey,
          ReportFinishedLines: [
            compact({
              ItemNumber: d.material,
              ReportedGoodQuantity: d.yield.qty,
              ReportedErrorQuantity: d.scrap?.qty,
              ErrorCause: d.scrap?.reasonCode,
              ReportAsFinishedDate: d.postingDate,
              ExecutedDateTime: d.window.to,
              FromOperationNumber: op,
              ToOperationNumber: op,
              EndJob: d.final === 'final' ? 'Yes' : 'No',
              PostNow: 'Yes',
            }),
          ],
        },
      };
    }
    case 'GoodsReceipt': {
      const d = (tx as GoodsReceipt).data;
      return {
        type: 'ProdProductionOrderReportFinished',
        content: {
          ProductionOrderNumber: d.order,
          [referenceField]: tx.idempotencyKey,
          ReportFinishedLines: [
            compact({
              ItemNumber: d.material,
              ReportedGoodQuantity: d.quantity.qty,
              ItemBatchNumber: d.batch,
              ReportAsFinishedDate: d.postingDate,
              PostNow: 'Yes',
            }),
          ],
        },
      };
    }
    case 'MaterialConsumption': {
      const d = (tx as MaterialConsumption).data;
      return {
        type: 'ProdProductionOrderPickingList',
        content: {
          ProductionOrderNumber: d.order,
          [referenceField]: tx.idempotencyKey,
          PickingListLines: [
            compact({
              ItemNumber: d.material,
              ConsumptionBOMQuantity: d.movement === 'reversal' ? -d.quantity.qty : d.quantity.qty,
              BOMUnitSymbol: d.quantity.uom,
              ConsumptionDate: d.postingDate,
              OperationNumber: operationNumber(d.operation),
              ItemBatchNumber: d.batch,
            }),
          ],
        },
      };
    }
    default:
      throw new Error(`d365-mes cannot post ${tx.schema}`);
  }
}

/** D365's error bodies: {Message, ExceptionType} from services, {error:{message}} from OData. */
export function parseD365Error(res: ErpHttpResponse): { type: string; message: string } | undefined {
  const j = jsonBody(res) as { Message?: unknown; ExceptionType?: unknown; error?: { code?: unknown; message?: unknown } } | undefined;
  if (!j || typeof j !== 'object') return undefined;
  if (typeof j.Message === 'string') return { type: typeof j.ExceptionType === 'string' ? j.ExceptionType : 'Error', message: j.Message.slice(0, 500) };
  if (j.error && typeof j.error.message === 'string') return { type: typeof j.error.code === 'string' && j.error.code ? j.error.code : 'Error', message: j.error.message.slice(0, 500) };
  return undefined;
}

interface MessageRow {
  MessageId: string;
  MessageState: string;
  MessageInfolog?: string;
}

const LIVE_STATES = new Set(['Queued', 'Processing', 'InProcess', 'Processed']);

/** The End message of a final confirmation carries its own reference, so a lookup of the confirmation never finds it. */
export const endReference = (idempotencyKey: string): string => `${idempotencyKey}#end`;

export function createD365MesAdapter(config: D365MesConfig, deps: { logger?: Logger } = {}): ErpAdapter {
  const log = deps.logger?.child({ component: 'erp', adapter: 'd365-mes' });
  const http = new ErpHttpClient({ maxSockets: config.concurrency });
  const base = config.url.replace(/\/+$/, '');
  const token = new ClientCredentialsToken({
    http,
    tokenUrl: config.auth.tokenUrl,
    clientId: config.auth.clientId,
    clientSecret: () => reveal(config.auth.clientSecret),
    scope: config.auth.scope ?? `${base}/.default`,
    timeoutMs: config.timeout,
  });
  const started = new Set<string>();
  const perOrder = new PerKeySerial();

  const exchange = async (method: 'GET' | 'POST', url: string, body: string | undefined, ctx: { signal?: AbortSignal; mutating: boolean; traceparent?: string }) => {
    for (let renewed = false; ; renewed = true) {
      const bearer = await token.get(ctx.signal);
      const res = await http.request({
        method,
        url,
        headers: {
          authorization: `Bearer ${bearer}`,
          accept: 'application/json',
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(ctx.traceparent ? { traceparent: ctx.traceparent } : {}),
        },
        body,
        timeoutMs: config.timeout,
        maxResponseBytes: config.maxResponseSize,
        signal: ctx.signal,
        mutating: ctx.mutating,
      });
      if (res.status === 401 && !renewed) {
        token.invalidate(bearer);
        continue;
      }
      return res;
    }
  };

  const transient = (what: string, res: ErpHttpResponse, erpCode: ErpCode, why: string) =>
    new ErpError('UPSTREAM_UNAVAILABLE', `${what}: D365 answered ${res.status} (${why}): ${parseD365Error(res)?.message ?? excerpt(res.body)}`, {
      erpCode,
      retryAfterMs: retryAfterMs(res.headers),
    });

  /**
   * The message with this reference (an idempotency key, or endReference of one): the one with `messageId`
   * when given (none until it is visible), else the newest live one.
   */
  const findMessage = async (reference: string, ctx: ErpCallContext, messageId?: string): Promise<MessageRow | undefined> => {
    const key = reference.replace(/'/g, "''");
    const q = new URLSearchParams({
      $filter: `Reference eq '${key}' and MessageQueue eq '${config.messageQueue.replace(/'/g, "''")}'`,
      $select: 'MessageId,MessageState,MessageInfolog',
      $top: '20',
      'cross-company': 'true',
    });
    const what = `GET /data/${config.lookup.entity} (lookup)`;
    const res = await exchange('GET', `${base}/data/${config.lookup.entity}?${q.toString().replace(/\+/g, '%20')}`, undefined, { signal: ctx.signal, mutating: false });
    const value = (jsonBody(res) as { value?: unknown } | undefined)?.value;
    if (res.status !== 200 || !Array.isArray(value)) {
      if (res.status === 401 || res.status === 403) throw transient(what, res, 'AUTH', 'authentication or authorization failed');
      throw transient(what, res, res.status === 200 ? 'BAD_RESPONSE' : `HTTP_${res.status}`, 'lookup failed');
    }
    const rows = value.filter(
      (r): r is MessageRow => r !== null && typeof r === 'object' && (typeof r.MessageId === 'string' || typeof r.MessageId === 'number') && typeof r.MessageState === 'string',
    );
    if (messageId !== undefined) {
      const own = rows.find((r) => String(r.MessageId) === messageId);
      return own ? { ...own, MessageId: String(own.MessageId) } : undefined;
    }
    // a Failed or Canceled message posted nothing; the newest live one is the posting
    const live = rows.filter((r) => LIVE_STATES.has(r.MessageState));
    const row = live.at(-1) ?? rows.at(-1);
    return row ? { ...row, MessageId: String(row.MessageId) } : undefined;
  };

  /** Sends one message; returns its id, or throws / rejects by the table in README.md. */
  const send = async (type: D365MessageType, content: Record<string, unknown>, tx: Transaction, ctx: ErpCallContext): Promise<{ id: string } | ErpPostResult> => {
    const body = JSON.stringify({ _companyId: config.company, _messageQueue: config.messageQueue, _messageType: type, _messageContent: JSON.stringify(content) });
    const what = `SendMessage ${type}`;
    const res = await exchange('POST', `${base}${SEND_MESSAGE_PATH}`, body, { signal: ctx.signal, mutating: true, traceparent: tx.traceparent });
    const status = res.status;
    if (status >= 200 && status < 300) {
      const text = res.truncated ? undefined : res.body.toString('utf8').trim();
      const ct = String(res.headers['content-type'] ?? '');
      if (text === '' || (text === 'null' && /json/i.test(ct))) return { id: '' }; // a void answer: verified by lookup below
      const j = jsonBody(res);
      const id = typeof j === 'string' || typeof j === 'number' ? j : (j as { MessageId?: unknown } | undefined)?.MessageId;
      if ((typeof id === 'string' && id !== '') || typeof id === 'number') return { id: String(id) };
      throw new ErpError('ERP_IN_DOUBT', `${what}: ${status} with an unreadable answer: ${excerpt(res.body, 120)}`, { erpCode: 'BAD_RESPONSE' });
    }
    if (status === 429 || status === 503) throw transient(what, res, `HTTP_${status}`, status === 429 ? 'throttled' : 'unavailable');
    if (status === 401 || status === 403) {
      log?.warn({ status }, 'D365 refused the app registration; check the client secret and the Entra app in D365');
      throw transient(what, res, 'AUTH', 'authentication or authorization failed');
    }
    if (status === 500 || status === 502 || status === 504) {
      throw new ErpError('ERP_IN_DOUBT', `${what}: D365 answered ${status}; the message may have been queued: ${parseD365Error(res)?.message ?? excerpt(res.body)}`, {
        erpCode: `HTTP_${status}`,
        retryAfterMs: retryAfterMs(res.headers),
      });
    }
    const err = parseD365Error(res);
    if (status === 400 && err) {
      return { status: 'rejected', code: `D365/${err.type}`, reason: err.message, detail: { httpStatus: status, messageType: type } };
    }
    throw transient(what, res, `HTTP_${status}`, err ? 'refused' : 'not a D365 answer');
  };

  const waitForOutcome = async (tx: Transaction, id: string, ctx: ErpCallContext): Promise<ErpPostResult> => {
    const deadline = Date.now() + config.waitForProcessing;
    let state = 'Queued';
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, Math.min(config.pollInterval, Math.max(0, deadline - Date.now()))));
      let row: MessageRow | undefined;
      try {
        // this send's own message: an earlier Failed one for the same key (a replay) is not its outcome
        row = await findMessage(tx.idempotencyKey, ctx, id);
      } catch (err) {
        log?.debug({ err }, 'polling the message state failed; trying again');
        continue;
      }
      if (!row) continue;
      state = row.MessageState;
      if (row.MessageState === 'Processed') return { status: 'posted', erpRef: row.MessageId, detail: { state } };
      if (row.MessageState === 'Failed' || row.MessageState === 'Canceled') {
        return { status: 'rejected', code: `D365/${row.MessageState}`, reason: row.MessageInfolog || `message ${row.MessageId} ${row.MessageState}`, detail: { messageId: row.MessageId } };
      }
    }
    return { status: 'posted', erpRef: id, detail: { state } };
  };

  /** A final confirmation with endOrderOnFinal: the order is ended after it, once it is Processed. */
  const endsOrder = (tx: Transaction): boolean =>
    config.endOrderOnFinal && transactionTypeOf(tx) === 'ProductionConfirmation' && (tx as ProductionConfirmation).data.final === 'final';

  /**
   * Ends the order after its final confirmation, called only once that confirmation is Processed (an End
   * processed before a confirmation that then fails would close the order, and the fixed confirmation could
   * never post). Once: an attempt after the first looks for the End an earlier attempt may have sent (a
   * second End of an ended order fails in D365). D365 refusing the End is logged (a person ends the order);
   * a transient failure is thrown, so the posting retries and the next attempt, finding the confirmation by
   * lookup, sends the End if it is still missing.
   */
  const endOrderAfterFinal = async (tx: Transaction, confirmationId: string, ctx: ErpCallContext): Promise<void> => {
    const order = (tx as ProductionConfirmation).data.order;
    const reference = endReference(tx.idempotencyKey);
    try {
      if (ctx.attempt > 1) {
        const earlier = await findMessage(reference, ctx);
        if (earlier && LIVE_STATES.has(earlier.MessageState)) return;
      }
      const r = await send('ProdProductionOrderEnd', { ProductionOrderNumber: order, [config.referenceField]: reference }, tx, ctx);
      if ('status' in r) {
        log?.warn({ order, reference, erpCode: r.status === 'rejected' ? r.code : undefined }, 'the confirmation is processed but D365 refused to end the production order; end it in D365');
      }
    } catch (err) {
      log?.warn({ err, order, reference }, 'the confirmation is processed but ending the production order failed; a later attempt sends the End');
      if (err instanceof ErpError) {
        throw new ErpError(err.code as 'UPSTREAM_UNAVAILABLE' | 'ERP_IN_DOUBT', `final confirmation ${confirmationId} processed, ending order ${order} failed: ${err.message}`, {
          erpCode: err.erpCode,
          retryAfterMs: err.retryAfterMs,
          cause: err,
        });
      }
      throw err;
    }
  };

  /** The final confirmation is sent but not Processed (yet): the End waits for a later attempt's lookup. */
  const notProcessedYet = (id: string, state: string) =>
    new ErpError('ERP_IN_DOUBT', `final confirmation ${id} is ${state} in D365: the order is ended by a later attempt, once it is Processed`, { erpCode: 'NOT_PROCESSED' });

  async function post(tx: Transaction, ctx: ErpCallContext): Promise<ErpPostResult> {
    let msg: ReturnType<typeof toD365Message>;
    try {
      msg = toD365Message(tx, config.referenceField);
    } catch (err) {
      return { status: 'rejected', code: 'PLANTBRIDGE/UNSUPPORTED', reason: (err as Error).message };
    }
    const order = String(msg.content.ProductionOrderNumber);
    return perOrder.run(order, async () => {
      const isConfirmation = transactionTypeOf(tx) === 'ProductionConfirmation';
      if (config.startOrderOnFirstConfirmation && isConfirmation && !started.has(order)) {
        const r = await send('ProdProductionOrderStart', { ProductionOrderNumber: order }, tx, ctx).catch((err: unknown) => {
          // the confirmation itself was not sent: whatever happened to Start, nothing of this posting was applied
          throw err instanceof ErpError ? new ErpError('UPSTREAM_UNAVAILABLE', `before the confirmation: ${err.message}`, { erpCode: err.erpCode, retryAfterMs: err.retryAfterMs }) : err;
        });
        if ('status' in r) return r;
        started.add(order);
      }
      const r = await send(msg.type, msg.content, tx, ctx);
      if ('status' in r) return r;
      let id = r.id;
      if (id === '') {
        const row = await findMessage(tx.idempotencyKey, ctx).catch(() => undefined);
        if (!row || !LIVE_STATES.has(row.MessageState)) {
          throw new ErpError('ERP_IN_DOUBT', `SendMessage ${msg.type}: an empty answer and the message is not visible yet`, { erpCode: 'BAD_RESPONSE' });
        }
        id = row.MessageId;
      }
      const outcome: ErpPostResult = config.waitForProcessing > 0 ? await waitForOutcome(tx, id, ctx) : { status: 'posted', erpRef: id, detail: { state: 'Queued' } };
      if (!endsOrder(tx) || outcome.status !== 'posted') return outcome;
      const state = (outcome.detail as { state?: string } | undefined)?.state ?? 'Queued';
      if (state !== 'Processed') throw notProcessedYet(id, state);
      await endOrderAfterFinal(tx, id, ctx);
      return outcome;
    });
  }

  return {
    name: 'd365-mes',
    post,
    async lookup(tx, ctx): Promise<ErpLookupResult> {
      const row = await findMessage(tx.idempotencyKey, ctx);
      return row && LIVE_STATES.has(row.MessageState) ? { found: true, erpRef: row.MessageId } : { found: false };
    },
    async completeFound(tx, erpRef, ctx) {
      // an earlier attempt may have left the End unsent (not processed yet, failed, or the hub died): send it
      // in the order's turn, once the confirmation is Processed
      if (!endsOrder(tx)) return;
      const order = (tx as ProductionConfirmation).data.order;
      await perOrder.run(order, async () => {
        const row = await findMessage(tx.idempotencyKey, ctx, erpRef);
        if (row?.MessageState !== 'Processed') throw notProcessedYet(erpRef, row?.MessageState ?? 'not visible');
        await endOrderAfterFinal(tx, erpRef, ctx);
      });
    },
    async releasedOrders(plant: string, since: Date, ctx: ErpCallContext): Promise<ReleasedOrdersResult> {
      const r = config.releasedOrders;
      const site = (Object.hasOwn(r.plants, plant) ? r.plants[plant] : plant).replace(/'/g, "''");
      const what = `GET /data/${r.entity} (released orders)`;
      const orders: ReleasedOrder[] = [];
      let skipped = 0;
      const page = 1000;
      for (let skip = 0; ; skip += page) {
        if (skip >= 20_000) throw new ErpError('UPSTREAM_UNAVAILABLE', `${what}: site ${site} has more than 20000 released orders; cannot read them whole`, { erpCode: 'LOOKUP_LIMIT' });
        const q = new URLSearchParams({
          $filter: `dataAreaId eq '${config.company.replace(/'/g, "''")}' and ProductionSiteId eq '${site}' and ProductionOrderStatus eq Microsoft.Dynamics.DataEntities.ProdStatus'Released' and ScheduledStartDate ge ${new Date(Date.UTC(since.getUTCFullYear(), since.getUTCMonth(), since.getUTCDate())).toISOString().replace('.000', '')}`,
          $select: 'ProductionOrderNumber,ScheduledStartDate,ScheduledStartTime,ProductionSiteId',
          $top: String(page),
          $skip: String(skip),
          'cross-company': 'true',
        });
        const res = await exchange('GET', `${base}/data/${r.entity}?${q.toString().replace(/\+/g, '%20')}`, undefined, { signal: ctx.signal, mutating: false });
        const value = (jsonBody(res) as { value?: unknown } | undefined)?.value;
        if (res.status !== 200 || !Array.isArray(value)) {
          if (res.status === 401 || res.status === 403) throw transient(what, res, 'AUTH', 'authentication or authorization failed');
          throw transient(what, res, res.status === 200 ? 'BAD_RESPONSE' : `HTTP_${res.status}`, 'read failed');
        }
        for (const row of value as unknown[]) {
          const o = row as { ProductionOrderNumber?: unknown; ScheduledStartDate?: unknown; ScheduledStartTime?: unknown } | null;
          const day = typeof o?.ScheduledStartDate === 'string' && o.ScheduledStartDate.length <= 40 ? Date.parse(o.ScheduledStartDate) : Number.NaN;
          // ScheduledStartTime: seconds after midnight (a D365 TimeOfDay)
          const secs = typeof o?.ScheduledStartTime === 'number' && o.ScheduledStartTime >= 0 && o.ScheduledStartTime < 86_400 ? o.ScheduledStartTime : 0;
          if (!o || typeof o.ProductionOrderNumber !== 'string' || o.ProductionOrderNumber === '' || o.ProductionOrderNumber.length > 64 || Number.isNaN(day)) {
            skipped++;
            continue;
          }
          const at = day + secs * 1000;
          if (at >= since.getTime()) orders.push({ order: o.ProductionOrderNumber, plant, workCenter: null, scheduledStart: new Date(at).toISOString() });
        }
        if (value.length < page) return { orders, skipped };
      }
    },

    async healthcheck() {
      try {
        const res = await exchange('GET', `${base}/data/${config.lookup.entity}?$top=1&cross-company=true`, undefined, { mutating: false });
        if (res.status === 200 && jsonBody(res) !== undefined) return { ok: true };
        return { ok: false, message: `GET /data/${config.lookup.entity} answered ${res.status}: ${parseD365Error(res)?.message ?? excerpt(res.body)}` };
      } catch (err) {
        return { ok: false, message: err instanceof Error ? err.message : String(err) };
      }
    },
    async close() {
      http.close();
    },
  };
}
