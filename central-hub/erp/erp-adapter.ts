import { PlantBridgeError, type ErpCode, type Transaction } from '../../contracts/index.ts';

/**
 * The ErpAdapter contract (DESIGN.md §4). None of the ERP APIs accepts an idempotency key, so the hub
 * is responsible: the posting service calls `lookup` before anything is sent again after an in-doubt
 * outcome, and only posts when the ERP has no document for the key.
 */
export type ErpPostResult =
  | { status: 'posted'; erpRef: string; detail?: Record<string, unknown> }
  /**
   * a business refusal: order closed, unit unknown, ... A person must act; never retried by itself. `code`:
   * the ERP's own message code (SAP `RU/494`, `odoo/UserError`), or the adapter's `PLANTBRIDGE/…` for a
   * refusal before any call; it becomes the dead letter's `erpCode`.
   */
  | { status: 'rejected'; code: string; reason: string; detail?: Record<string, unknown> };

export type ErpLookupResult = { found: true; erpRef: string } | { found: false };

export interface ErpCallContext {
  /** 1 for the first try */
  attempt: number;
  signal?: AbortSignal;
}

/** An order released for production in the ERP (monitoring: released-not-started). */
export interface ReleasedOrder {
  order: string;
  /** the hub's plant id (as the agents send it) */
  plant: string;
  workCenter: string | null;
  /** ISO 8601 */
  scheduledStart: string;
}

export interface ReleasedOrdersResult {
  orders: ReleasedOrder[];
  /** rows of the ERP's answer that were not readable orders (missing or malformed fields), left out */
  skipped: number;
}

/** A document the ERP holds for an order, whoever posted it (monitoring: reconciliation). */
export interface ErpDocument {
  erpRef: string;
  /** the key's trace the adapter writes (SAP: ExternalSystemConfirmation = UUIDv5 of the key), lower case; null: none */
  externalId: string | null;
  operation: string | null;
  quantity: number | null;
  uom: string | null;
}

export interface ErpAdapter {
  /** adapter type, e.g. sap-odata; used as the metrics label */
  readonly name: string;
  post(tx: Transaction, ctx: ErpCallContext): Promise<ErpPostResult>;
  lookup(tx: Transaction, ctx: ErpCallContext): Promise<ErpLookupResult>;
  /**
   * Called when `lookup` found the document of an earlier attempt, before it counts as posted: does what
   * `post` does after the document itself (d365-mes: end the order after a final confirmation). Must be
   * idempotent: the earlier attempt may have done it already. Optional; a throw retries the posting.
   */
  completeFound?(tx: Transaction, erpRef: string, ctx: ErpCallContext): Promise<void>;
  healthcheck(): Promise<{ ok: boolean; message?: string }>;
  /**
   * Monitoring (optional, declared in the adapter's README): the orders released for production in `plant`
   * whose scheduled start is at or after `since`. Throws ErpError like a lookup when the ERP cannot answer.
   */
  releasedOrders?(plant: string, since: Date, ctx: ErpCallContext): Promise<ReleasedOrdersResult>;
  /**
   * Monitoring (optional, declared in the README): the confirmation documents the ERP holds for an order, and
   * how to recognise a transaction's own document among them (`externalIdOf(key)`).
   */
  postedFor?(plant: string, order: string, ctx: ErpCallContext): Promise<{ documents: ErpDocument[]; skipped: number }>;
  externalIdOf?(idempotencyKey: string): string;
  close?(): Promise<void>;
}

/**
 * Thrown by adapters for anything that is not a definite answer:
 * - UPSTREAM_UNAVAILABLE: nothing was applied (connection refused, 429, 503 before processing, CSRF) — retry
 * - ERP_IN_DOUBT: the request may have been applied (timeout after sending, reset, 5xx with unknown effect) —
 *   look the key up before sending again
 */
export class ErpError extends PlantBridgeError {
  readonly retryAfterMs: number | undefined;
  readonly erpCode: ErpCode | undefined;
  constructor(
    code: 'UPSTREAM_UNAVAILABLE' | 'ERP_IN_DOUBT',
    message: string,
    opts: { retryAfterMs?: number; erpCode?: ErpCode; cause?: unknown; correlationId?: string } = {},
  ) {
    super(code, message, { cause: opts.cause, correlationId: opts.correlationId });
    this.name = 'ErpError';
    this.retryAfterMs = opts.retryAfterMs;
    this.erpCode = opts.erpCode;
  }
}
