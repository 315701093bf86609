import { userInfo } from 'node:os';
import pg from 'pg';
import type { AgentHeartbeat, ItemResult, Outcome, Transaction } from '../../../contracts/index.ts';
import {
  lineageDetail,
  orderKeyOf,
  outcomeFromRow,
  keyOfAnotherPlant,
  quantityOf,
  type AgentInfo,
  type AgentRecord,
  type AgentStatusRow,
  type AuditEvent,
  type DeadLetterHold,
  type HeartbeatPoint,
  type LatencySample,
  type OpenOrder,
  type OrderTransaction,
  type ReconciliationRecord,
  type SlowPosting,
  type HubStore,
  type IngestMeta,
  type LineageEvent,
  type NewEnrollment,
  type OutcomeEvent,
  type PostingJob,
  type PostingOutcome,
  type PostingState,
  type RedeemRefusal,
  type RedeemResult,
  type TransactionRow,
} from '../hub-store.ts';

/**
 * The scale-out HubStore: PostgreSQL, shared by several stateless hub instances. Idempotency is the
 * UNIQUE index on idempotency_key; posting work is shared with `FOR UPDATE SKIP LOCKED` on the head of
 * each order (so one order still posts in arrival order), and a lease that expires comes back. Lease ends
 * and retry times are by the database's clock: the instances' own clocks may differ.
 *
 * Migrations are versioned in `schema_migrations` and run under an advisory lock, so instances starting
 * at once apply each one exactly once.
 */
const MIGRATIONS: string[] = [
  `
  CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    plants JSONB NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    revoked_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    credential_at TIMESTAMPTZ
  );
  CREATE TABLE transactions (
    seq BIGSERIAL PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    plant TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    batch_id TEXT,
    work_center TEXT,
    order_no TEXT NOT NULL,
    order_key TEXT NOT NULL,
    qty DOUBLE PRECISION,
    uom TEXT,
    event_time TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    in_doubt BOOLEAN NOT NULL DEFAULT false,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT,
    erp_ref TEXT,
    posted_at TIMESTAMPTZ,
    error_code TEXT,
    error_message TEXT
  );
  CREATE INDEX transactions_queue ON transactions(order_key, seq) WHERE state = 'queued';
  CREATE INDEX transactions_state ON transactions(state, seq);
  CREATE INDEX transactions_agent ON transactions(agent_id, seq);
  CREATE TABLE heartbeats (
    agent_id TEXT PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL,
    body TEXT NOT NULL
  );
  CREATE TABLE heartbeat_history (
    id BIGSERIAL PRIMARY KEY,
    agent_id TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    pending BIGINT NOT NULL,
    dead_letters BIGINT NOT NULL,
    drivers_up INTEGER NOT NULL,
    drivers_total INTEGER NOT NULL
  );
  CREATE INDEX heartbeat_history_agent ON heartbeat_history(agent_id, id);
  CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail JSONB
  );
  CREATE TABLE enrollments (
    token_hash TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    plants JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
  );
  CREATE INDEX enrollments_agent ON enrollments(agent_id);
  CREATE TABLE outcome_log (
    id BIGSERIAL PRIMARY KEY,
    agent_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    state TEXT NOT NULL,
    erp_ref TEXT,
    posted_at TIMESTAMPTZ,
    error_code TEXT,
    error_message TEXT
  );
  CREATE INDEX outcome_log_agent ON outcome_log(agent_id, id);
  CREATE TABLE tx_events (
    id BIGSERIAL PRIMARY KEY,
    seq BIGINT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    kind TEXT NOT NULL,
    detail JSONB
  );
  CREATE INDEX tx_events_seq ON tx_events(seq, id);
  `,
  // 3: a dead letter holds back the later transactions of its order until it is replayed or discarded
  `
  CREATE INDEX transactions_failed ON transactions(order_key, seq) WHERE state = 'failed';
  `,
  // 4: only an agent's newest enrollment token works (a new one, or an enrollment, supersedes the others)
  `
  ALTER TABLE enrollments ADD COLUMN superseded_at TIMESTAMPTZ;
  `,
  // 5: business monitoring (issue #20): latency windows over posted transactions
  `
  CREATE INDEX transactions_posted ON transactions(posted_at) WHERE state = 'posted';
  CREATE INDEX transactions_order ON transactions(order_key, seq);
  CREATE INDEX transactions_received ON transactions(received_at);
  CREATE TABLE reconciliations (
    id BIGSERIAL PRIMARY KEY,
    plant TEXT NOT NULL,
    order_no TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    status TEXT NOT NULL,
    findings INTEGER NOT NULL,
    detail JSONB NOT NULL
  );
  CREATE INDEX reconciliations_order ON reconciliations(plant, order_no, id);
  `,
];

/** event time to ERP document in ms (never negative: an agent clock ahead of the ERP's reads 0) */
const LATENCY_SQL = 'GREATEST(0, round(extract(epoch FROM (posted_at - event_time::timestamptz)) * 1000))::bigint';

