import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { AgentHeartbeat, ItemResult, Outcome, Transaction } from '../../../contracts/index.ts';
import {
  orderKeyOf,
  outcomeFromRow,
  quantityOf,
  type AgentRecord,
  type AgentStatusRow,
  type AuditEvent,
  type HubStore,
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
];

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

export class SqliteHubStore implements HubStore {
  readonly kind = 'sqlite' as const;
  private readonly db: Database.Database;
  private readonly s: ReturnType<SqliteHubStore['prepare']>;

  constructor(path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.migrateSync();
    this.s = this.prepare();
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
      insertTx: db.prepare(`INSERT INTO transactions(idempotency_key, id, type, plant, agent_id, work_center, order_no, order_key, qty, uom, event_time, received_at, body)
        VALUES (@key, @id, @type, @plant, @agentId, @workCenter, @order, @orderKey, @qty, @uom, @eventTime, @receivedAt, @body)
        ON CONFLICT(idempotency_key) DO NOTHING`),
      byKey: db.prepare('SELECT * FROM transactions WHERE idempotency_key = ?'),
      claim: db.prepare(`SELECT t.seq, t.body, t.attempts, t.order_key FROM transactions t
        WHERE t.state = 'queued' AND t.next_attempt_at <= @now AND (t.lease_until IS NULL OR t.lease_until < @now)
          AND NOT EXISTS (SELECT 1 FROM transactions e WHERE e.state = 'queued' AND e.order_key = t.order_key AND e.seq < t.seq)
        ORDER BY t.seq LIMIT @limit`),
      lease: db.prepare('UPDATE transactions SET lease_owner = ?, lease_until = ?, attempts = attempts + 1 WHERE seq = ?'),
      posted: db.prepare(`UPDATE transactions SET state = 'posted', erp_ref = ?, posted_at = ?, in_doubt = 0, lease_owner = NULL, lease_until = NULL,
        error_code = NULL, error_message = NULL WHERE seq = ? AND state = 'queued' AND lease_owner = ?`),
      failed: db.prepare(`UPDATE transactions SET state = 'failed', error_code = ?, error_message = ?, lease_owner = NULL, lease_until = NULL
        WHERE seq = ? AND state = 'queued' AND lease_owner = ?`),
      retry: db.prepare(`UPDATE transactions SET next_attempt_at = ?, in_doubt = MAX(in_doubt, ?), error_code = ?, error_message = ?, lease_owner = NULL, lease_until = NULL
        WHERE seq = ? AND state = 'queued' AND lease_owner = ?`),
    };
  }

  async migrate(): Promise<void> {
    this.migrateSync();
  }

  async close(): Promise<void> {
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
    const r = this.db.prepare('SELECT * FROM agents WHERE token_hash = ?').get(tokenHash) as Row | undefined;
    if (!r) return undefined;
    return { id: r.id, plants: JSON.parse(r.plants), tokenHash: r.token_hash, ...(r.revoked_at ? { revokedAt: r.revoked_at } : {}) };
  }

  async ingest(agentId: string, items: Transaction[], receivedAt: Date): Promise<ItemResult[]> {
    const at = receivedAt.toISOString();
    return this.db
      .transaction(() =>
        items.map((tx): ItemResult => {
          const q = quantityOf(tx);
          const r = this.s.insertTx.run({
            key: tx.idempotencyKey,
            id: tx.id,
            type: tx.schema.split('/')[0].replace('plantbridge.', ''),
            plant: tx.plant,
            agentId,
            workCenter: tx.workCenter ?? null,
            order: tx.data.order,
            orderKey: orderKeyOf(tx),
            qty: q?.qty ?? null,
            uom: q?.uom ?? null,
            eventTime: tx.eventTime,
            receivedAt: at,
            body: JSON.stringify(tx),
          });
          if (r.changes === 1) return { id: tx.id, idempotencyKey: tx.idempotencyKey, status: 'accepted' };
          const existing = toTxRow(this.s.byKey.get(tx.idempotencyKey) as Row);
          return { id: tx.id, idempotencyKey: tx.idempotencyKey, status: 'duplicate', outcome: outcomeFromRow(existing) };
        }),
      )
      .immediate();
  }

  async recordHeartbeat(hb: AgentHeartbeat, receivedAt: Date): Promise<void> {
    const at = receivedAt.toISOString();
    this.db
      .transaction(() => {
        this.db
          .prepare('INSERT INTO heartbeats(agent_id, received_at, body) VALUES (?, ?, ?) ON CONFLICT(agent_id) DO UPDATE SET received_at = excluded.received_at, body = excluded.body')
          .run(hb.agentId, at, JSON.stringify(hb));
        this.db
          .prepare('INSERT INTO heartbeat_history(agent_id, received_at, pending, dead_letters, drivers_up, drivers_total) VALUES (?, ?, ?, ?, ?, ?)')
          .run(hb.agentId, at, hb.outbox.pending, hb.outbox.deadLetters, hb.drivers.filter((d) => d.state === 'up').length, hb.drivers.length);
        // keep about a day of history per agent at 15 s intervals
        this.db.prepare('DELETE FROM heartbeat_history WHERE agent_id = ? AND id < (SELECT MIN(id) FROM (SELECT id FROM heartbeat_history WHERE agent_id = ? ORDER BY id DESC LIMIT 6000))').run(hb.agentId, hb.agentId);
      })
      .immediate();
  }

  async claimPostings(limit: number, leaseMs: number, owner: string, now = new Date()): Promise<PostingJob[]> {
    const t = now.getTime();
    return this.db
      .transaction(() => {
        const rows = this.s.claim.all({ now: t, limit }) as Row[];
        return rows.map((r) => {
          this.s.lease.run(owner, t + leaseMs, r.seq);
          return { seq: r.seq, tx: JSON.parse(r.body) as Transaction, attempt: r.attempts + 1, orderKey: r.order_key };
        });
      })
      .immediate();
  }

  async completePosting(seq: number, owner: string, o: PostingOutcome, now = new Date()): Promise<boolean> {
    let r;
    if (o.kind === 'posted') r = this.s.posted.run(o.erpRef, now.toISOString(), seq, owner);
    else if (o.kind === 'failed') r = this.s.failed.run(o.code, o.erpCode ? `${o.erpCode}: ${o.message}` : o.message, seq, owner);
    else r = this.s.retry.run(now.getTime() + o.delayMs, o.inDoubt ? 1 : 0, o.code, o.message, seq, owner);
    return r.changes === 1;
  }

  async replay(seq: number, actor: string): Promise<boolean> {
    return this.db
      .transaction(() => {
        const r = this.db
          .prepare("UPDATE transactions SET state = 'queued', next_attempt_at = 0, attempts = CASE WHEN attempts > 0 THEN attempts ELSE 0 END WHERE seq = ? AND state = 'failed'")
          .run(seq);
        if (r.changes === 1) this.auditSync({ actor, action: 'dead-letter.replay', target: String(seq) });
        return r.changes === 1;
      })
      .immediate();
  }

  async discard(seq: number, actor: string, reason: string): Promise<boolean> {
    return this.db
      .transaction(() => {
        const r = this.db.prepare("UPDATE transactions SET state = 'discarded' WHERE seq = ? AND state = 'failed'").run(seq);
        if (r.changes === 1) this.auditSync({ actor, action: 'dead-letter.discard', target: String(seq), detail: { reason } });
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
}
