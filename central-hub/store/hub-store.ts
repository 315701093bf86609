import { asErrorCode, type AgentHeartbeat, type ErpCode, type ErrorCode, type ItemResult, type Outcome, type Transaction } from '../../contracts/index.ts';

/**
 * The HubStore contract (DESIGN.md §4). SQLite (embedded default) and PostgreSQL (scale-out) implement it
 * and pass one contract suite (store/contract-suite.ts). Every method is safe to call from several hub
 * instances at once on PostgreSQL.
 */

export interface AgentRecord {
  id: string;
  plants: string[];
  /** sha256 hex of the agent's bearer token; the token itself is never stored */
  tokenHash: string;
  revokedAt?: string;
}

/** Where a transaction stands on its way into the ERP. */
export type PostingState = 'queued' | 'posted' | 'failed' | 'discarded';

export interface PostingJob {
  seq: number;
  tx: Transaction;
  /** attempts started so far, including this one: > 1 means an earlier attempt may have reached the ERP */
  attempt: number;
  orderKey: string;
  /**
   * The ERP may hold this posting already, unknown to the hub: an earlier attempt ended in doubt, or its claim
   * expired without an outcome, and no attempt has looked the key up since.
   */
  inDoubt: boolean;
}

export type PostingOutcome =
  | { kind: 'posted'; erpRef: string; detail?: unknown }
  /**
   * A business refusal, or failures past maxAttempts: a dead letter a person resolves. Code ERP_IN_DOUBT when
   * the ERP's outcome is still unknown (the ERP may hold the document: check before acting).
   * lookUpAfterMs (with ERP_IN_DOUBT): a replay is not claimed, so the key not looked up, before this long
   * from now (the ERP may still be processing the attempt that went in doubt; a lookup too early finds
   * nothing and posts it twice).
   */
  | { kind: 'failed'; code: ErrorCode; message: string; erpCode?: ErpCode; lookUpAfterMs?: number }
  /** inDoubt: after this attempt the ERP may hold the posting (the next attempt's job.inDoubt) */
  | { kind: 'retry'; delayMs: number; code: ErrorCode; message: string; inDoubt: boolean };

export interface TransactionRow {
  seq: number;
  idempotencyKey: string;
  type: string;
  plant: string;
  agentId: string;
  workCenter: string | null;
  order: string;
  quantity: number | null;
  uom: string | null;
  eventTime: string;
  receivedAt: string;
  state: PostingState;
  attempts: number;
  inDoubt: boolean;
  erpRef: string | null;
  postedAt: string | null;
  /** a catalogue code; an unknown value read from the database is shown as ERP_BUSINESS (outcomeFromRow) */
  errorCode: ErrorCode | null;
  errorMessage: string | null;
}

export interface AgentStatusRow {
  id: string;
  plants: string[];
  lastHeartbeatAt: string | null;
  heartbeat: AgentHeartbeat | null;
  transactions: number;
}

/** An agent as the admin CLI sees it (`plantbridge-hub agents list`). */
export interface AgentInfo {
  id: string;
  plants: string[];
  /** false while only an enrollment token exists */
  enrolled: boolean;
  createdAt: string;
  credentialAt: string | null;
  revokedAt: string | null;
  lastHeartbeatAt: string | null;
  /** unused, unexpired enrollment tokens */
  pendingEnrollments: number;
}

export interface NewEnrollment {
  /** sha256 hex of the one-time token; the token itself is printed once and never stored */
  tokenHash: string;
  agentId: string;
  plants: string[];
  expiresAt: Date;
}

/** superseded: a newer token was issued for the agent, or it enrolled with another one */
export type RedeemRefusal = 'unknown' | 'used' | 'expired' | 'revoked' | 'superseded';
export type RedeemResult = { ok: true; agent: AgentRecord } | { ok: false; reason: RedeemRefusal };

/** One ERP outcome for the agent that sent the transaction (`GET /v1/agents/me/outcomes`). */
export interface OutcomeEvent {
  cursor: number;
  idempotencyKey: string;
  outcome: Outcome;
}

export interface LineageEvent {
  at: string;
  kind: string;
  detail?: unknown;
}

export interface HeartbeatPoint {
  receivedAt: string;
  pending: number;
  deadLetters: number;
  driversUp: number;
  driversTotal: number;
}

export interface AuditEvent {
  actor: string;
  action: string;
  target?: string;
  detail?: unknown;
}

export interface IngestMeta {
  batchId?: string;
  /**
   * The items' JSON text as received: one JSON array whose elements parse to `items`, in order (the hub
   * gives it only when it stores every item of the frame as parsed). The PostgreSQL store stores these
   * bytes instead of serialising the items again; if they are not one array after all, it serialises.
   */
  itemsJson?: Buffer;
}

/*
 * Business monitoring (monitor/, issue #20): read-only queries over the transactions. `plants`: the plants
 * to include, null = every plant (a viewer limited to plants passes its list).
 */

/** One posted transaction's latency: machine event time to the ERP document (ms, never negative). */
export interface LatencySample {
  plant: string;
  type: string;
  latencyMs: number;
}