/** A stable 64-bit key for pg_advisory_xact_lock: "plantbridge-hub-migrate". */
const MIGRATE_LOCK = 7_305_812_447_001;
/** Held from an outcome_log row's id to its commit: ids become visible in id order (see logOutcome). */
const OUTCOME_LOG_LOCK = 7_305_812_447_002;
/** With an agent id's hashtext: one enrollment change of an agent at a time (issue, redeem, revoke). */
const AGENT_LOCK_CLASS = 7_305_812;
/** SQLSTATE 22P02, invalid_text_representation: here, a JSON parameter that does not parse */
const INVALID_TEXT = '22P02';

type Row = Record<string, any>;

/**
 * The time in epoch ms that leases and retry times are kept in: a test's `now` ($n), else the database's
 * clock. Hub instances' clocks differ; one running ahead would take over leases still live, and look an
 * in-doubt posting up before its wait (then post it again). The database's clock is the one they share.
 */
const msNow = (param: string) => `COALESCE(${param}::bigint, (extract(epoch FROM now()) * 1000)::bigint)`;

const iso = (v: unknown): string | null => (v === null || v === undefined ? null : v instanceof Date ? v.toISOString() : String(v));

function toTxRow(r: Row): TransactionRow {
  return {
    seq: Number(r.seq),
    idempotencyKey: r.idempotency_key,
    type: r.type,
    plant: r.plant,
    agentId: r.agent_id,
    workCenter: r.work_center,
    order: r.order_no,
    quantity: r.qty,
    uom: r.uom,
    eventTime: r.event_time,
    receivedAt: iso(r.received_at)!,
    state: r.state,
    attempts: r.attempts,
    inDoubt: r.in_doubt === true,
    erpRef: r.erp_ref,
    postedAt: iso(r.posted_at),
    errorCode: r.error_code,
    errorMessage: r.error_message,
  };
}

export interface PostgresHubStoreOptions {
  connectionString: string;
  max?: number;
  /** a schema to use (created if missing); default: the connection's search_path (public) */
  schema?: string;
}

export class PostgresHubStore implements HubStore {
  readonly kind = 'postgres' as const;
  readonly pool: pg.Pool;
  private readonly schema: string | undefined;

