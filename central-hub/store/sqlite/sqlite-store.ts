import * as nodeFs from 'node:fs';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { AgentHeartbeat, ItemResult, Outcome, Transaction } from '../../../contracts/index.ts';
import { preparePrivateDatabase } from '../../../contracts/private-files.ts';
import {
  orderKeyOf,
  outcomeFromRow,
  keyOfAnotherPlant,
  quantityOf,
  lineageDetail,
  type AgentInfo,
  type AgentRecord,
  type AgentStatusRow,
  type HeartbeatPoint,
  type LineageEvent,
  type NewEnrollment,
  type OutcomeEvent,
  type RedeemRefusal,
  type RedeemResult,
  type AuditEvent,
  type DeadLetterHold,
  type HubStore,
  type LatencySample,
  type OpenOrder,
  type OrderTransaction,
  type ReconciliationRecord,
  type SlowPosting,
  type IngestMeta,
  type PostingJob,
  type PostingOutcome,
  type PostingState,
  type TransactionRow,
} from '../hub-store.ts';

/**
 * The embedded HubStore: one SQLite file, WAL, FULL sync (the hub's accept is a durable point). For one
 * hub process; several hub instances need the PostgreSQL store.
 */
const MIGRATIONS = [
  `
  CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    plants TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    revoked_at TEXT
  );
  CREATE TABLE transactions (
    seq INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    plant TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    work_center TEXT,
    order_no TEXT NOT NULL,
    order_key TEXT NOT NULL,
    qty REAL,
    uom TEXT,
    event_time TEXT NOT NULL,
    received_at TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    in_doubt INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER,
    erp_ref TEXT,
    posted_at TEXT,
    error_code TEXT,
    error_message TEXT
  );
  CREATE INDEX transactions_queue ON transactions(order_key, seq) WHERE state = 'queued';
  CREATE INDEX transactions_state ON transactions(state, seq);
  CREATE INDEX transactions_agent ON transactions(agent_id, seq);
  CREATE TABLE heartbeats (
    agent_id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    body TEXT NOT NULL
  );
  CREATE TABLE heartbeat_history (
    id INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL,
    received_at TEXT NOT NULL,
    pending INTEGER NOT NULL,
    dead_letters INTEGER NOT NULL,
    drivers_up INTEGER NOT NULL,
    drivers_total INTEGER NOT NULL
  );
  CREATE INDEX heartbeat_history_agent ON heartbeat_history(agent_id, id);
  CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT
  );
  `,
  // 2: enrollment, ERP outcomes for the agents, lineage events, batch ids
  `
  ALTER TABLE agents ADD COLUMN created_at TEXT;
  ALTER TABLE agents ADD COLUMN credential_at TEXT;
  ALTER TABLE transactions ADD COLUMN batch_id TEXT;
  CREATE TABLE enrollments (
    token_hash TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    plants TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at TEXT,
    revoked_at TEXT
  );
  CREATE INDEX enrollments_agent ON enrollments(agent_id);
  CREATE TABLE outcome_log (
    id INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    state TEXT NOT NULL,
    erp_ref TEXT,
    posted_at TEXT,
    error_code TEXT,
    error_message TEXT
  );
  CREATE INDEX outcome_log_agent ON outcome_log(agent_id, id);
  CREATE TABLE tx_events (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT
  );
  CREATE INDEX tx_events_seq ON tx_events(seq, id);
  `,
  // 3: a dead letter holds back the later transactions of its order until it is replayed or discarded
  `
  CREATE INDEX transactions_failed ON transactions(order_key, seq) WHERE state = 'failed';
  `,
  // 4: only an agent's newest enrollment token works (a new one, or an enrollment, supersedes the others)
  `
  ALTER TABLE enrollments ADD COLUMN superseded_at TEXT;
  `,
  // 5: business monitoring (issue #20): latency windows over posted transactions
  `
  CREATE INDEX transactions_posted ON transactions(posted_at) WHERE state = 'posted';
  CREATE INDEX transactions_order ON transactions(order_key, seq);
  CREATE INDEX transactions_received ON transactions(received_at);
  CREATE TABLE reconciliations (
    id INTEGER PRIMARY KEY,
    plant TEXT NOT NULL,
    order_no TEXT NOT NULL,
    at TEXT NOT NULL,
    status TEXT NOT NULL,
    findings INTEGER NOT NULL,
    detail TEXT NOT NULL
  );
  CREATE INDEX reconciliations_order ON reconciliations(plant, order_no, id);
  `,
];

/** `AND plant IN (...)` for a monitor query: `plants` null = every plant (the list goes as one JSON parameter) */
const plantFilter = (plants: readonly string[] | null, col = 'plant'): { sql: string; args: unknown[] } =>
  plants === null ? { sql: '', args: [] } : { sql: ` AND ${col} IN (SELECT value FROM json_each(?))`, args: [JSON.stringify(plants)] };

/** event time to ERP document in ms; NULL when a time does not parse (never negative: a clock ahead of the ERP's reads 0) */
const LATENCY_SQL = 'MAX(0, CAST(ROUND((julianday(posted_at) - julianday(event_time)) * 86400000.0) AS INTEGER))';

type Row = Record<string, any>;