/** A posted transaction slower than an objective: what a latency breach names. */
export interface SlowPosting {
  seq: number;
  idempotencyKey: string;
  plant: string;
  type: string;
  workCenter: string | null;
  order: string;
  latencyMs: number;
  postedAt: string;
}

/** An order with transactions accepted and not yet completed (queued, retrying, in doubt or held back). */
export interface OpenOrder {
  plant: string;
  order: string;
  workCenter: string | null;
  queued: number;
  /** of those, the ones whose outcome in the ERP is unknown */
  inDoubt: number;
  oldestReceivedAt: string;
  /** the oldest few queued transactions (at most `keysPerOrder`) */
  keys: Array<{ seq: number; idempotencyKey: string; receivedAt: string; inDoubt: boolean }>;
}

/** A dead letter (state failed) and what waits behind it: the later queued transactions of its order. */
export interface DeadLetterHold {
  seq: number;
  idempotencyKey: string;
  plant: string;
  type: string;
  workCenter: string | null;
  order: string;
  errorCode: string | null;
  errorMessage: string | null;
  receivedAt: string;
  inDoubt: boolean;
  /** queued transactions of the same order after this one: none of them posts before it is resolved */
  heldBack: number;
  oldestHeldBackAt: string | null;
}

/** One transaction of an order as reconciliation compares it with the ERP. */
export interface OrderTransaction {
  idempotencyKey: string;
  type: string;
  workCenter: string | null;
  operation: string | null;
  state: PostingState;
  quantity: number | null;
  uom: string | null;
  erpRef: string | null;
}

/** A stored reconciliation of one order (monitor/reconciliation.ts has the detail's shape). */
export interface ReconciliationRecord {
  id: number;
  plant: string;
  order: string;
  at: string;
  status: 'clean' | 'drift' | 'error';
  findings: number;
  detail: unknown;
}

export interface MonitorQueries {
  /** every posted transaction's latency, posted at or after `since` */
  postingLatencies(opts: { since: Date; plants: readonly string[] | null }): Promise<LatencySample[]>;
  /** the slowest postings of one plant and type since `since` over `overMs`, slowest first */
  slowPostings(opts: { since: Date; plant: string; type: string; overMs: number; limit: number }): Promise<SlowPosting[]>;
  /** orders with queued transactions received before `receivedBefore`, oldest first */
  openOrders(opts: { receivedBefore: Date; plants: readonly string[] | null; limit: number; keysPerOrder: number }): Promise<OpenOrder[]>;
  /** which of `orders` of `plant` have any transaction: their count and first event time */
  orderActivity(opts: { plant: string; orders: readonly string[] }): Promise<Array<{ order: string; transactions: number; firstEventTime: string }>>;
  /** every transaction of one order, in arrival order (at most `limit`) */
  orderTransactions(opts: { plant: string; order: string; limit: number }): Promise<OrderTransaction[]>;
  /** orders with a transaction received since `since`, newest activity first */
  activeOrders(opts: { since: Date; plants: readonly string[] | null; limit: number }): Promise<Array<{ plant: string; order: string; lastReceivedAt: string }>>;
  saveReconciliation(r: Omit<ReconciliationRecord, 'id'>): Promise<number>;
  /** stored reconciliations, newest first */
  listReconciliations(opts: { plants: readonly string[] | null; order?: string; limit: number; offset: number }): Promise<{ total: number; items: ReconciliationRecord[] }>;
  /** dead letters with their held-back counts, the most held back first */
  deadLetterHolds(opts: { plants: readonly string[] | null; limit: number }): Promise<DeadLetterHold[]>;
}

export interface HubStore extends MonitorQueries {
  readonly kind: 'sqlite' | 'postgres';
  migrate(): Promise<void>;
  close(): Promise<void>;

  /** Registers or updates an agent's credential (static tokens from hub.yaml, enrollment). */
  upsertAgent(agent: AgentRecord): Promise<void>;
  findAgentByTokenHash(tokenHash: string): Promise<AgentRecord | undefined>;

  /**
   * Stores validated transactions idempotently, unique by idempotencyKey, in one database transaction.
   * Returns one result per item in order: accepted, or duplicate with the original outcome.
   */
  ingest(agentId: string, items: Transaction[], receivedAt: Date, meta?: IngestMeta): Promise<ItemResult[]>;

  recordHeartbeat(hb: AgentHeartbeat, receivedAt: Date): Promise<void>;

  /*
   * Posting time (`now`, for tests, moves the store's clock): without it, leases and retry times follow the
   * SQLite store's process clock (one hub instance), and the PostgreSQL store's database clock, so hub
   * instances whose clocks differ agree on when a lease ends and when a retry is due.
   */
  /**
   * Leases up to `limit` transactions to post: per order only the oldest unfinished one (so each order
   * posts in arrival order), different orders in parallel; a lease that expires comes back. A dead letter
   * is unfinished: the later transactions of its order wait until it is replayed (and posted) or discarded.
   */
  claimPostings(limit: number, leaseMs: number, owner: string, now?: Date): Promise<PostingJob[]>;
  /**
   * Extends a lease that is still held by `owner` (the posting service renews it while the ERP call runs).
   * False when the lease is gone: expired and taken by another claim, or completed.
   */
  renewPosting(seq: number, owner: string, leaseMs: number, now?: Date): Promise<boolean>;
  /**
   * Applies an outcome; only the lease owner's outcome counts (a lease lost to expiry is ignored). An owner
   * names one claim, not a hub instance: a late outcome of an earlier claim never ends a later one.
   */
  completePosting(seq: number, owner: string, outcome: PostingOutcome, now?: Date): Promise<boolean>;