  constructor(opts: PostgresHubStoreOptions) {
    const url = new URL(opts.connectionString);
    if (opts.schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(opts.schema)) throw new Error(`invalid schema name "${opts.schema}"`);
    this.schema = opts.schema;
    // a URL without a user name means "as the OS user", like psql (pg's parsed URL would override a separate option)
    if (!url.username) url.username = process.env.PGUSER ?? userInfo().username;
    if (opts.schema) url.searchParams.set('options', `-c search_path=${opts.schema}`);
    this.pool = new pg.Pool({ connectionString: url.toString(), max: opts.max ?? 10 });
    // an idle client losing its connection must not crash the hub: the pool replaces it
    this.pool.on('error', () => {});
  }

  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      c.release();
    }
  }

  async migrate(): Promise<void> {
    if (this.schema) await this.pool.query(`CREATE SCHEMA IF NOT EXISTS ${this.schema}`);
    await this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATE_LOCK]);
      await c.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())');
      const { rows } = await c.query('SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations');
      const current = Number(rows[0].v);
      if (current > MIGRATIONS.length) throw new Error(`hub database schema version ${current} is newer than this hub knows (${MIGRATIONS.length})`);
      for (let v = current; v < MIGRATIONS.length; v++) {
        await c.query(MIGRATIONS[v]);
        await c.query('INSERT INTO schema_migrations(version) VALUES ($1)', [v + 1]);
      }
    });
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  async upsertAgent(a: AgentRecord): Promise<void> {
    await this.pool.query(
      `INSERT INTO agents(id, plants, token_hash, revoked_at, credential_at) VALUES ($1, $2, $3, $4, now())
       ON CONFLICT(id) DO UPDATE SET plants = excluded.plants, token_hash = excluded.token_hash, revoked_at = excluded.revoked_at,
         credential_at = CASE WHEN agents.token_hash = excluded.token_hash THEN agents.credential_at ELSE now() END`,
      [a.id, JSON.stringify(a.plants), a.tokenHash, a.revokedAt ?? null],
    );
  }

  async findAgentByTokenHash(tokenHash: string): Promise<AgentRecord | undefined> {
    const { rows } = await this.pool.query('SELECT id, plants, token_hash, revoked_at FROM agents WHERE token_hash = $1', [tokenHash]);
    const r = rows[0];
    if (!r) return undefined;
    return { id: r.id, plants: r.plants, tokenHash: r.token_hash, ...(r.revoked_at ? { revokedAt: iso(r.revoked_at)! } : {}) };
  }

  async ingest(agentId: string, items: Transaction[], receivedAt: Date, meta: IngestMeta = {}): Promise<ItemResult[]> {
    if (items.length === 0) return [];
    const cols = {
      key: [] as string[],
      id: [] as string[],
      type: [] as string[],
      plant: [] as string[],
      workCenter: [] as Array<string | null>,
      order: [] as string[],
      orderKey: [] as string[],
      qty: [] as Array<number | null>,
      uom: [] as Array<string | null>,
      eventTime: [] as string[],
    };
    for (const tx of items) {
      const q = quantityOf(tx);
      cols.key.push(tx.idempotencyKey);
      cols.id.push(tx.id);
      cols.type.push(tx.schema.split('/')[0].replace('plantbridge.', ''));
      cols.plant.push(tx.plant);
      cols.workCenter.push(tx.workCenter ?? null);
      cols.order.push(tx.data.order);
      cols.orderKey.push(orderKeyOf(tx));
      cols.qty.push(q?.qty ?? null);
      cols.uom.push(q?.uom ?? null);
      cols.eventTime.push(tx.eventTime);
    }
    // One statement for the whole batch; ORDINALITY keeps seq in the batch's (outbox) order. The bodies
    // travel as one JSON array, not a text[]: pg escapes every quote of every body in a text[] (~5 us per
    // transaction), and a `json` element's text is exactly its JSON form. The array is the received bytes
    // when the hub has them (a Buffer goes as a binary parameter, which for json is its text): no second
    // serialisation of the ~1 MB of items (~1.3 us per transaction, measured), no string to encode again.
    const insert = (bodies: string | Buffer) =>
      this.pool.query(
        `INSERT INTO transactions(idempotency_key, id, type, plant, agent_id, batch_id, work_center, order_no, order_key, qty, uom, event_time, received_at, body)
         SELECT k, i, t, p, $12, $13, w, o, ok, q, u, e, $14, b.body::text
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::float8[], $9::text[], $10::text[])
           WITH ORDINALITY AS x(k, i, t, p, w, o, ok, q, u, e, n)
         JOIN json_array_elements($11::json) WITH ORDINALITY AS b(body, m) ON b.m = x.n
         ORDER BY n
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING idempotency_key`,
        [cols.key, cols.id, cols.type, cols.plant, cols.workCenter, cols.order, cols.orderKey, cols.qty, cols.uom, cols.eventTime, bodies, agentId, meta.batchId ?? null, receivedAt],
      );
    let inserted: pg.QueryResult | undefined;
    if (meta.itemsJson) {
      try {
        inserted = await insert(meta.itemsJson);
      } catch (err) {
        // not one JSON array after all (a frame with its "items" key twice): the statement stored nothing
        if ((err as { code?: string }).code !== INVALID_TEXT) throw err;
      }
    }
    inserted ??= await insert(JSON.stringify(items));
    const fresh = new Set<string>(inserted.rows.map((r) => r.idempotency_key as string));
    const dupKeys = items.filter((t) => !fresh.has(t.idempotencyKey)).map((t) => t.idempotencyKey);
    const existing = new Map<string, Outcome>();
    const plantOf = new Map<string, string>();
    if (dupKeys.length > 0) {
      const { rows } = await this.pool.query('SELECT idempotency_key, plant, state, erp_ref, posted_at, error_code, error_message FROM transactions WHERE idempotency_key = ANY($1::text[])', [dupKeys]);
      for (const r of rows) {
        plantOf.set(r.idempotency_key, r.plant);
        existing.set(r.idempotency_key, outcomeFromRow({ state: r.state, erpRef: r.erp_ref, postedAt: iso(r.posted_at), errorCode: r.error_code, errorMessage: r.error_message }));
      }
    }
    return items.map((tx): ItemResult => {
      if (fresh.delete(tx.idempotencyKey)) return { id: tx.id, idempotencyKey: tx.idempotencyKey, status: 'accepted' };
      const stored = plantOf.get(tx.idempotencyKey);
      if (stored !== undefined && stored !== tx.plant) return keyOfAnotherPlant(tx);
      return { id: tx.id, idempotencyKey: tx.idempotencyKey, status: 'duplicate', outcome: existing.get(tx.idempotencyKey) ?? { state: 'pending' } };
    });
  }

  async recordHeartbeat(hb: AgentHeartbeat, receivedAt: Date): Promise<void> {
    await this.tx(async (c) => {
      await c.query(
        'INSERT INTO heartbeats(agent_id, received_at, body) VALUES ($1, $2, $3) ON CONFLICT(agent_id) DO UPDATE SET received_at = excluded.received_at, body = excluded.body',
        [hb.agentId, receivedAt, JSON.stringify(hb)],
      );
      await c.query('INSERT INTO heartbeat_history(agent_id, received_at, pending, dead_letters, drivers_up, drivers_total) VALUES ($1, $2, $3, $4, $5, $6)', [
        hb.agentId,
        receivedAt,
        hb.outbox.pending,
        hb.outbox.deadLetters,
        hb.drivers.filter((d) => d.state === 'up').length,
        hb.drivers.length,
      ]);
      // keep about a day of history per agent at 15 s intervals (trimmed now and then, not on every beat)
      if (Math.random() < 0.01) {
        await c.query(
          'DELETE FROM heartbeat_history WHERE agent_id = $1 AND id < (SELECT MIN(id) FROM (SELECT id FROM heartbeat_history WHERE agent_id = $1 ORDER BY id DESC LIMIT 6000) x)',
          [hb.agentId],
        );
      }
    });
  }

  async claimPostings(limit: number, leaseMs: number, owner: string, now?: Date): Promise<PostingJob[]> {
    const t = now?.getTime() ?? null;
    return this.tx(async (c) => {
      // the head (oldest queued item) of every order, found by a skip scan of the partial queue index:
      // cost grows with the number of open orders, not with the backlog
      const { rows } = await c.query(
        `WITH RECURSIVE heads(order_key, seq) AS (
           (SELECT order_key, seq FROM transactions WHERE state = 'queued' ORDER BY order_key, seq LIMIT 1)
           UNION ALL
           SELECT nx.order_key, nx.seq FROM heads h, LATERAL (
             SELECT order_key, seq FROM transactions WHERE state = 'queued' AND order_key > h.order_key ORDER BY order_key, seq LIMIT 1) nx
         )
         SELECT t.seq, t.body, t.attempts, t.order_key, t.in_doubt, t.lease_owner FROM transactions t
         WHERE t.seq IN (SELECT seq FROM heads) AND t.state = 'queued' AND t.next_attempt_at <= ${msNow('$1')}
           AND (t.lease_until IS NULL OR t.lease_until < ${msNow('$1')})
           AND NOT EXISTS (SELECT 1 FROM transactions f WHERE f.state = 'failed' AND f.order_key = t.order_key AND f.seq < t.seq)
         ORDER BY t.seq LIMIT $2
         FOR UPDATE OF t SKIP LOCKED`,
        [t, limit],
      );
      if (rows.length === 0) return [];
      const seqs = rows.map((r) => r.seq as string);
      // a lease still set is an expired claim that left no outcome: its call may have reached the ERP
      await c.query(
        `UPDATE transactions SET lease_owner = $1, lease_until = ${msNow('$2')} + $3, attempts = attempts + 1, in_doubt = in_doubt OR lease_owner IS NOT NULL
         WHERE seq = ANY($4::bigint[])`,
        [owner, t, Math.round(leaseMs), seqs],
      );
      return rows.map((r) => ({
        seq: Number(r.seq),
        tx: JSON.parse(r.body) as Transaction,
        attempt: r.attempts + 1,
        orderKey: r.order_key,
        inDoubt: r.in_doubt === true || r.lease_owner !== null,
      }));
    });
  }

  async renewPosting(seq: number, owner: string, leaseMs: number, now?: Date): Promise<boolean> {
    // still ours (even past its end: a claim that took it over would have set its own owner)
    const r = await this.pool.query(`UPDATE transactions SET lease_until = ${msNow('$1')} + $2 WHERE seq = $3 AND state = 'queued' AND lease_owner = $4`, [
      now?.getTime() ?? null,
      Math.round(leaseMs),
      seq,
      owner,
    ]);
    return r.rowCount === 1;
  }

  async completePosting(seq: number, owner: string, o: PostingOutcome, now?: Date): Promise<boolean> {
    return this.tx(async (c) => {
      let r;
      if (o.kind === 'posted') {
        r = await c.query(
          `UPDATE transactions SET state = 'posted', erp_ref = $1, posted_at = COALESCE($2::timestamptz, now()), in_doubt = false, lease_owner = NULL, lease_until = NULL,
             error_code = NULL, error_message = NULL WHERE seq = $3 AND state = 'queued' AND lease_owner = $4`,
          [o.erpRef, now ?? null, seq, owner],
        );
      } else if (o.kind === 'failed') {
        r = await c.query(
          // next_attempt_at: the earliest claim of an in-doubt dead letter's replay (see replay), on the database's clock
          `UPDATE transactions SET state = 'failed', error_code = $1, error_message = $2, in_doubt = $5, next_attempt_at = ${msNow('$6')} + $7,
             lease_owner = NULL, lease_until = NULL
           WHERE seq = $3 AND state = 'queued' AND lease_owner = $4`,
          [o.code, o.erpCode ? `${o.erpCode}: ${o.message}` : o.message, seq, owner, o.code === 'ERP_IN_DOUBT', now?.getTime() ?? null, Math.round(Math.max(0, o.lookUpAfterMs ?? 0))],
        );
      } else {
        r = await c.query(
          `UPDATE transactions SET next_attempt_at = ${msNow('$1')} + $7, in_doubt = $2, error_code = $3, error_message = $4, lease_owner = NULL, lease_until = NULL
           WHERE seq = $5 AND state = 'queued' AND lease_owner = $6`,
          [now?.getTime() ?? null, o.inDoubt, o.code, o.message, seq, owner, Math.round(o.delayMs)],
        );
      }
      if (r.rowCount !== 1) return false;
      if (o.kind !== 'retry') await this.logOutcome(c, seq);
      await c.query('INSERT INTO tx_events(seq, at, kind, detail) VALUES ($1, COALESCE($2::timestamptz, now()), $3, $4)', [seq, now ?? null, `posting.${o.kind}`, JSON.stringify(lineageDetail(o, owner))]);
      return true;
    });
  }

  private async logOutcome(c: pg.PoolClient, seq: number): Promise<void> {
    // Agents read outcome_log with an id cursor (outcomesSince). A BIGSERIAL id is taken at insert but seen
    // at commit: with two completions at once, a later id could commit first, the agent's cursor pass the
    // earlier one, and that outcome never reach the agent. The lock, held to this transaction's commit,
    // makes ids commit in order (outcomes are a few hundred per second at most; the wait is short).
    await c.query('SELECT pg_advisory_xact_lock($1)', [OUTCOME_LOG_LOCK]);
    await c.query(
      `INSERT INTO outcome_log(agent_id, idempotency_key, state, erp_ref, posted_at, error_code, error_message)
       SELECT agent_id, idempotency_key, state, erp_ref, posted_at, error_code, error_message FROM transactions WHERE seq = $1`,
      [seq],
    );
  }

  async replay(seq: number, actor: string): Promise<boolean> {
    return this.tx(async (c) => {
      // a fresh retry budget; attempts = 1 keeps the next one (2) a lookup before any post. An in-doubt dead
      // letter keeps the next_attempt_at it was given: not looked up before posting.inDoubtWait has passed
      const r = await c.query(
        "UPDATE transactions SET state = 'queued', next_attempt_at = CASE WHEN in_doubt THEN next_attempt_at ELSE 0 END, attempts = 1 WHERE seq = $1 AND state = 'failed'",
        [seq],
      );
      if (r.rowCount !== 1) return false;
      await this.auditWith(c, { actor, action: 'dead-letter.replay', target: String(seq) });
      await c.query("INSERT INTO tx_events(seq, kind, detail) VALUES ($1, 'replay', $2)", [seq, JSON.stringify({ actor })]);
      return true;
    });
  }

  async discard(seq: number, actor: string, reason: string): Promise<boolean> {
    return this.tx(async (c) => {
      const r = await c.query("UPDATE transactions SET state = 'discarded' WHERE seq = $1 AND state = 'failed'", [seq]);
      if (r.rowCount !== 1) return false;
      await this.auditWith(c, { actor, action: 'dead-letter.discard', target: String(seq), detail: { reason } });
      await c.query("INSERT INTO tx_events(seq, kind, detail) VALUES ($1, 'discard', $2)", [seq, JSON.stringify({ actor, reason })]);
      await this.logOutcome(c, seq);
      return true;
    });
  }

  async outcomeOf(key: string): Promise<Outcome | undefined> {
    const { rows } = await this.pool.query('SELECT * FROM transactions WHERE idempotency_key = $1', [key]);
    return rows[0] ? outcomeFromRow(toTxRow(rows[0])) : undefined;
  }

  async listTransactions(opts: { limit: number; state?: PostingState; plant?: string }): Promise<TransactionRow[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (opts.state) {
      args.push(opts.state);
      where.push(`state = $${args.length}`);
    }
    if (opts.plant) {
      args.push(opts.plant);
      where.push(`plant = $${args.length}`);
    }
    args.push(opts.limit);
    const sql = `SELECT * FROM transactions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT $${args.length}`;
    return (await this.pool.query(sql, args)).rows.map(toTxRow);
  }

  async getTransaction(key: string): Promise<(TransactionRow & { body: Transaction }) | undefined> {
    const { rows } = await this.pool.query('SELECT * FROM transactions WHERE idempotency_key = $1', [key]);
    return rows[0] ? { ...toTxRow(rows[0]), body: JSON.parse(rows[0].body) } : undefined;
  }

  async listAgents(): Promise<AgentStatusRow[]> {
    const { rows } = await this.pool.query(`SELECT a.id, a.plants, h.received_at, h.body, (SELECT COUNT(*) FROM transactions t WHERE t.agent_id = a.id) AS n
      FROM agents a LEFT JOIN heartbeats h ON h.agent_id = a.id WHERE a.revoked_at IS NULL ORDER BY a.id`);
    return rows.map((r) => ({
      id: r.id,
      plants: r.plants,
      lastHeartbeatAt: iso(r.received_at),
      heartbeat: r.body ? JSON.parse(r.body) : null,
      transactions: Number(r.n),
    }));
  }

  async counts(): Promise<Record<PostingState, number>> {
    const out: Record<PostingState, number> = { queued: 0, posted: 0, failed: 0, discarded: 0 };
    for (const r of (await this.pool.query('SELECT state, COUNT(*) AS n FROM transactions GROUP BY state')).rows) out[r.state as PostingState] = Number(r.n);
    return out;
  }

  /**
   * Serialises the enrollment changes of one agent. Without it a redeem (enrollment row, then agent row)
   * and a revoke (agent row, then enrollment rows) running at once deadlocked, and one of them failed.
   */
  private async lockAgent(c: pg.PoolClient, agentId: string): Promise<void> {
    await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [AGENT_LOCK_CLASS, agentId]);
  }

  async createEnrollment(e: NewEnrollment, actor: string): Promise<void> {
    await this.tx(async (c) => {
      await this.lockAgent(c, e.agentId);
      // a rotation's new token replaces the unused ones: a leaked older token cannot take the agent over
      await c.query('UPDATE enrollments SET superseded_at = now() WHERE agent_id = $1 AND used_at IS NULL AND revoked_at IS NULL AND superseded_at IS NULL', [e.agentId]);
      await c.query('INSERT INTO enrollments(token_hash, agent_id, plants, expires_at) VALUES ($1, $2, $3, $4)', [e.tokenHash, e.agentId, JSON.stringify(e.plants), e.expiresAt]);
      await this.auditWith(c, { actor, action: 'agent.enrollment_created', target: e.agentId, detail: { plants: e.plants, expiresAt: e.expiresAt.toISOString() } });
    });
  }

  async redeemEnrollment(tokenHash: string, credentialHash: string, now = new Date()): Promise<RedeemResult> {
    return this.tx(async (c) => {
      const owner = (await c.query('SELECT agent_id FROM enrollments WHERE token_hash = $1', [tokenHash])).rows[0] as Row | undefined;
      if (owner) await this.lockAgent(c, owner.agent_id);
      const e = (await c.query('SELECT * FROM enrollments WHERE token_hash = $1 FOR UPDATE', [tokenHash])).rows[0] as Row | undefined;
      const refuse = async (reason: RedeemRefusal): Promise<RedeemResult> => {
        await this.auditWith(c, { actor: e ? `agent:${e.agent_id}` : 'unknown', action: 'agent.enrollment_refused', ...(e ? { target: e.agent_id } : {}), detail: { reason } });
        return { ok: false, reason };
      };
      if (!e) return refuse('unknown');
      if (e.used_at) return refuse('used');
      if (e.revoked_at) return refuse('revoked');
      if (e.superseded_at) return refuse('superseded');
      if ((e.expires_at as Date).getTime() <= now.getTime()) return refuse('expired');
      await c.query('UPDATE enrollments SET used_at = $1 WHERE token_hash = $2', [now, tokenHash]);
      await c.query('UPDATE enrollments SET superseded_at = $1 WHERE agent_id = $2 AND token_hash <> $3 AND used_at IS NULL AND superseded_at IS NULL', [now, e.agent_id, tokenHash]);
      await c.query(
        `INSERT INTO agents(id, plants, token_hash, revoked_at, created_at, credential_at) VALUES ($1, $2, $3, NULL, $4, $4)
         ON CONFLICT(id) DO UPDATE SET plants = excluded.plants, token_hash = excluded.token_hash, revoked_at = NULL, credential_at = excluded.credential_at`,
        [e.agent_id, JSON.stringify(e.plants), credentialHash, now],
      );
      await this.auditWith(c, { actor: `agent:${e.agent_id}`, action: 'agent.enrolled', target: e.agent_id, detail: { plants: e.plants } });
      return { ok: true, agent: { id: e.agent_id, plants: e.plants, tokenHash: credentialHash } };
    });
  }

  async revokeAgent(agentId: string, actor: string): Promise<boolean> {
    return this.tx(async (c) => {
      await this.lockAgent(c, agentId);
      const a = (await c.query('UPDATE agents SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL', [agentId])).rowCount ?? 0;
      const e = (await c.query('UPDATE enrollments SET revoked_at = now() WHERE agent_id = $1 AND used_at IS NULL AND revoked_at IS NULL', [agentId])).rowCount ?? 0;
      if (a + e > 0) await this.auditWith(c, { actor, action: 'agent.revoked', target: agentId, detail: { credential: a > 0, enrollmentTokens: e } });
      return a + e > 0;
    });
  }

  private async agentInfoRows(where: string, args: unknown[]): Promise<AgentInfo[]> {
    const { rows } = await this.pool.query(
      `SELECT ids.id, a.plants AS a_plants, a.created_at, a.credential_at, a.revoked_at, h.received_at,
         (SELECT plants FROM enrollments e WHERE e.agent_id = ids.id ORDER BY created_at DESC LIMIT 1) AS e_plants,
         (SELECT MIN(created_at) FROM enrollments e WHERE e.agent_id = ids.id) AS e_created,
         (SELECT COUNT(*) FROM enrollments e WHERE e.agent_id = ids.id AND used_at IS NULL AND revoked_at IS NULL AND superseded_at IS NULL AND expires_at > now()) AS pending
       FROM (SELECT id FROM agents UNION SELECT agent_id AS id FROM enrollments) ids
       LEFT JOIN agents a ON a.id = ids.id LEFT JOIN heartbeats h ON h.agent_id = ids.id ${where} ORDER BY ids.id`,
      args,
    );
    return rows.map((r) => ({
      id: r.id,
      plants: r.a_plants ?? r.e_plants ?? [],
      enrolled: r.a_plants !== null,
      createdAt: iso(r.created_at) ?? iso(r.e_created) ?? new Date(0).toISOString(),
      credentialAt: iso(r.credential_at),
      revokedAt: iso(r.revoked_at),
      lastHeartbeatAt: iso(r.received_at),
      pendingEnrollments: Number(r.pending),
    }));
  }

  async getAgent(agentId: string): Promise<AgentInfo | undefined> {
    return (await this.agentInfoRows('WHERE ids.id = $1', [agentId]))[0];
  }

  async listAgentInfo(): Promise<AgentInfo[]> {
    return this.agentInfoRows('', []);
  }

  async outcomesSince(agentId: string, cursor: number, limit: number): Promise<{ items: OutcomeEvent[]; cursor: number }> {
    const { rows } = await this.pool.query('SELECT * FROM outcome_log WHERE agent_id = $1 AND id > $2 ORDER BY id LIMIT $3', [agentId, cursor, limit]);
    const items = rows.map((r) => ({
      cursor: Number(r.id),
      idempotencyKey: r.idempotency_key as string,
      outcome: outcomeFromRow({ state: r.state, erpRef: r.erp_ref, postedAt: iso(r.posted_at), errorCode: r.error_code, errorMessage: r.error_message }),
    }));
    return { items, cursor: items.length ? items[items.length - 1].cursor : cursor };
  }

  async lineage(key: string): Promise<{ transaction: TransactionRow & { body: Transaction; batchId: string | null }; events: LineageEvent[] } | undefined> {
    const { rows } = await this.pool.query('SELECT * FROM transactions WHERE idempotency_key = $1', [key]);
    const r = rows[0];
    if (!r) return undefined;
    const events: LineageEvent[] = [{ at: iso(r.received_at)!, kind: 'received', detail: { agentId: r.agent_id, batchId: r.batch_id } }];
    for (const e of (await this.pool.query('SELECT * FROM tx_events WHERE seq = $1 ORDER BY id', [r.seq])).rows) {
      events.push({ at: iso(e.at)!, kind: e.kind, ...(e.detail ? { detail: e.detail } : {}) });
    }
    return { transaction: { ...toTxRow(r), body: JSON.parse(r.body), batchId: r.batch_id ?? null }, events };
  }

  async heartbeatHistory(agentId: string, limit: number): Promise<HeartbeatPoint[]> {
    const { rows } = await this.pool.query('SELECT * FROM heartbeat_history WHERE agent_id = $1 ORDER BY id DESC LIMIT $2', [agentId, limit]);
    return rows.reverse().map((r) => ({
      receivedAt: iso(r.received_at)!,
      pending: Number(r.pending),
      deadLetters: Number(r.dead_letters),
      driversUp: r.drivers_up,
      driversTotal: r.drivers_total,
    }));
  }

  private async auditWith(c: pg.PoolClient | pg.Pool, e: AuditEvent): Promise<void> {
    await c.query('INSERT INTO audit(actor, action, target, detail) VALUES ($1, $2, $3, $4)', [e.actor, e.action, e.target ?? null, e.detail === undefined ? null : JSON.stringify(e.detail)]);
  }

  async audit(e: AuditEvent): Promise<void> {
    await this.auditWith(this.pool, e);
  }

  async listAudit(limit: number): Promise<Array<AuditEvent & { at: string }>> {
    const { rows } = await this.pool.query('SELECT * FROM audit ORDER BY id DESC LIMIT $1', [limit]);
    return rows.map((r) => ({
      at: iso(r.at)!,
      actor: r.actor,
      action: r.action,
      ...(r.target ? { target: r.target } : {}),
      ...(r.detail !== null ? { detail: r.detail } : {}),
    }));
  }
  async postingLatencies(opts: { since: Date; plants: readonly string[] | null }): Promise<LatencySample[]> {
    const { rows } = await this.pool.query({
      text: `SELECT plant, type, ${LATENCY_SQL} AS ms FROM transactions WHERE state = 'posted' AND posted_at >= $1 AND ($2::text[] IS NULL OR plant = ANY($2::text[]))`,
      values: [opts.since, opts.plants],
      rowMode: 'array',
    });
    return (rows as Array<[string, string, string]>).map(([plant, type, ms]) => ({ plant, type, latencyMs: Number(ms) }));
  }

  async slowPostings(opts: { since: Date; plant: string; type: string; overMs: number; limit: number }): Promise<SlowPosting[]> {
    const { rows } = await this.pool.query(
      `SELECT * FROM (SELECT seq, idempotency_key, plant, type, work_center, order_no, posted_at, ${LATENCY_SQL} AS ms FROM transactions
         WHERE state = 'posted' AND posted_at >= $1 AND plant = $2 AND type = $3) s WHERE ms > $4 ORDER BY ms DESC, seq LIMIT $5`,
      [opts.since, opts.plant, opts.type, Math.round(opts.overMs), opts.limit],
    );
    return rows.map((r) => ({ seq: Number(r.seq), idempotencyKey: r.idempotency_key, plant: r.plant, type: r.type, workCenter: r.work_center, order: r.order_no, latencyMs: Number(r.ms), postedAt: iso(r.posted_at)! }));
  }

  async openOrders(opts: { receivedBefore: Date; plants: readonly string[] | null; limit: number; keysPerOrder: number }): Promise<OpenOrder[]> {
    const { rows } = await this.pool.query(
      `SELECT g.*, k.keys FROM (
         SELECT plant, order_no, order_key, MIN(work_center) AS work_center, COUNT(*) AS n, COUNT(*) FILTER (WHERE in_doubt) AS in_doubt, MIN(received_at) AS oldest
         FROM transactions WHERE state = 'queued' AND received_at < $1 AND ($2::text[] IS NULL OR plant = ANY($2::text[]))
         GROUP BY plant, order_no, order_key ORDER BY oldest, order_key LIMIT $3) g
       CROSS JOIN LATERAL (SELECT json_agg(json_build_object('seq', q.seq, 'idempotencyKey', q.idempotency_key, 'receivedAt', q.received_at, 'inDoubt', q.in_doubt) ORDER BY q.seq) AS keys
         FROM (SELECT seq, idempotency_key, received_at, in_doubt FROM transactions WHERE state = 'queued' AND order_key = g.order_key ORDER BY seq LIMIT $4) q) k
       ORDER BY g.oldest, g.order_key`,
      [opts.receivedBefore, opts.plants, opts.limit, opts.keysPerOrder],
    );
    return rows.map((g) => ({
      plant: g.plant,
      order: g.order_no,
      workCenter: g.work_center,
      queued: Number(g.n),
      inDoubt: Number(g.in_doubt),
      oldestReceivedAt: iso(g.oldest)!,
      keys: ((g.keys ?? []) as Array<{ seq: number; idempotencyKey: string; receivedAt: string; inDoubt: boolean }>).map((k) => ({ seq: Number(k.seq), idempotencyKey: k.idempotencyKey, receivedAt: new Date(k.receivedAt).toISOString(), inDoubt: k.inDoubt === true })),
    }));
  }

  async orderActivity(opts: { plant: string; orders: readonly string[] }): Promise<Array<{ order: string; transactions: number; firstEventTime: string }>> {
    if (opts.orders.length === 0) return [];
    const { rows } = await this.pool.query('SELECT order_no, COUNT(*) AS n, MIN(event_time) AS first FROM transactions WHERE order_key = ANY($1::text[]) GROUP BY order_no', [
      opts.orders.map((o) => `${opts.plant}:${o}`),
    ]);
    return rows.map((r) => ({ order: r.order_no, transactions: Number(r.n), firstEventTime: r.first }));
  }

  async orderTransactions(opts: { plant: string; order: string; limit: number }): Promise<OrderTransaction[]> {
    const { rows } = await this.pool.query(
      `SELECT idempotency_key, type, work_center, body::json->'data'->>'operation' AS operation, state, qty, uom, erp_ref
       FROM transactions WHERE order_key = $1 ORDER BY seq LIMIT $2`,
      [`${opts.plant}:${opts.order}`, opts.limit],
    );
    return rows.map((r) => ({ idempotencyKey: r.idempotency_key, type: r.type, workCenter: r.work_center, operation: r.operation ?? null, state: r.state, quantity: r.qty, uom: r.uom, erpRef: r.erp_ref }));
  }

  async activeOrders(opts: { since: Date; plants: readonly string[] | null; limit: number }): Promise<Array<{ plant: string; order: string; lastReceivedAt: string }>> {
    const { rows } = await this.pool.query(
      `SELECT plant, order_no, MAX(received_at) AS last FROM transactions WHERE received_at >= $1 AND ($2::text[] IS NULL OR plant = ANY($2::text[]))
       GROUP BY plant, order_no ORDER BY last DESC, plant, order_no LIMIT $3`,
      [opts.since, opts.plants, opts.limit],
    );
    return rows.map((r) => ({ plant: r.plant, order: r.order_no, lastReceivedAt: iso(r.last)! }));
  }

  async saveReconciliation(r: Omit<ReconciliationRecord, 'id'>): Promise<number> {
    const { rows } = await this.pool.query('INSERT INTO reconciliations(plant, order_no, at, status, findings, detail) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id', [r.plant, r.order, r.at, r.status, r.findings, JSON.stringify(r.detail)]);
    return Number(rows[0].id);
  }

  async listReconciliations(opts: { plants: readonly string[] | null; order?: string; limit: number; offset: number }): Promise<{ total: number; items: ReconciliationRecord[] }> {
    const args = [opts.plants, opts.order ?? null];
    const where = 'WHERE ($1::text[] IS NULL OR plant = ANY($1::text[])) AND ($2::text IS NULL OR order_no = $2)';
    const total = Number((await this.pool.query(`SELECT COUNT(*) AS n FROM reconciliations ${where}`, args)).rows[0].n);
    const { rows } = await this.pool.query(`SELECT * FROM reconciliations ${where} ORDER BY id DESC LIMIT $3 OFFSET $4`, [...args, opts.limit, opts.offset]);
    return { total, items: rows.map((r) => ({ id: Number(r.id), plant: r.plant, order: r.order_no, at: iso(r.at)!, status: r.status, findings: r.findings, detail: r.detail })) };
  }

  async deadLetterHolds(opts: { plants: readonly string[] | null; limit: number }): Promise<DeadLetterHold[]> {
    const { rows } = await this.pool.query(
      `SELECT f.seq, f.idempotency_key, f.plant, f.type, f.work_center, f.order_no, f.error_code, f.error_message, f.received_at, f.in_doubt, h.held, h.oldest_held
       FROM transactions f
       CROSS JOIN LATERAL (SELECT COUNT(*) AS held, MIN(q.received_at) AS oldest_held FROM transactions q WHERE q.state = 'queued' AND q.order_key = f.order_key AND q.seq > f.seq) h
       WHERE f.state = 'failed' AND ($1::text[] IS NULL OR f.plant = ANY($1::text[]))
       ORDER BY h.held DESC, f.seq LIMIT $2`,
      [opts.plants, opts.limit],
    );
    return rows.map((r) => ({
      seq: Number(r.seq),
      idempotencyKey: r.idempotency_key,
      plant: r.plant,
      type: r.type,
      workCenter: r.work_center,
      order: r.order_no,
      errorCode: r.error_code,
      errorMessage: r.error_message,
      receivedAt: iso(r.received_at)!,
      inDoubt: r.in_doubt === true,
      heldBack: Number(r.held),
      oldestHeldBackAt: iso(r.oldest_held),
    }));
  }
}