function toTxRow(r: Row): TransactionRow {
  return {
    seq: r.seq,
    idempotencyKey: r.idempotency_key,
    type: r.type,
    plant: r.plant,
    agentId: r.agent_id,
    workCenter: r.work_center,
    order: r.order_no,
    quantity: r.qty,
    uom: r.uom,
    eventTime: r.event_time,
    receivedAt: r.received_at,
    state: r.state,
    attempts: r.attempts,
    inDoubt: r.in_doubt === 1,
    erpRef: r.erp_ref,
    postedAt: r.posted_at,
    errorCode: r.error_code,
    errorMessage: r.error_message,
  };
}

const types = new Map<string, string>();
/** `plantbridge.production-confirmation/1.0` -> `production-confirmation` (a handful of distinct values) */
function typeOf(schema: string): string {
  let t = types.get(schema);
  if (t === undefined) {
    t = schema.split('/')[0].replace('plantbridge.', '');
    if (types.size < 64) types.set(schema, t);
  }
  return t;
}

const CHECKPOINT_INTERVAL_MS = 1000;

export interface CheckpointerStart {
  /** 'starting': the hub stopped waiting for the thread (build-hub) */
  where: 'worker' | 'event-loop' | 'none' | 'starting';
  reason?: string;
}

/**
 * Where the checkpoint thread's code is: this folder's checkpoint-worker.ts by default; the single
 * executable's entry (installers/build/) hands in its bundled copy as code.
 */
export type CheckpointerSource = { file: URL } | { code: string };

const CHECKPOINT_WORKER: CheckpointerSource = { file: new URL('./checkpoint-worker.ts', import.meta.url) };

export class SqliteHubStore implements HubStore {
  readonly kind = 'sqlite' as const;
  private readonly db: Database.Database;
  private readonly s: ReturnType<SqliteHubStore['prepare']>;

  /**
   * `nativeBinding`: better-sqlite3's addon extracted by the single executable. `checkpointer`: where the
   * checkpoint thread's code is (the executable's asset, tests); by default checkpoint-worker.ts.
   */
  constructor(path: string, nativeBinding?: string, opts: { checkpointer?: CheckpointerSource } = {}) {
    preparePrivateDatabase(path, nodeFs);
    this.db = new Database(path, nativeBinding ? { nativeBinding } : undefined);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    // the inline auto-checkpoint halves batched inserts and stalls commits: checkpoint on a timer instead
    this.db.pragma('wal_autocheckpoint = 0');
    this.migrateSync();
    // Statement journals in memory, after the migrations (an index built over a large table would sort in
    // memory too). With the default, a statement after the first in a transaction spills its journal to a
    // new temp file past 64 KiB: opened, written and closed per ingest batch (seen with strace).
    this.db.pragma('temp_store = MEMORY');
    this.s = this.prepare();
    if (path !== ':memory:') this.startCheckpointer(path, nativeBinding, opts.checkpointer);
  }

  private checkpointTimer: NodeJS.Timeout | undefined;
  private checkpointWorker: Worker | undefined;

  /**
   * Checkpoints. A checkpoint copies the WAL's frames into the database file; on the drain benchmark that
   * took a quarter of the hub's event loop, which is what limits the hub's SQLite ingest. So a worker
   * thread with a connection of its own copies them every second (PASSIVE: it never waits for, nor blocks,
   * a commit), and then this connection runs a PASSIVE checkpoint too: it copies only what was committed
   * while the worker worked, and it completes (this connection is the only writer, and nothing commits
   * during it), so the next commit rewinds the WAL and the file stays at about one second of writes. The
   * worker cannot do that last step: a checkpoint it completes while this connection's commit is under way
   * leaves that transaction on an older snapshot, which does not rewind the WAL, and the next one finds new
   * frames (tried: under steady ingest the WAL grew to 837 MB on a 500k drain; sqlite-store.test.ts checks
   * that it rewinds). If the worker cannot run, this connection checkpoints every second as before.
   */
  private startCheckpointer(path: string, nativeBinding: string | undefined, source: CheckpointerSource | undefined): void {
    let started!: (r: CheckpointerStart) => void;
    this.checkpointerStart = new Promise((resolve) => (started = resolve));
    const onThisThread = (reason: string) => {
      this.checkpointWorker = undefined;
      started({ where: 'event-loop', reason });
      if (this.checkpointTimer || !this.db.open) return;
      this.checkpointTimer = setInterval(() => this.checkpointHere(), CHECKPOINT_INTERVAL_MS);
      this.checkpointTimer.unref();
    };
    let w: Worker;
    try {
      const src = source ?? CHECKPOINT_WORKER;
      const workerData = { path, nativeBinding, intervalMs: CHECKPOINT_INTERVAL_MS };
      w = 'file' in src ? new Worker(src.file, { workerData, name: 'hub-checkpoint' }) : new Worker(src.code, { eval: true, workerData, name: 'hub-checkpoint' });
    } catch (err) {
      return onThisThread((err as Error).message);
    }
    w.unref();
    let failure = 'the checkpoint thread ended';
    w.on('message', (m: { type: string }) => {
      if (m.type === 'ready') started({ where: 'worker' });
      if (m.type !== 'checkpointed') return;
      this.checkpoints.worker++;
      this.checkpointHere();
    });
    // a worker that fails (its code or its connection) or ends: this thread takes over
    w.on('error', (err) => (failure = err.message));
    w.on('exit', () => {
      if (this.checkpointWorker === w) onThisThread(failure);
    });
    this.checkpointWorker = w;
  }