  /**
   * Failed (dead-lettered) transactions go back to the queue with a fresh retry budget; the next attempt
   * (attempt 2) still looks the key up first.
   */
  replay(seq: number, actor: string): Promise<boolean>;
  discard(seq: number, actor: string, reason: string): Promise<boolean>;

  outcomeOf(idempotencyKey: string): Promise<Outcome | undefined>;
  listTransactions(opts: { limit: number; state?: PostingState; plant?: string }): Promise<TransactionRow[]>;
  getTransaction(idempotencyKey: string): Promise<(TransactionRow & { body: Transaction }) | undefined>;
  listAgents(): Promise<AgentStatusRow[]>;
  counts(): Promise<Record<PostingState, number>>;

  /** Enrollment (issue 6): one-time tokens, redeemed once, before they expire, for a long-lived credential. */
  createEnrollment(e: NewEnrollment, actor: string): Promise<void>;
  /** Atomically: checks the token (unknown, used, expired, agent revoked), marks it used, stores the credential hash. */
  redeemEnrollment(tokenHash: string, credentialHash: string, now?: Date): Promise<RedeemResult>;
  /** Revokes at once: the credential and any unused enrollment token stop working. */
  revokeAgent(agentId: string, actor: string): Promise<boolean>;
  getAgent(agentId: string): Promise<AgentInfo | undefined>;
  listAgentInfo(): Promise<AgentInfo[]>;

  /** ERP outcomes (posted / failed) of one agent's transactions after `cursor`, oldest first. */
  outcomesSince(agentId: string, cursor: number, limit: number): Promise<{ items: OutcomeEvent[]; cursor: number }>;
  /** What happened to one transaction: received (agent, batch), posting attempts, outcome, replays. */
  lineage(idempotencyKey: string): Promise<{ transaction: TransactionRow & { body: Transaction; batchId: string | null }; events: LineageEvent[] } | undefined>;
  heartbeatHistory(agentId: string, limit: number): Promise<HeartbeatPoint[]>;

  audit(event: AuditEvent): Promise<void>;
  listAudit(limit: number): Promise<Array<AuditEvent & { at: string }>>;
}

/**
 * An item whose idempotency key is already stored for another plant. It is not that transaction's duplicate:
 * answering "duplicate" would hand its outcome (ERP document) to another plant's agent, and would let an
 * agent settle away another plant's transaction by sending its key first. Refused, item by item; the
 * stored transaction is untouched, and which plant holds the key is not said.
 */
export function keyOfAnotherPlant(tx: Transaction): ItemResult {
  return {
    id: tx.id,
    idempotencyKey: tx.idempotencyKey,
    status: 'rejected',
    code: 'PLANT_MISMATCH',
    reason: `idempotency key ${JSON.stringify(tx.idempotencyKey.slice(0, 120))} is already used by a transaction of another plant; not stored`,
  };
}

/** The posting order key: one work center's order posts strictly in arrival order. */
export function orderKeyOf(tx: Transaction): string {
  return `${tx.plant}:${tx.data.order}`;
}

export function quantityOf(tx: Transaction): { qty: number; uom: string } | undefined {
  const d = tx.data as { yield?: { qty: number; uom: string }; quantity?: { qty: number; uom: string } };
  return d.yield ?? d.quantity;
}

export function outcomeFromRow(row: { state: PostingState; erpRef: string | null; postedAt: string | null; errorCode: string | null; errorMessage: string | null }): Outcome {
  if (row.state === 'posted') return { state: 'posted', ...(row.erpRef ? { erpRef: row.erpRef } : {}), ...(row.postedAt ? { postedAt: row.postedAt } : {}) };
  if (row.state === 'failed' || row.state === 'discarded') {
    const code = asErrorCode(row.errorCode) ?? 'ERP_BUSINESS';
    return { state: 'failed', code, ...(row.errorMessage ? { message: row.errorMessage.slice(0, 1000) } : {}) };
  }
  return { state: 'pending' };
}

/** What the lineage keeps of a posting attempt. */
export function lineageDetail(o: PostingOutcome, owner: string): Record<string, unknown> {
  if (o.kind === 'posted') return { owner, erpRef: o.erpRef };
  if (o.kind === 'failed') return { owner, code: o.code, message: o.message.slice(0, 500), ...(o.erpCode ? { erpCode: o.erpCode } : {}) };
  return { owner, code: o.code, message: o.message.slice(0, 500), delayMs: o.delayMs, inDoubt: o.inDoubt };
}