  private checkpointerStart: Promise<CheckpointerStart> = Promise.resolve({ where: 'none' });

  /** Where checkpoints run once the checkpoint thread has started, or failed to (then with the reason). */
  checkpointerStarted(): Promise<CheckpointerStart> {
    return this.checkpointerStart;
  }

  /** checkpoints run so far: by the worker, and by this thread (the worker's follow-ups, or the timer's) */
  readonly checkpoints = { worker: 0, eventLoop: 0 };

  private checkpointHere(): void {
    try {
      if (!this.db.open) return;
      this.db.pragma('wal_checkpoint(PASSIVE)');
      this.checkpoints.eventLoop++;
    } catch {
      // busy or closing: the next tick tries again
    }
  }

  private migrateSync(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db
        .transaction(() => {
          this.db.exec(MIGRATIONS[v]);
          this.db.pragma(`user_version = ${v + 1}`);
        })
        .immediate();
    }
  }

  private prepare() {
    const db = this.db;
    return {
      insertTx: db.prepare(`INSERT INTO transactions(idempotency_key, id, type, plant, agent_id, work_center, order_no, order_key, qty, uom, event_time, received_at, body, batch_id)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(idempotency_key) DO NOTHING`),
      byKey: db.prepare('SELECT * FROM transactions WHERE idempotency_key = ?'),
      // a duplicate's answer needs its outcome only, not the row with its body
      outcomeByKey: db.prepare('SELECT plant, state, erp_ref, posted_at, error_code, error_message FROM transactions WHERE idempotency_key = ?'),
      claim: db.prepare(`SELECT t.seq, t.body, t.attempts, t.order_key, t.in_doubt, t.lease_owner FROM transactions t
        WHERE t.state = 'queued' AND t.next_attempt_at <= @now AND (t.lease_until IS NULL OR t.lease_until < @now)
          AND NOT EXISTS (SELECT 1 FROM transactions e WHERE e.state = 'queued' AND e.order_key = t.order_key AND e.seq < t.seq)
          AND NOT EXISTS (SELECT 1 FROM transactions f WHERE f.state = 'failed' AND f.order_key = t.order_key AND f.seq < t.seq)
        ORDER BY t.seq LIMIT @limit`),
      // a lease still set is an expired claim that left no outcome: its call may have reached the ERP
      lease: db.prepare('UPDATE transactions SET lease_owner = ?, lease_until = ?, attempts = attempts + 1, in_doubt = MAX(in_doubt, lease_owner IS NOT NULL) WHERE seq = ?'),
      // still ours (even past its end: a claim that took it over would have set its own owner)
      renew: db.prepare("UPDATE transactions SET lease_until = ? WHERE seq = ? AND state = 'queued' AND lease_owner = ?"),
      posted: db.prepare(`UPDATE transactions SET state = 'posted', erp_ref = ?, posted_at = ?, in_doubt = 0, lease_owner = NULL, lease_until = NULL,
        error_code = NULL, error_message = NULL WHERE seq = ? AND state = 'queued' AND lease_owner = ?`),
      // next_attempt_at: the earliest claim of an in-doubt dead letter's replay (see replay)
      failed: db.prepare(`UPDATE transactions SET state = 'failed', error_code = ?, error_message = ?, in_doubt = ?, next_attempt_at = ?, lease_owner = NULL, lease_until = NULL
        WHERE seq = ? AND state = 'queued' AND lease_owner = ?`),
      retry: db.prepare(`UPDATE transactions SET next_attempt_at = ?, in_doubt = ?, error_code = ?, error_message = ?, lease_owner = NULL, lease_until = NULL
        WHERE seq = ? AND state = 'queued' AND lease_owner = ?`),
      logOutcome: db.prepare(`INSERT INTO outcome_log(agent_id, idempotency_key, state, erp_ref, posted_at, error_code, error_message)
        SELECT agent_id, idempotency_key, state, erp_ref, posted_at, error_code, error_message FROM transactions WHERE seq = ?`),
      txEvent: db.prepare('INSERT INTO tx_events(seq, at, kind, detail) VALUES (?, ?, ?, ?)'),
      agentByHash: db.prepare('SELECT * FROM agents WHERE token_hash = ?'),
      heartbeat: db.prepare('INSERT INTO heartbeats(agent_id, received_at, body) VALUES (?, ?, ?) ON CONFLICT(agent_id) DO UPDATE SET received_at = excluded.received_at, body = excluded.body'),
      heartbeatHistory: db.prepare('INSERT INTO heartbeat_history(agent_id, received_at, pending, dead_letters, drivers_up, drivers_total) VALUES (?, ?, ?, ?, ?, ?)'),
      trimHistory: db.prepare('DELETE FROM heartbeat_history WHERE agent_id = ? AND id < (SELECT MIN(id) FROM (SELECT id FROM heartbeat_history WHERE agent_id = ? ORDER BY id DESC LIMIT 6000))'),
    };
  }

  private groupQueue: Array<{ fn: () => unknown; resolve: (v: any) => void; reject: (e: unknown) => void }> = [];
  private groupScheduled = false;

  /**
   * Group commit: writes that arrive in the same event-loop turn (many agents' requests, heartbeats,
   * posting outcomes) share one IMMEDIATE transaction and one fsync; each runs in its own savepoint, so
   * one failing write rolls back alone. Every promise resolves only after the commit is durable.
   */
  private group<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.groupQueue.push({ fn, resolve, reject });
      if (!this.groupScheduled) {
        this.groupScheduled = true;
        setImmediate(() => this.flushGroup());
      }
    });
  }

  private flushGroup(): void {
    this.groupScheduled = false;
    const group = this.groupQueue;
    this.groupQueue = [];
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      if (!this.db.open) throw new Error('hub store is closed');
      this.db
        .transaction(() => {
          for (const g of group) {
            try {
              outcomes.push({ ok: true, value: this.db.transaction(g.fn)() });
            } catch (error) {
              outcomes.push({ ok: false, error });
            }
          }
        })
        .immediate();
    } catch (err) {
      for (const g of group) g.reject(err);
      return;
    }
    group.forEach((g, i) => {
      const o = outcomes[i];
      if (o.ok) g.resolve(o.value);
      else g.reject(o.error);
    });
  }

  async migrate(): Promise<void> {
    this.migrateSync();
  }

  async close(): Promise<void> {
    clearInterval(this.checkpointTimer);
    this.checkpointTimer = undefined;
    const w = this.checkpointWorker;
    if (w) {
      this.checkpointWorker = undefined;
      const exited = new Promise((r) => w.once('exit', r));
      // referenced while it stops: an unreferenced worker would let the process end before close() returns
      w.ref();
      w.postMessage({ type: 'stop' });
      await exited;
    }
    if (this.groupQueue.length > 0) this.flushGroup();
    if (this.db.open) this.db.close();
  }

  async upsertAgent(a: AgentRecord): Promise<void> {
    this.db
      .prepare(
        'INSERT INTO agents(id, plants, token_hash, revoked_at) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET plants = excluded.plants, token_hash = excluded.token_hash, revoked_at = excluded.revoked_at',
      )
      .run(a.id, JSON.stringify(a.plants), a.tokenHash, a.revokedAt ?? null);
  }

  async findAgentByTokenHash(tokenHash: string): Promise<AgentRecord | undefined> {
    const r = this.s.agentByHash.get(tokenHash) as Row | undefined;
    if (!r) return undefined;
    return { id: r.id, plants: JSON.parse(r.plants), tokenHash: r.token_hash, ...(r.revoked_at ? { revokedAt: r.revoked_at } : {}) };
  }

  async ingest(agentId: string, items: Transaction[], receivedAt: Date, meta: IngestMeta = {}): Promise<ItemResult[]> {
    const at = receivedAt.toISOString();
    const batchId = meta.batchId ?? null;
    return this.group(() =>
        items.map((tx): ItemResult => {
          const q = quantityOf(tx);
          // positional parameters: better-sqlite3 binds them without a name lookup per value
          const r = this.s.insertTx.run(
            tx.idempotencyKey,
            tx.id,
            typeOf(tx.schema),
            tx.plant,
            agentId,
            tx.workCenter ?? null,
            tx.data.order,
            orderKeyOf(tx),
            q?.qty ?? null,
            q?.uom ?? null,
            tx.eventTime,
            at,
            JSON.stringify(tx),
            batchId,
          );
          if (r.changes === 1) return { id: tx.id, idempotencyKey: tx.idempotencyKey, status: 'accepted' };
          const e = this.s.outcomeByKey.get(tx.idempotencyKey) as Row;
          if (e.plant !== tx.plant) return keyOfAnotherPlant(tx);
          const outcome = outcomeFromRow({ state: e.state, erpRef: e.erp_ref, postedAt: e.posted_at, errorCode: e.error_code, errorMessage: e.error_message });
          return { id: tx.id, idempotencyKey: tx.idempotencyKey, status: 'duplicate', outcome };
        }),
    );
  }

  async recordHeartbeat(hb: AgentHeartbeat, receivedAt: Date): Promise<void> {
    const at = receivedAt.toISOString();
    return this.group(() => {
      this.s.heartbeat.run(hb.agentId, at, JSON.stringify(hb));
      this.s.heartbeatHistory.run(hb.agentId, at, hb.outbox.pending, hb.outbox.deadLetters, hb.drivers.filter((d) => d.state === 'up').length, hb.drivers.length);
      // keep about a day of history per agent at 15 s intervals (trimmed now and then, not on every beat)
      if (Math.random() < 0.02) this.s.trimHistory.run(hb.agentId, hb.agentId);
    });
  }

  async claimPostings(limit: number, leaseMs: number, owner: string, now = new Date()): Promise<PostingJob[]> {
    const t = now.getTime();
    return this.db
      .transaction(() => {
        const rows = this.s.claim.all({ now: t, limit }) as Row[];
        return rows.map((r) => {
          this.s.lease.run(owner, t + leaseMs, r.seq);
          return { seq: r.seq, tx: JSON.parse(r.body) as Transaction, attempt: r.attempts + 1, orderKey: r.order_key, inDoubt: r.in_doubt === 1 || r.lease_owner !== null };
        });
      })
      .immediate();
  }

  async renewPosting(seq: number, owner: string, leaseMs: number, now = new Date()): Promise<boolean> {
    const t = now.getTime();
    return this.s.renew.run(t + leaseMs, seq, owner).changes === 1;
  }

  async completePosting(seq: number, owner: string, o: PostingOutcome, now = new Date()): Promise<boolean> {
    return this.group(() => {
        let r;
        if (o.kind === 'posted') r = this.s.posted.run(o.erpRef, now.toISOString(), seq, owner);
        else if (o.kind === 'failed') r = this.s.failed.run(o.code, o.erpCode ? `${o.erpCode}: ${o.message}` : o.message, o.code === 'ERP_IN_DOUBT' ? 1 : 0, now.getTime() + Math.max(0, o.lookUpAfterMs ?? 0), seq, owner);
        else r = this.s.retry.run(now.getTime() + o.delayMs, o.inDoubt ? 1 : 0, o.code, o.message, seq, owner);
        if (r.changes !== 1) return false;
        if (o.kind !== 'retry') this.s.logOutcome.run(seq);
        this.s.txEvent.run(seq, now.toISOString(), `posting.${o.kind}`, JSON.stringify(lineageDetail(o, owner)));
        return true;
      });
  }

  async replay(seq: number, actor: string): Promise<boolean> {
    return this.db
      .transaction(() => {
        const r = this.db
          // a fresh retry budget; attempts = 1 keeps the next one (2) a lookup before any post. An in-doubt dead
          // letter keeps the next_attempt_at it was given: not looked up before posting.inDoubtWait has passed
          .prepare("UPDATE transactions SET state = 'queued', next_attempt_at = CASE WHEN in_doubt = 1 THEN next_attempt_at ELSE 0 END, attempts = 1 WHERE seq = ? AND state = 'failed'")
          .run(seq);
        if (r.changes === 1) {
          this.auditSync({ actor, action: 'dead-letter.replay', target: String(seq) });
          this.s.txEvent.run(seq, new Date().toISOString(), 'replay', JSON.stringify({ actor }));
        }
        return r.changes === 1;
      })
      .immediate();
  }

  async discard(seq: number, actor: string, reason: string): Promise<boolean> {
    return this.db
      .transaction(() => {
        const r = this.db.prepare("UPDATE transactions SET state = 'discarded' WHERE seq = ? AND state = 'failed'").run(seq);
        if (r.changes === 1) {
          this.auditSync({ actor, action: 'dead-letter.discard', target: String(seq), detail: { reason } });
          this.s.txEvent.run(seq, new Date().toISOString(), 'discard', JSON.stringify({ actor, reason }));
          this.s.logOutcome.run(seq);
        }
        return r.changes === 1;
      })
      .immediate();
  }

  async outcomeOf(key: string): Promise<Outcome | undefined> {
    const r = this.s.byKey.get(key) as Row | undefined;
    return r ? outcomeFromRow(toTxRow(r)) : undefined;
  }

  async listTransactions(opts: { limit: number; state?: PostingState; plant?: string }): Promise<TransactionRow[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (opts.state) {
      where.push('state = ?');
      args.push(opts.state);
    }
    if (opts.plant) {
      where.push('plant = ?');
      args.push(opts.plant);
    }
    const sql = `SELECT * FROM transactions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ?`;
    return (this.db.prepare(sql).all(...args, opts.limit) as Row[]).map(toTxRow);
  }

  async getTransaction(key: string): Promise<(TransactionRow & { body: Transaction }) | undefined> {
    const r = this.s.byKey.get(key) as Row | undefined;
    return r ? { ...toTxRow(r), body: JSON.parse(r.body) } : undefined;
  }

  async listAgents(): Promise<AgentStatusRow[]> {
    const rows = this.db
      .prepare(`SELECT a.id, a.plants, h.received_at, h.body, (SELECT COUNT(*) FROM transactions t WHERE t.agent_id = a.id) AS n
        FROM agents a LEFT JOIN heartbeats h ON h.agent_id = a.id WHERE a.revoked_at IS NULL ORDER BY a.id`)
      .all() as Row[];
    return rows.map((r) => ({
      id: r.id,
      plants: JSON.parse(r.plants),
      lastHeartbeatAt: r.received_at ?? null,
      heartbeat: r.body ? JSON.parse(r.body) : null,
      transactions: r.n,
    }));
  }

  async counts(): Promise<Record<PostingState, number>> {
    const out: Record<PostingState, number> = { queued: 0, posted: 0, failed: 0, discarded: 0 };
    for (const r of this.db.prepare('SELECT state, COUNT(*) AS n FROM transactions GROUP BY state').all() as Row[]) out[r.state as PostingState] = r.n;
    return out;
  }

  async createEnrollment(e: NewEnrollment, actor: string): Promise<void> {
    this.db
      .transaction(() => {
        const at = new Date().toISOString();
        // a rotation's new token replaces the unused ones: a leaked older token cannot take the agent over
        this.db.prepare('UPDATE enrollments SET superseded_at = ? WHERE agent_id = ? AND used_at IS NULL AND revoked_at IS NULL AND superseded_at IS NULL').run(at, e.agentId);
        this.db
          .prepare('INSERT INTO enrollments(token_hash, agent_id, plants, created_at, expires_at) VALUES (?, ?, ?, ?, ?)')
          .run(e.tokenHash, e.agentId, JSON.stringify(e.plants), at, e.expiresAt.getTime());
        this.auditSync({ actor, action: 'agent.enrollment_created', target: e.agentId, detail: { plants: e.plants, expiresAt: e.expiresAt.toISOString() } });
      })
      .immediate();
  }

  async redeemEnrollment(tokenHash: string, credentialHash: string, now = new Date()): Promise<RedeemResult> {
    return this.db
      .transaction((): RedeemResult => {
        const e = this.db.prepare('SELECT * FROM enrollments WHERE token_hash = ?').get(tokenHash) as Row | undefined;
        const refuse = (reason: RedeemRefusal): RedeemResult => {
          this.auditSync({ actor: e ? `agent:${e.agent_id}` : 'unknown', action: 'agent.enrollment_refused', ...(e ? { target: e.agent_id } : {}), detail: { reason } });
          return { ok: false, reason };
        };
        if (!e) return refuse('unknown');
        if (e.used_at) return refuse('used');
        if (e.revoked_at) return refuse('revoked');
        if (e.superseded_at) return refuse('superseded');
        if (e.expires_at <= now.getTime()) return refuse('expired');
        const at = now.toISOString();
        this.db.prepare('UPDATE enrollments SET used_at = ? WHERE token_hash = ?').run(at, tokenHash);
        this.db.prepare('UPDATE enrollments SET superseded_at = ? WHERE agent_id = ? AND token_hash <> ? AND used_at IS NULL AND superseded_at IS NULL').run(at, e.agent_id, tokenHash);
        this.db
          .prepare(`INSERT INTO agents(id, plants, token_hash, revoked_at, created_at, credential_at) VALUES (?, ?, ?, NULL, ?, ?)
            ON CONFLICT(id) DO UPDATE SET plants = excluded.plants, token_hash = excluded.token_hash, revoked_at = NULL, credential_at = excluded.credential_at`)
          .run(e.agent_id, e.plants, credentialHash, at, at);
        this.auditSync({ actor: `agent:${e.agent_id}`, action: 'agent.enrolled', target: e.agent_id, detail: { plants: JSON.parse(e.plants) } });
        return { ok: true, agent: { id: e.agent_id, plants: JSON.parse(e.plants), tokenHash: credentialHash } };
      })
      .immediate();
  }

  async revokeAgent(agentId: string, actor: string): Promise<boolean> {
    return this.db
      .transaction(() => {
        const at = new Date().toISOString();
        const a = this.db.prepare('UPDATE agents SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(at, agentId).changes;
        const e = this.db.prepare('UPDATE enrollments SET revoked_at = ? WHERE agent_id = ? AND used_at IS NULL AND revoked_at IS NULL').run(at, agentId).changes;
        if (a + e > 0) this.auditSync({ actor, action: 'agent.revoked', target: agentId, detail: { credential: a > 0, enrollmentTokens: e } });
        return a + e > 0;
      })
      .immediate();
  }

  private agentInfoRows(where: string, ...args: unknown[]): AgentInfo[] {
    const now = Date.now();
    const rows = this.db
      .prepare(
        `SELECT ids.id,
           a.plants AS a_plants, a.created_at, a.credential_at, a.revoked_at, h.received_at,
           (SELECT plants FROM enrollments e WHERE e.agent_id = ids.id ORDER BY created_at DESC LIMIT 1) AS e_plants,
           (SELECT MIN(created_at) FROM enrollments e WHERE e.agent_id = ids.id) AS e_created,
           (SELECT COUNT(*) FROM enrollments e WHERE e.agent_id = ids.id AND used_at IS NULL AND revoked_at IS NULL AND superseded_at IS NULL AND expires_at > ?) AS pending
         FROM (SELECT id FROM agents UNION SELECT agent_id AS id FROM enrollments) ids
         LEFT JOIN agents a ON a.id = ids.id LEFT JOIN heartbeats h ON h.agent_id = ids.id ${where} ORDER BY ids.id`,
      )
      .all(now, ...args) as Row[];
    return rows.map((r) => ({
      id: r.id,
      plants: JSON.parse(r.a_plants ?? r.e_plants ?? '[]'),
      enrolled: r.a_plants !== null,
      createdAt: r.created_at ?? r.e_created ?? new Date(0).toISOString(),
      credentialAt: r.credential_at ?? null,
      revokedAt: r.revoked_at ?? null,
      lastHeartbeatAt: r.received_at ?? null,
      pendingEnrollments: r.pending,
    }));
  }

  async getAgent(agentId: string): Promise<AgentInfo | undefined> {
    return this.agentInfoRows('WHERE ids.id = ?', agentId)[0];
  }

  async listAgentInfo(): Promise<AgentInfo[]> {
    return this.agentInfoRows('');
  }

  async outcomesSince(agentId: string, cursor: number, limit: number): Promise<{ items: OutcomeEvent[]; cursor: number }> {
    const rows = this.db.prepare('SELECT * FROM outcome_log WHERE agent_id = ? AND id > ? ORDER BY id LIMIT ?').all(agentId, cursor, limit) as Row[];
    const items = rows.map((r) => ({
      cursor: r.id,
      idempotencyKey: r.idempotency_key,
      outcome: outcomeFromRow({ state: r.state, erpRef: r.erp_ref, postedAt: r.posted_at, errorCode: r.error_code, errorMessage: r.error_message }),
    }));
    return { items, cursor: items.length ? items[items.length - 1].cursor : cursor };
  }

  async lineage(key: string): Promise<{ transaction: TransactionRow & { body: Transaction; batchId: string | null }; events: LineageEvent[] } | undefined> {
    const r = this.s.byKey.get(key) as Row | undefined;
    if (!r) return undefined;
    const events: LineageEvent[] = [{ at: r.received_at, kind: 'received', detail: { agentId: r.agent_id, batchId: r.batch_id } }];
    for (const e of this.db.prepare('SELECT * FROM tx_events WHERE seq = ? ORDER BY id').all(r.seq) as Row[]) {
      events.push({ at: e.at, kind: e.kind, ...(e.detail ? { detail: JSON.parse(e.detail) } : {}) });
    }
    return { transaction: { ...toTxRow(r), body: JSON.parse(r.body), batchId: r.batch_id ?? null }, events };
  }

  async heartbeatHistory(agentId: string, limit: number): Promise<HeartbeatPoint[]> {
    const rows = this.db.prepare('SELECT * FROM heartbeat_history WHERE agent_id = ? ORDER BY id DESC LIMIT ?').all(agentId, limit) as Row[];
    return rows.reverse().map((r) => ({ receivedAt: r.received_at, pending: r.pending, deadLetters: r.dead_letters, driversUp: r.drivers_up, driversTotal: r.drivers_total }));
  }

  private auditSync(e: AuditEvent): void {
    this.db
      .prepare('INSERT INTO audit(at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)')
      .run(new Date().toISOString(), e.actor, e.action, e.target ?? null, e.detail === undefined ? null : JSON.stringify(e.detail));
  }

  async audit(e: AuditEvent): Promise<void> {
    this.auditSync(e);
  }

  async listAudit(limit: number): Promise<Array<AuditEvent & { at: string }>> {
    return (this.db.prepare('SELECT * FROM audit ORDER BY id DESC LIMIT ?').all(limit) as Row[]).map((r) => ({
      at: r.at,
      actor: r.actor,
      action: r.action,
      ...(r.target ? { target: r.target } : {}),
      ...(r.detail ? { detail: JSON.parse(r.detail) } : {}),
    }));
  }
  async postingLatencies(opts: { since: Date; plants: readonly string[] | null }): Promise<LatencySample[]> {
    const f = plantFilter(opts.plants);
    const rows = this.db
      .prepare(`SELECT plant, type, ${LATENCY_SQL} AS ms FROM transactions WHERE state = 'posted' AND posted_at >= ?${f.sql}`)
      .raw()
      .all(opts.since.toISOString(), ...f.args) as Array<[string, string, number | null]>;
    const out: LatencySample[] = [];
    for (const [plant, type, ms] of rows) if (ms !== null) out.push({ plant, type, latencyMs: ms });
    return out;
  }

  async slowPostings(opts: { since: Date; plant: string; type: string; overMs: number; limit: number }): Promise<SlowPosting[]> {
    const rows = this.db
      .prepare(
        `SELECT * FROM (SELECT seq, idempotency_key, plant, type, work_center, order_no, posted_at, ${LATENCY_SQL} AS ms FROM transactions
           WHERE state = 'posted' AND posted_at >= ? AND plant = ? AND type = ?) WHERE ms > ? ORDER BY ms DESC, seq LIMIT ?`,
      )
      .all(opts.since.toISOString(), opts.plant, opts.type, opts.overMs, opts.limit) as Row[];
    return rows.map((r) => ({ seq: r.seq, idempotencyKey: r.idempotency_key, plant: r.plant, type: r.type, workCenter: r.work_center, order: r.order_no, latencyMs: r.ms, postedAt: r.posted_at }));
  }

  async openOrders(opts: { receivedBefore: Date; plants: readonly string[] | null; limit: number; keysPerOrder: number }): Promise<OpenOrder[]> {
    const f = plantFilter(opts.plants);
    const groups = this.db
      .prepare(
        `SELECT plant, order_no, order_key, MIN(work_center) AS work_center, COUNT(*) AS n, SUM(in_doubt) AS in_doubt, MIN(received_at) AS oldest
         FROM transactions WHERE state = 'queued' AND received_at < ?${f.sql} GROUP BY order_key ORDER BY oldest, order_key LIMIT ?`,
      )
      .all(opts.receivedBefore.toISOString(), ...f.args, opts.limit) as Row[];
    const keys = this.db.prepare("SELECT seq, idempotency_key, received_at, in_doubt FROM transactions WHERE state = 'queued' AND order_key = ? ORDER BY seq LIMIT ?");
    return groups.map((g) => ({
      plant: g.plant,
      order: g.order_no,
      workCenter: g.work_center,
      queued: g.n,
      inDoubt: g.in_doubt,
      oldestReceivedAt: g.oldest,
      keys: (keys.all(g.order_key, opts.keysPerOrder) as Row[]).map((k) => ({ seq: k.seq, idempotencyKey: k.idempotency_key, receivedAt: k.received_at, inDoubt: k.in_doubt === 1 })),
    }));
  }

  async orderActivity(opts: { plant: string; orders: readonly string[] }): Promise<Array<{ order: string; transactions: number; firstEventTime: string }>> {
    if (opts.orders.length === 0) return [];
    const rows = this.db
      .prepare('SELECT order_no, COUNT(*) AS n, MIN(event_time) AS first FROM transactions WHERE order_key IN (SELECT value FROM json_each(?)) GROUP BY order_no')
      .all(JSON.stringify(opts.orders.map((o) => `${opts.plant}:${o}`))) as Row[];
    return rows.map((r) => ({ order: r.order_no, transactions: r.n, firstEventTime: r.first }));
  }

  async orderTransactions(opts: { plant: string; order: string; limit: number }): Promise<OrderTransaction[]> {
    const rows = this.db
      .prepare(
        `SELECT idempotency_key, type, work_center, json_extract(body, '$.data.operation') AS operation, state, qty, uom, erp_ref
         FROM transactions WHERE order_key = ? ORDER BY seq LIMIT ?`,
      )
      .all(`${opts.plant}:${opts.order}`, opts.limit) as Row[];
    return rows.map((r) => ({ idempotencyKey: r.idempotency_key, type: r.type, workCenter: r.work_center, operation: typeof r.operation === 'string' ? r.operation : null, state: r.state, quantity: r.qty, uom: r.uom, erpRef: r.erp_ref }));
  }

  async activeOrders(opts: { since: Date; plants: readonly string[] | null; limit: number }): Promise<Array<{ plant: string; order: string; lastReceivedAt: string }>> {
    const f = plantFilter(opts.plants);
    const rows = this.db
      .prepare(`SELECT plant, order_no, MAX(received_at) AS last FROM transactions WHERE received_at >= ?${f.sql} GROUP BY plant, order_no ORDER BY last DESC, plant, order_no LIMIT ?`)
      .all(opts.since.toISOString(), ...f.args, opts.limit) as Row[];
    return rows.map((r) => ({ plant: r.plant, order: r.order_no, lastReceivedAt: r.last }));
  }

  async saveReconciliation(r: Omit<ReconciliationRecord, 'id'>): Promise<number> {
    return this.group(() => Number(this.db.prepare('INSERT INTO reconciliations(plant, order_no, at, status, findings, detail) VALUES (?, ?, ?, ?, ?, ?)').run(r.plant, r.order, r.at, r.status, r.findings, JSON.stringify(r.detail)).lastInsertRowid));
  }

  async listReconciliations(opts: { plants: readonly string[] | null; order?: string; limit: number; offset: number }): Promise<{ total: number; items: ReconciliationRecord[] }> {
    const f = plantFilter(opts.plants);
    const where = `WHERE 1 = 1${f.sql}${opts.order !== undefined ? ' AND order_no = ?' : ''}`;
    const args = [...f.args, ...(opts.order !== undefined ? [opts.order] : [])];
    const total = (this.db.prepare(`SELECT COUNT(*) AS n FROM reconciliations ${where}`).get(...args) as Row).n as number;
    const rows = this.db.prepare(`SELECT * FROM reconciliations ${where} ORDER BY id DESC LIMIT ? OFFSET ?`).all(...args, opts.limit, opts.offset) as Row[];
    return { total, items: rows.map((r) => ({ id: r.id, plant: r.plant, order: r.order_no, at: r.at, status: r.status, findings: r.findings, detail: JSON.parse(r.detail) })) };
  }

  async deadLetterHolds(opts: { plants: readonly string[] | null; limit: number }): Promise<DeadLetterHold[]> {
    const f = plantFilter(opts.plants, 'f.plant');
    const rows = this.db
      .prepare(
        `SELECT f.seq, f.idempotency_key, f.plant, f.type, f.work_center, f.order_no, f.error_code, f.error_message, f.received_at, f.in_doubt,
           (SELECT COUNT(*) FROM transactions q WHERE q.state = 'queued' AND q.order_key = f.order_key AND q.seq > f.seq) AS held,
           (SELECT MIN(received_at) FROM transactions q WHERE q.state = 'queued' AND q.order_key = f.order_key AND q.seq > f.seq) AS oldest_held
         FROM transactions f WHERE f.state = 'failed'${f.sql} ORDER BY held DESC, f.seq LIMIT ?`,
      )
      .all(...f.args, opts.limit) as Row[];
    return rows.map((r) => ({
      seq: r.seq,
      idempotencyKey: r.idempotency_key,
      plant: r.plant,
      type: r.type,
      workCenter: r.work_center,
      order: r.order_no,
      errorCode: r.error_code,
      errorMessage: r.error_message,
      receivedAt: r.received_at,
      inDoubt: r.in_doubt === 1,
      heldBack: r.held,
      oldestHeldBackAt: r.oldest_held ?? null,
    }));
  }
}
