import { existsSync, renameSync, statSync, statfsSync } from 'node:fs';
import * as nodeFs from 'node:fs';
import { dirname } from 'node:path';
import { inspect } from 'node:util';
import type { Logger } from 'pino';
import { PlantBridgeError, type AlarmCode, type ErrorCode, type Signal, type Transaction, transactionTypeOf } from '../../contracts/index.ts';
import { instantMs } from '../../contracts/instant.ts';
import { preparePrivateDatabase } from '../../contracts/private-files.ts';
import { migrations } from './migrations.ts';
import { isSqliteError, openDb, sqliteErrorKind, type SqlDb, type SqliteDriver, type SqlStatement } from './sqlite-db.ts';

/**
 * The agent's durable store-and-forward (DESIGN.md §2-§4): raw events deduped by sourceId, rule state and
 * derived transactions are committed in ONE SQLite transaction; only then does `append` resolve, so a
 * driver acknowledges its source after the commit. Transactions leave only after the hub's per-item result.
 * agent/outbox/README.md explains the design: tables, commit path, checkpoints, bounds, retention, corruption.
 */

export interface DerivedItem {
  tx: Transaction;
  /** shadow transactions are stored for reports but never forwarded */
  shadow: boolean;
}

export interface Quarantined {
  code: ErrorCode;
  reason: string;
  source?: string;
  payload?: unknown;
}

export interface Derivation {
  items: DerivedItem[];
  quarantined: Quarantined[];
}

/** Rule state as the outbox hands it to the rules: reads see this commit's earlier writes. */
export interface StateAccess {
  get(ruleId: string): unknown;
  set(ruleId: string, state: unknown): void;
}

/** The rules, seen from the outbox. Must be deterministic: the same signals and state give the same result. */
export interface Deriver {
  derive(signal: Signal, state: StateAccess): Derivation;
  tick(nowMs: number, state: StateAccess): Derivation;
}

export const noRules: Deriver = {
  derive: () => ({ items: [], quarantined: [] }),
  tick: () => ({ items: [], quarantined: [] }),
};

export interface OutboxOptions {
  path: string;
  /** full (default): every commit is fsynced before append resolves. normal: see README (power loss may lose the last commits) */
  synchronous?: 'full' | 'normal';
  /** size cap of the database (used pages + WAL); at the cap append fails with OUTBOX_FULL */
  maxBytes?: number;
  /** free-space floor of the disk holding the outbox; below it append fails with OUTBOX_FULL */
  minFreeDiskBytes?: number;
  /** sent (and discarded) transactions are kept this long for lineage and re-sending to a restored hub; 0 = forever */
  retentionDays?: number;
  /** raw events are kept this long (may be fractional; default 1 day); they are the bulk of the file. 0 = forever */
  eventRetentionDays?: number;
  groupCommitDelayMs?: number;
  groupCommitRows?: number;
  checkpointIntervalMs?: number;
  /** the WAL is truncated back to this size when the writer is idle (default 64 MiB) */
  walMaxBytes?: number;
  /** how often retention runs (default 1 minute) */
  retentionIntervalMs?: number;
  rules?: Deriver;
  log?: Logger;
  now?: () => number;
  /** path of better-sqlite3's native addon (the single executable extracts it from its assets) */
  nativeBinding?: string;
  /** better-sqlite3 (default) or Node's built-in node:sqlite (fallback where the addon cannot load) */
  driver?: SqliteDriver;
  /**
   * agent (default): the one process that ingests — checks the file at start (quarantining a corrupt one),
   * migrates, releases leases of a previous run, runs checkpoints and retention.
   * tool: the CLI beside a running agent — the file must exist and have this agent's schema; no check,
   * no quarantine, no timers, no checkpoint at close. Its writes are short IMMEDIATE transactions.
   * writer: a second appending connection of the running agent (a driver's commit thread): the file must
   * exist with this agent's schema; appends with rules and bounds, but no lease release, checkpoints or
   * retention (the agent's own connection does those). Rule state is shared through the file: every
   * commit re-reads what another connection changed (README.md, "Several writers").
   */
  role?: 'agent' | 'tool' | 'writer';
  /** called after each group commit (for the commit-duration histogram) */
  onCommit?: (ms: number, signals: number) => void;
}

export interface AppendResult {
  accepted: number;
  duplicates: number;
  transactions: number;
  /**
   * dead letters written: signals that were malformed or made a rule fail, and the call's input dead letters
   * (acknowledged, kept, visible). An input dead letter whose dedupeKey an open one already has is not
   * written and not counted.
   */
  deadLettered?: number;
}

export interface ClaimedTx {
  seq: number;
  /** the transaction's idempotency key */
  key: string;
  /** `workCenter:order`: items of one order leave in order */
  orderKey: string;
  /** the claim that holds it (this run's claim number): settle with it, so a late answer of an expired lease is recognised */
  readonly lease: number;
  /** the transaction as stored: UTF-8 JSON, spliced into the request as it is */
  readonly raw: Buffer;
  /** the same as text (decoded on first use) */
  readonly body: string;
  /** the parsed transaction (parsed on first use) */
  readonly tx: Transaction;
  attempts: number;
  bytes: number;
}

/**
 * A claimed row. Its body comes as bytes and the forwarder splices them into the request as they are: no
 * string per body, no UTF-8 encoding of the request (measured: ~3 µs per item with text bodies). It is
 * decoded and parsed only if someone looks at `body` or `tx`.
 */
class ClaimedRow implements ClaimedTx {
  readonly seq: number;
  readonly key: string;
  readonly orderKey: string;
  readonly lease: number;
  readonly raw: Buffer;
  readonly attempts: number;
  readonly bytes: number;
  private text: string | undefined;
  private parsed: Transaction | undefined;
  constructor(seq: number, key: string, orderKey: string, lease: number, raw: Buffer, attempts: number, bytes: number) {
    this.seq = seq;
    this.key = key;
    this.orderKey = orderKey;
    this.lease = lease;
    this.raw = raw;
    this.attempts = attempts;
    this.bytes = bytes;
  }

  get body(): string {
    return (this.text ??= this.raw.toString('utf8'));
  }

  get tx(): Transaction {
    return (this.parsed ??= JSON.parse(this.body) as Transaction);
  }
}

/**
 * The answer for one claimed item. `lease` is the claim it came from (ClaimedTx.lease): a `retry` or
 * `dead` of a lease that is no longer the item's (it expired, and the item may be in flight again under a
 * newer one) is ignored; a `sent` always counts (the hub has it).
 */
export type Settlement =
  | { seq: number; lease?: number; status: 'sent'; result?: unknown }
  | { seq: number; lease?: number; status: 'dead'; code: ErrorCode; reason: string }
  /** delayMs < 0 (or not finite): the outbox picks an exponential backoff from the attempt count */
  | { seq: number; lease?: number; status: 'retry'; delayMs: number; reason?: string };

export interface OutboxStats {
  pending: number;
  leased: number;
  oldestPendingAgeS: number;
  deadLetters: number;
  shadow: number;
  bytes: number;
  diskFreeBytes: number;
  full: boolean;
  fullReason?: string;
  lastCommitMs: number;
  /** sent transactions still kept (retention) */
  sent?: number;
  walBytes?: number;
  /** group commits since open */
  commits?: number;
}

export interface Alarm {
  code: AlarmCode;
  message: string;
  since: string;
}

export interface DeadLetter {
  id: number;
  kind: 'transaction' | 'signal' | 'quarantine';
  txSeq: number | null;
  source: string | null;
  code: ErrorCode;
  reason: string;
  payload: string | null;
  createdAt: string;
  /** an input dead letter's dedupe key (InputDeadLetter.dedupeKey), if its source gave one */
  dedupeKey: string | null;
}

export type TxStatus = 'pending' | 'leased' | 'sent' | 'dead' | 'shadow' | 'discarded';

export interface ListedTx {
  seq: number;
  idempotencyKey: string;
  type: string;
  orderKey: string;
  status: TxStatus;
  attempts: number;
  createdAt: string;
  settledAt: string | null;
  nextAttemptAt: string | null;
  lastError: string | null;
  bytes: number;
}

/** An input that could not become a signal, committed with the signals of the same append. */
export interface InputDeadLetter {
  source: string;
  code: ErrorCode;
  reason: string;
  /** the raw input, capped at 64 KiB */
  payload: Buffer | string | null;
  /**
   * The same input delivered again (a message committed but not acknowledged, redelivered) gives the same
   * key: while a dead letter with this key is open, it is not written again (schema 8). With locality,
   * like Signal.sourceId: the source leads, a digest comes last.
   */
  dedupeKey?: string;
}

interface PendingAppend {
  signals: Signal[];
  dead?: InputDeadLetter[];
  tick: boolean;
  resolve: (r: AppendResult) => void;
  reject: (e: unknown) => void;
}

const pendingRows = (p: PendingAppend): number => p.signals.length + (p.dead?.length ?? 0);

/** an input dead letter keeps the first 64 KiB of its raw input */
const capPayload = (payload: Buffer | string | null): Buffer | string | null =>
  payload === null ? null : typeof payload === 'string' ? payload.slice(0, 64 * 1024) : payload.subarray(0, 64 * 1024);

const DAY_MS = 86_400_000;
const BOUNDS_CHECK_MS = 1000;
/** per-row bytes beyond the payload (keys, timestamps, index entries, page slack): an estimate that errs high */
const ROW_OVERHEAD_BYTES = 256;
/** each committed byte costs about this much disk until the next checkpoint: WAL frame, table page, indexes */
const WRITE_AMPLIFICATION = 3;
/** under space pressure raw events younger than this stay (redeliveries right after a crash are deduped by them) */
const SPACE_PRESSURE_KEEP_EVENTS_MS = 10 * 60_000;
/** rows deleted per retention step: bounds how long one step holds the event loop and the write lock */
const PURGE_CHUNK = 2000;
/** pending rows a claim looks at past the blocked orders: bounds a claim's cost at any backlog */
const CLAIM_SCAN = 5000;
/** sent items with the same result, from this many on, are settled by one statement that binds the result once */
const SAME_RESULT_GROUP = 8;
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 5 * 60_000;
/**
 * No retry waits longer than this. A retry time further ahead than this means the wall clock was set back
 * (an NTP step after booting with a clock that ran ahead): the item is due now, instead of holding back
 * its whole order for as long as the clock was wrong. Retry times are wall-clock because they outlive the
 * process; this bounds what a clock step can do to them.
 */
const RETRY_HORIZON_MS = 60 * 60_000;

type Stmts = ReturnType<Outbox['prepare']>;

export class Outbox {
  readonly path: string;
  private db!: SqlDb;
  private s!: Stmts;
  private readonly opts: Required<
    Omit<OutboxOptions, 'log' | 'rules' | 'now' | 'nativeBinding' | 'driver' | 'onCommit' | 'role'>
  >;
  private readonly driver: SqliteDriver;
  private readonly role: 'agent' | 'tool' | 'writer';
  private readonly nativeBinding: string | undefined;
  private readonly rules: Deriver;
  private readonly log: Logger | undefined;
  private readonly now: () => number;
  private readonly onCommit: ((ms: number, signals: number) => void) | undefined;
  /**
   * Rule state by rule id, read from the file on first use (undefined = the rule has no state yet). Cleared
   * when another connection committed (PRAGMA data_version moved): its commit may have changed rule state.
   */
  private stateCache = new Map<string, unknown>();
  private dataVersion: number | undefined;
  private queue: PendingAppend[] = [];
  private queuedRows = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private flushImmediate: NodeJS.Immediate | undefined;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private retentionTimer: NodeJS.Timeout | undefined;
  private purging: Promise<number> | undefined;
  private closed = false;
  /** why ingest is refused; `io` failures clear on the next successful commit, `bounds` when space returns */
  private full: { reason: string; cause: 'bounds' | 'io'; since: number } | undefined;
  private reopenNeeded = false;
  private boundsCheckedAt = -Infinity;
  private spacePurgedAt = -Infinity;
  private cachedBytes = 0;
  private cachedWal = 0;
  private cachedDiskFree = 0;
  /** bytes of payload committed since the last measurement: a fast writer is measured more often near a bound */
  private writtenSinceMeasure = 0;
  private lastCommitMs = 0;
  private commits = 0;
  /** this run's live leases (id -> its unsettled items: seq -> order key), and the lease of each item */
  private readonly ownLeases = new Map<number, Map<number, string>>();
  private readonly leaseOfSeq = new Map<number, number>();
  /** lease row id -> this run's number of the claim that made it (row ids are reused once a row is gone) */
  private readonly leaseToken = new Map<number, number>();
  private claims = 0;

  constructor(opts: OutboxOptions) {
    this.path = opts.path;
    this.opts = {
      path: opts.path,
      synchronous: opts.synchronous ?? 'full',
      maxBytes: opts.maxBytes ?? 10 * 1024 ** 3,
      minFreeDiskBytes: opts.minFreeDiskBytes ?? 1024 ** 3,
      retentionDays: opts.retentionDays ?? 7,
      eventRetentionDays: opts.eventRetentionDays ?? 1,
      groupCommitDelayMs: Math.min(opts.groupCommitDelayMs ?? 5, 20),
      groupCommitRows: opts.groupCommitRows ?? 1000,
      checkpointIntervalMs: opts.checkpointIntervalMs ?? 1000,
      walMaxBytes: opts.walMaxBytes ?? 64 * 1024 ** 2,
      retentionIntervalMs: opts.retentionIntervalMs ?? 60_000,
    };
    this.driver = opts.driver ?? 'better-sqlite3';
    this.role = opts.role ?? 'agent';
    this.nativeBinding = opts.nativeBinding;
    this.rules = opts.rules ?? noRules;
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
    this.onCommit = opts.onCommit;
    if (this.role === 'tool') {
      this.db = this.openTool();
    } else if (this.role === 'writer') {
      this.db = this.openWriter();
    } else {
      preparePrivateDatabase(this.path, nodeFs);
      this.db = this.openChecked();
    }
    this.s = this.prepare();
    if (this.role === 'tool') return;
    if (this.role === 'writer') {
      this.measure();
      return;
    }
    // a lease can only belong to a previous run of this agent (one agent per outbox): it is dead
    const released = this.db.immediate(() => this.s.leases.all().reduce((n, l) => n + this.dropLease(Number(l.id)), 0));
    if (released > 0) this.log?.info({ released }, 'Released the leases of the previous run: those transactions will be sent again (the hub dedupes).');
    this.measure();
    this.checkpointTimer = setInterval(() => this.checkpoint(), this.opts.checkpointIntervalMs);
    this.checkpointTimer.unref();
    this.retentionTimer = setInterval(() => void this.purgeExpired(), this.opts.retentionIntervalMs);
    this.retentionTimer.unref();
  }

  // ---------------------------------------------------------------------------------------- opening

  private openTool(): SqlDb {
    let db: SqlDb;
    try {
      db = openDb(this.path, { driver: this.driver, nativeBinding: this.nativeBinding, mustExist: true });
    } catch (err) {
      throw new PlantBridgeError('OUTBOX_IO', `cannot open the outbox ${this.path}: ${(err as Error).message}`, { cause: err });
    }
    this.checkVersion(db, 'this tool');
    db.pragma('busy_timeout = 5000');
    this.loadState(db);
    return db;
  }

  /** A second appending connection beside the agent's (which created, checked and migrated the file). */
  private openWriter(): SqlDb {
    if (!existsSync(this.path)) throw new PlantBridgeError('OUTBOX_IO', `cannot open the outbox ${this.path}: the agent has not created it`);
    let db: SqlDb;
    try {
      db = this.openRaw();
    } catch (err) {
      throw new PlantBridgeError('OUTBOX_IO', `cannot open the outbox ${this.path}: ${(err as Error).message}`, { cause: err });
    }
    this.checkVersion(db, 'this writer');
    this.loadState(db);
    return db;
  }

  private checkVersion(db: SqlDb, who: string): void {
    const version = Number(db.pragma('user_version'));
    if (version !== migrations.length) {
      db.close();
      throw new PlantBridgeError(
        'INTERNAL',
        `outbox ${this.path} has schema version ${version}, ${who} knows ${migrations.length}: run the matching agent version once (it migrates at start)`,
      );
    }
  }

  /** Opens the file, checks it, and quarantines a corrupt one instead of crash-looping. */
  private openChecked(): SqlDb {
    let corruptReason: string | undefined;
    if (existsSync(this.path)) {
      let db: SqlDb | undefined;
      try {
        db = this.openRaw();
        const problems = db.prepare('PRAGMA quick_check(5)').all().map((r) => String(Object.values(r)[0]));
        if (problems.length === 1 && problems[0] === 'ok') {
          this.migrate(db);
          this.loadState(db);
          this.probeSchema(db);
          return db;
        }
        corruptReason = problems.join('; ');
      } catch (err) {
        if (sqliteErrorKind(err) !== 'corrupt' && !(err instanceof SyntaxError)) {
          try {
            db?.close();
          } catch {
            // closing a half-open handle
          }
          throw isSqliteError(err) ? new PlantBridgeError('OUTBOX_IO', `cannot open the outbox ${this.path}: ${(err as Error).message}`, { cause: err }) : err;
        }
        corruptReason = (err as Error).message;
      }
      try {
        db?.close();
      } catch {
        // a corrupt file may refuse even this
      }
    }
    if (corruptReason === undefined) {
      const db = this.openRaw();
      this.migrate(db);
      this.loadState(db);
      return db;
    }
    return this.quarantine(corruptReason);
  }

  /**
   * A bit flip inside the schema's own SQL text passes quick_check (the b-trees are intact) yet leaves a
   * table without the columns we write: preparing our statements finds it. Such a file is corrupt too.
   */
  private probeSchema(db: SqlDb): void {
    const previous = this.db;
    try {
      this.db = db;
      this.prepare();
    } catch (err) {
      throw Object.assign(new Error(`the outbox schema is damaged: ${(err as Error).message}`), { code: 'SQLITE_CORRUPT' });
    } finally {
      this.db = previous;
    }
  }

  private quarantine(corruptReason: string): SqlDb {
    const lost = this.countUnsent();
    const stamp = new Date(this.now()).toISOString().replace(/[:.]/g, '-');
    const moved = `${this.path}.corrupt-${stamp}`;
    for (const suffix of ['', '-wal', '-shm']) {
      if (existsSync(this.path + suffix)) renameSync(this.path + suffix, moved + suffix);
    }
    const what = lost === undefined ? 'How many unsent transactions it held could not be read.' : `It held ${lost} unsent transaction(s), not in the new outbox.`;
    this.log?.error({ moved, reason: corruptReason, unsent: lost }, `Outbox database was corrupt: moved aside, starting a fresh one. ${what}`);
    const db = this.openRaw();
    this.migrate(db);
    this.stateCache.clear();
    db.prepare('INSERT OR REPLACE INTO alarms(code, message, since) VALUES (?, ?, ?)').run(
      'OUTBOX_CORRUPT',
      `The outbox database was corrupt (${corruptReason.slice(0, 300)}) and was moved to ${moved}. ${what} ` +
        'Rule state restarts from the next values (counters re-baseline). Acknowledge with: plantbridge-agent outbox ack-alarm OUTBOX_CORRUPT',
      this.now(),
    );
    return db;
  }

  /** Best effort: how many unsent transactions a corrupt file held (for the alarm). */
  private countUnsent(): number | undefined {
    let db: SqlDb | undefined;
    try {
      db = openDb(this.path, { driver: this.driver, nativeBinding: this.nativeBinding, mustExist: true, busyTimeoutMs: 100 });
      const row = db.prepare("SELECT COUNT(*) AS n FROM transactions WHERE status IN ('pending', 'leased')").get();
      return Number(row?.n);
    } catch {
      return undefined;
    } finally {
      try {
        db?.close();
      } catch {
        // ignore
      }
    }
  }

  private openRaw(): SqlDb {
    const db = openDb(this.path, { driver: this.driver, nativeBinding: this.nativeBinding });
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${this.opts.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    // the inline auto-checkpoint halves ingest and stalls commits for ~0.5 s: checkpoint on a timer instead
    db.pragma('wal_autocheckpoint = 0');
    // after a complete checkpoint the next commit rewinds the WAL and truncates it to this size
    db.pragma(`journal_size_limit = ${Math.floor(this.opts.walMaxBytes)}`);
    db.pragma('busy_timeout = 5000');
    // a fixed page cache: memory stays flat whatever the backlog
    db.pragma('cache_size = -8000');
    // Statement journals in memory. Every statement after the first in a transaction (a settle's second
    // UPDATE, an append's inserts) journals the pages it changes; past 64 KiB SQLite spills that journal
    // to a new file in the temp directory, opened, written and closed per statement (two per settle of
    // 1,000 items, seen with strace). Bounded by one statement's pages. Migrations run with the default
    // (see migrate): a CREATE INDEX over a large backlog sorts in memory when temp_store is MEMORY.
    db.pragma('temp_store = MEMORY');
    return db;
  }

  private migrate(db: SqlDb): void {
    const version = Number(db.pragma('user_version'));
    if (version > migrations.length) {
      throw new PlantBridgeError('INTERNAL', `outbox schema version ${version} is newer than this agent knows (${migrations.length}): a downgrade needs the matching outbox`);
    }
    if (version === migrations.length) return;
    db.pragma('temp_store = DEFAULT');
    try {
      for (let v = version; v < migrations.length; v++) {
        db.immediate(() => {
          db.exec(migrations[v]);
          db.pragma(`user_version = ${v + 1}`);
        });
        if (v > 0 || version > 0) this.log?.info({ from: v, to: v + 1 }, 'Outbox schema migrated');
      }
    } finally {
      db.pragma('temp_store = MEMORY');
    }
  }

  /** Rule state is read lazily, rule by rule, and re-read after another connection's commit. */
  private loadState(_db: SqlDb): void {
    this.stateCache.clear();
    this.dataVersion = undefined;
  }

  /** Drops the cached rule state if another connection committed since this one last looked. */
  private syncState(): void {
    const v = Number(this.db.pragma('data_version'));
    if (v !== this.dataVersion) {
      this.stateCache.clear();
      this.dataVersion = v;
    }
  }

  private cachedState(ruleId: string): unknown {
    if (this.stateCache.has(ruleId)) return this.stateCache.get(ruleId);
    const row = this.s.selectState.get(ruleId);
    const state = row === undefined ? undefined : JSON.parse(String(row.state));
    this.stateCache.set(ruleId, state);
    return state;
  }

  /**
   * EXPLAIN QUERY PLAN of the statements on the forwarding path (claim, lease, settle): a test checks that
   * none of them scans the backlog, so a claim costs the same at 1k and at 10M pending transactions.
   */
  queryPlans(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const name of ['leases', 'expireLease', 'blockedOrders', 'claimHorizon', 'claimScan', 'bodiesJoined', 'bodiesMany', 'clearDelayMany', 'insertLease', 'updateLease', 'deleteLease', 'settleSentMany', 'settleSentSameMany', 'settleRetry', 'settleDead']) {
      const sql = this.s[name as keyof Stmts].sql;
      const params = (sql.match(/\?/g) ?? []).map(() => (name.endsWith('Many') ? '[]' : 0));
      out[name] = this.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params).map((r) => String(r.detail));
    }
    return out;
  }

  private prepare() {
    const db = this.db;
    // each statement keeps its SQL text, for queryPlans()
    const p = (sql: string): SqlStatement & { sql: string } => Object.assign(db.prepare(sql), { sql });
    return {
      insertEvent: p('INSERT OR IGNORE INTO events(source_id, source, ref, value, quality, source_time, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      insertTx: p(
        "INSERT OR IGNORE INTO transactions(idempotency_key, id, type, order_key, status, legacy_body, bytes, created_at) VALUES (?, ?, ?, ?, ?, '', ?, ?)",
      ),
      // right after an insertTx that inserted (triggers do not change last_insert_rowid())
      insertBody: p('INSERT INTO tx_bodies(seq, body) VALUES (last_insert_rowid(), ?)'),
      selectState: p('SELECT state FROM rule_state WHERE rule_id = ?'),
      upsertState: p(
        'INSERT INTO rule_state(rule_id, state, updated_at) VALUES (?, ?, ?) ON CONFLICT(rule_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at',
      ),
      insertDead: p('INSERT INTO dead_letters(kind, tx_seq, source, code, reason, payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      // an input dead letter: one with the key of an open one is dropped (changes = 0; no trigger runs, so
      // dead_letters_open counts only what was written). A null key never conflicts.
      insertInputDead: p(
        "INSERT INTO dead_letters(kind, source, code, reason, payload, created_at, dedupe_key) VALUES ('signal', ?, ?, ?, ?, ?, ?) ON CONFLICT(dedupe_key) WHERE dedupe_key IS NOT NULL AND resolved IS NULL DO NOTHING",
      ),
      // one row per claim (schema 5): a claim writes no transaction row, only this
      leases: p('SELECT id, until, seqs, orders FROM leases'),
      insertLease: p('INSERT INTO leases(until, seqs, orders) VALUES (?, ?, ?) RETURNING id'),
      updateLease: p('UPDATE leases SET seqs = ?, orders = ? WHERE id = ?'),
      deleteLease: p('DELETE FROM leases WHERE id = ?'),
      // a lease that ends unsettled (expired, or left by a dead run) counted as one attempt of its items
      expireLease: p("UPDATE transactions SET attempts = attempts + 1 WHERE seq IN (SELECT value FROM json_each((SELECT seqs FROM leases WHERE id = ?))) AND status = 'pending'"),
      leasedCount: p('SELECT COALESCE(SUM(json_array_length(seqs)), 0) AS n FROM leases WHERE until >= ?'),
      // orders with an item waiting for a retry (orders with an item in flight come from the leases)
      blockedOrders: p(`
        SELECT DISTINCT order_key FROM transactions INDEXED BY transactions_delayed
          WHERE status = 'pending' AND next_attempt_at > 0 AND next_attempt_at > ? AND next_attempt_at <= ?`),
      // the scan reads no bodies: rows of orders already in flight are skipped, often half of what it reads
      // the last of the first N pending rows: a claim looks no further (an index-only walk, ~50 ns per row)
      // (`seq > ?`, bound to 0: a bounded range search of the index, which query-plans.test.ts can tell from a scan)
      claimHorizon: p("SELECT seq FROM transactions WHERE status = 'pending' AND seq > ? ORDER BY seq LIMIT 1 OFFSET ?"),
      // rows of blocked orders (in flight, or waiting for a retry) are skipped inside SQLite: with two or
      // more requests in flight they are most of what a claim looks at, and each cost a JS row object
      claimScan: p(
        "SELECT seq, idempotency_key, order_key, next_attempt_at, attempts, bytes FROM transactions WHERE status = 'pending' AND seq > ? AND seq <= ? AND order_key NOT IN (SELECT value FROM json_each(?)) ORDER BY seq LIMIT ?",
      ),
      // bodies as BLOBs: bytes, not strings (see ClaimedRow); joined in seq order, or one per row
      // the subquery's rows come in seq order from the IN list's own ordered lookup, so no sorter runs (an
      // ORDER BY inside group_concat sorted the ~1 MB of bodies again: +1 us per item, measured); readBodies
      // checks every view against its row and falls back to one read per row if anything does not fit
      bodiesJoined: p("SELECT CAST(group_concat(body, ',') AS BLOB) AS body FROM (SELECT body FROM tx_bodies WHERE seq IN (SELECT value FROM json_each(?)) ORDER BY seq)"),
      bodiesMany: p('SELECT seq, CAST(body AS BLOB) AS body FROM tx_bodies WHERE seq IN (SELECT value FROM json_each(?))'),
      legacyBody: p('SELECT CAST(legacy_body AS BLOB) AS body FROM transactions WHERE seq = ?'),
      // claimed items whose retry time has passed leave the partial index of delayed items (few: retries only)
      clearDelayMany: p('UPDATE transactions SET next_attempt_at = 0 WHERE seq IN (SELECT value FROM json_each(?)) AND next_attempt_at > 0'),
      // one statement per settle for the sent items: the seqs and results travel as one JSON array. A settled
      // item counts its attempt now (the claim wrote nothing to its row).
      settleSentMany: p(`
        UPDATE transactions NOT INDEXED SET status = 'sent', settled_at = ?, result = j.value ->> 1, attempts = attempts + 1
        FROM json_each(?) AS j WHERE transactions.seq = j.value ->> 0 AND transactions.status = 'pending'`),
      // the common case, many items with the same result ({"status":"accepted"}): no JSON to pick apart per row
      settleSentSameMany: p(
        "UPDATE transactions SET status = 'sent', settled_at = ?, result = ?, attempts = attempts + 1 WHERE seq IN (SELECT value FROM json_each(?)) AND status = 'pending'",
      ),
      // pending -> sent is left out by the counting trigger (schema 7): the settle moves the counters by its changes
      countSent: p("UPDATE counters SET value = value + CASE name WHEN 'tx_sent' THEN ? ELSE -? END WHERE name IN ('tx_pending', 'tx_sent')"),
      settleDead: p("UPDATE transactions SET status = 'dead', settled_at = ?, result = ?, attempts = attempts + 1 WHERE seq = ? AND status = 'pending'"),
      settleRetry: p("UPDATE transactions SET next_attempt_at = ?, last_error = ?, attempts = attempts + 1 WHERE seq = ? AND status = 'pending'"),
      attempts: p('SELECT attempts FROM transactions WHERE seq = ?'),
      counters: p('SELECT name, value FROM counters'),
      // leased items are 'pending' rows too (schema 5)
      oldestPending: p("SELECT created_at AS t FROM transactions WHERE status = 'pending' ORDER BY seq LIMIT 1"),
      purgeSent: p(
        "DELETE FROM transactions WHERE seq IN (SELECT seq FROM transactions WHERE settled_at < ? AND status IN ('sent', 'discarded') LIMIT ?)",
      ),
      // the oldest rows by seq: received_at is nearly monotonic in seq, and this never scans the whole table
      purgeEvents: p('DELETE FROM events WHERE seq IN (SELECT seq FROM (SELECT seq, received_at FROM events ORDER BY seq LIMIT ?) WHERE received_at < ?)'),
      purgeResolved: p('DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters WHERE resolved IS NOT NULL AND created_at < ? LIMIT ?)'),
    };
  }

  // ---------------------------------------------------------------------------------------- append

  /**
   * Commits signals (deduped), the rule state they change and the transactions they derive, all in one
   * SQLite transaction shared with the other appends of the same few milliseconds (group commit). Resolves
   * after the commit is durable; rejects with OUTBOX_FULL / OUTBOX_IO, in which case nothing of this call
   * was stored and the caller must not acknowledge its source.
   */
  append(signals: Signal[], deadLetters?: InputDeadLetter[]): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new PlantBridgeError('INTERNAL', 'outbox is closed'));
    if (this.role === 'tool') return Promise.reject(new PlantBridgeError('INTERNAL', 'the outbox is open as a tool: only the agent appends'));
    const dead = deadLetters !== undefined && deadLetters.length > 0 ? deadLetters : undefined;
    if ((!Array.isArray(signals) || signals.length === 0) && !dead) return Promise.resolve({ accepted: 0, duplicates: 0, transactions: 0 });
    return new Promise((resolve, reject) => {
      this.queue.push({ signals: Array.isArray(signals) ? signals : [], ...(dead ? { dead } : {}), tick: false, resolve, reject });
      this.queuedRows += signals.length + (dead?.length ?? 0);
      this.scheduleFlush(this.queuedRows >= this.opts.groupCommitRows);
    });
  }

  /** Commits what is queued now, synchronously, instead of after the group-commit delay. */
  flushQueued(): void {
    while (this.queue.length > 0) this.flush();
  }

  /** Runs time-based rules (aggregation windows that must close after T seconds), committed like an append. */
  tick(): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new PlantBridgeError('INTERNAL', 'outbox is closed'));
    if (this.role !== 'agent') return Promise.reject(new PlantBridgeError('INTERNAL', `the outbox is open as a ${this.role}: only the agent ticks`));
    return new Promise((resolve, reject) => {
      this.queue.push({ signals: [], tick: true, resolve, reject });
      this.scheduleFlush(true);
    });
  }

  private scheduleFlush(now: boolean): void {
    if (now) {
      if (this.flushImmediate) return;
      this.flushImmediate = setImmediate(() => {
        this.flushImmediate = undefined;
        this.flush();
      });
      return;
    }
    if (this.flushTimer || this.flushImmediate) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.flush();
    }, this.opts.groupCommitDelayMs);
  }

  /** Commits the oldest queued appends, up to groupCommitRows signals (a single larger append stays whole). */
  private flush(): void {
    if (this.flushTimer) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
    if (this.queue.length === 0) return;
    let rows = 0;
    let n = 0;
    while (n < this.queue.length && (n === 0 || rows + pendingRows(this.queue[n]) <= this.opts.groupCommitRows)) {
      rows += pendingRows(this.queue[n]);
      n++;
    }
    const group = this.queue.splice(0, n);
    this.queuedRows -= rows;
    if (this.queue.length > 0) this.scheduleFlush(this.queuedRows >= this.opts.groupCommitRows || this.queue.some((p) => p.tick));
    const started = performance.now();
    let results: AppendResult[];
    try {
      if (this.reopenNeeded) this.reopen();
      this.checkBounds();
      results = this.commit(group);
    } catch (err) {
      const e = this.toStorageError(err);
      for (const p of group) p.reject(e);
      return;
    }
    this.lastCommitMs = performance.now() - started;
    this.commits++;
    if (this.full?.cause === 'io') this.clearFull();
    group.forEach((p, i) => p.resolve(results[i]));
    this.onCommit?.(this.lastCommitMs, rows);
  }

  private commit(group: PendingAppend[]): AppendResult[] {
    const overlay = new Map<string, unknown>();
    const now = this.now();
    const s = this.s;
    const deadLetter = (kind: 'signal' | 'quarantine', source: string | null, code: string, reason: string, payload: unknown) => {
      let text: string | null;
      try {
        text = payload === undefined ? null : typeof payload === 'string' ? payload : JSON.stringify(payload);
      } catch {
        text = String(payload);
      }
      s.insertDead.run(kind, null, source, code, reason.slice(0, 2000), text === null ? null : text.slice(0, 64 * 1024), now);
    };
    /** Runs one derivation in its own state layer: a rule that throws changes nothing and dead-letters the signal. */
    const layer = new Map<string, unknown>();
    const access: StateAccess = {
      get: (id) => (layer.has(id) ? layer.get(id) : overlay.has(id) ? overlay.get(id) : this.cachedState(id)),
      set: (id, st) => void layer.set(id, st),
    };
    const derive = (run: (state: StateAccess) => Derivation, source: string | null, payload: unknown): number => {
      layer.clear();
      let rows: Array<[string, string, string, string, string, string, number]>;
      let d: Derivation;
      try {
        d = run(access);
        rows =
          d.items.length === 0
            ? []
            : d.items.map(({ tx, shadow }) => {
                const body = JSON.stringify(tx);
                return [tx.idempotencyKey, tx.id, transactionTypeOf(tx) ?? 'unknown', `${tx.workCenter ?? ''}:${tx.data.order}`, shadow ? 'shadow' : 'pending', body, Buffer.byteLength(body)];
              });
      } catch (err) {
        if (isSqliteError(err)) throw err;
        deadLetter('quarantine', source, 'INTERNAL', `a rule failed on this input: ${(err as Error)?.message ?? String(err)}`, payload);
        return -1;
      }
      let n = 0;
      for (const r of rows) {
        if (s.insertTx.run(r[0], r[1], r[2], r[3], r[4], r[6], now).changes === 0) continue;
        s.insertBody.run(r[5]);
        n++;
      }
      this.writtenSinceMeasure += rows.length === 0 ? 0 : rows.reduce((a, r) => a + r[6] + ROW_OVERHEAD_BYTES, 0);
      for (const q of d.quarantined) deadLetter('quarantine', q.source ?? null, q.code, q.reason, q.payload);
      for (const [id, st] of layer) overlay.set(id, st);
      return n;
    };

    const results = this.db.immediate(() => {
      this.syncState();
      const out: AppendResult[] = [];
      for (const p of group) {
        const r: AppendResult = { accepted: 0, duplicates: 0, transactions: 0 };
        if (p.dead) {
          let written = 0;
          for (const d of p.dead) {
            const capped = capPayload(d.payload);
            if (s.insertInputDead.run(d.source, d.code, d.reason.slice(0, 2000), capped, now, d.dedupeKey ?? null).changes === 0) continue;
            this.writtenSinceMeasure += (capped?.length ?? 0) + ROW_OVERHEAD_BYTES;
            written++;
          }
          if (written > 0) r.deadLettered = written;
        }
        // the call's events first, then the rules over the accepted ones in a tight loop: interleaving
        // SQLite and the rules signal by signal evicted each other from the CPU caches (~0.25 µs/signal)
        const accepted: Signal[] = [];
        for (const sig of p.signals) {
          const bad = invalidSignal(sig);
          if (bad) {
            deadLetter('signal', typeof sig?.source === 'string' ? sig.source : null, 'SCHEMA_INVALID', bad, sig);
            r.deadLettered = (r.deadLettered ?? 0) + 1;
            continue;
          }
          let value: string | null;
          try {
            value = sig.value === null || sig.value === undefined ? null : JSON.stringify(sig.value);
          } catch (err) {
            // not String(value) ("[object Object]"): what the value held, as far as it can be shown
            deadLetter('signal', sig.source, 'SCHEMA_INVALID', `signal.value cannot be stored: ${(err as Error).message}`, { ...sig, value: inspect(sig.value, { depth: 6, maxArrayLength: 50, maxStringLength: 4096, breakLength: Infinity, compact: true }) });
            r.deadLettered = (r.deadLettered ?? 0) + 1;
            continue;
          }
          const received = instantMs(sig.receivedAt);
          const ins = s.insertEvent.run(
            sig.sourceId,
            sig.source,
            sig.ref,
            value,
            sig.quality,
            sig.sourceTime,
            Number.isFinite(received) ? received : now,
          );
          if (ins.changes === 0) {
            r.duplicates++;
            continue;
          }
          this.writtenSinceMeasure += (value?.length ?? 0) + ROW_OVERHEAD_BYTES;
          r.accepted++;
          accepted.push(sig);
        }
        for (const sig of accepted) {
          const n = derive((st) => this.rules.derive(sig, st), sig.source, sig);
          if (n < 0) r.deadLettered = (r.deadLettered ?? 0) + 1;
          else r.transactions += n;
        }
        if (p.tick) r.transactions += Math.max(0, derive((st) => this.rules.tick(now, st), null, undefined));
        out.push(r);
      }
      for (const [id, state] of overlay) {
        let text: string;
        try {
          text = JSON.stringify(state);
        } catch (err) {
          // a rule bug: keep its last good state rather than fail every commit from now on
          overlay.delete(id);
          deadLetter('quarantine', null, 'INTERNAL', `rule ${id} produced a state that cannot be stored: ${(err as Error).message}`, undefined);
          this.log?.error({ ruleId: id, err }, 'A rule produced a state that cannot be stored; its state was not updated');
          continue;
        }
        s.upsertState.run(id, text, now);
      }
      return out;
    });
    // the commit is durable: only now does the in-memory rule state move on
    for (const [id, state] of overlay) this.stateCache.set(id, state);
    return results;
  }

  // ---------------------------------------------------------------------------------------- bounds and I/O errors

  private toStorageError(err: unknown): unknown {
    if (err instanceof PlantBridgeError) return err;
    const kind = sqliteErrorKind(err);
    const code = String((err as { code?: unknown; errcode?: unknown })?.code ?? (err as { errcode?: unknown })?.errcode ?? '');
    if (kind === 'full' || kind === 'io' || kind === 'corrupt') {
      this.setFull(`I/O error: ${(err as Error)?.message ?? code}`, 'io');
      // after EIO the connection may hold a bad page cache or WAL index: start clean on the next attempt
      if (kind !== 'full') this.reopenNeeded = true;
      return new PlantBridgeError('OUTBOX_IO', `outbox write failed (${(err as Error)?.message ?? code}); sources are not acknowledged until it recovers`, { cause: err });
    }
    if (kind === 'busy') return new PlantBridgeError('INTERNAL', 'outbox is locked by another process (an outbox CLI command?); retry', { retriable: true, cause: err });
    return err;
  }

  private reopen(): void {
    // open the new handle first: if that fails too, the old one stays for stats and the next attempt
    const fresh = this.openRaw();
    try {
      this.db.close();
    } catch {
      // the old handle may be unusable: that is why we reopen
    }
    this.db = fresh;
    this.s = this.prepare();
    this.loadState(fresh);
    this.reopenNeeded = false;
    this.log?.info('Outbox connection reopened after an I/O error');
  }

  private setFull(reason: string, cause: 'bounds' | 'io'): void {
    if (this.full?.reason === reason) return;
    const first = this.full === undefined;
    this.full = { reason, cause, since: this.full?.since ?? this.now() };
    if (first) this.log?.error({ reason }, 'Outbox refuses new data: sources are no longer acknowledged until it recovers.');
  }

  private clearFull(): void {
    if (!this.full) return;
    this.log?.warn({ previous: this.full.reason }, 'Outbox accepts data again: ingest resumed.');
    this.full = undefined;
  }

  private measure(): void {
    try {
      const pageSize = Number(this.db.pragma('page_size'));
      const pages = Number(this.db.pragma('page_count'));
      const free = Number(this.db.pragma('freelist_count'));
      this.cachedBytes = (pages - free) * pageSize;
    } catch {
      // keep the last figure (an I/O error is reported by the write path)
    }
    try {
      this.cachedWal = statSync(`${this.path}-wal`).size;
    } catch {
      this.cachedWal = 0;
    }
    this.cachedBytes += this.cachedWal;
    try {
      const fs = statfsSync(dirname(this.path));
      this.cachedDiskFree = fs.bavail * fs.bsize;
    } catch {
      this.cachedDiskFree = Number.MAX_SAFE_INTEGER;
    }
    this.boundsCheckedAt = performance.now();
    this.writtenSinceMeasure = 0;
  }

  /**
   * Whether the cached sizes may be stale. Measured at least every second, and sooner when the payload
   * written since (times WRITE_AMPLIFICATION: WAL copy, table, indexes) could have used half the room left
   * before a bound — so a fast writer cannot run far past minFreeDiskBytes or maxBytes between measurements.
   */
  private boundsStale(): boolean {
    if (this.full || performance.now() - this.boundsCheckedAt > BOUNDS_CHECK_MS) return true;
    const room = Math.min(this.opts.maxBytes - this.cachedBytes, this.cachedDiskFree - this.opts.minFreeDiskBytes);
    return this.writtenSinceMeasure * WRITE_AMPLIFICATION >= room / 2;
  }

  private overBounds(): string | undefined {
    if (this.cachedBytes >= this.opts.maxBytes) return `outbox uses ${this.cachedBytes} bytes, maxBytes is ${this.opts.maxBytes}`;
    if (this.cachedDiskFree < this.opts.minFreeDiskBytes) return `disk has ${this.cachedDiskFree} bytes free, minFreeDiskBytes is ${this.opts.minFreeDiskBytes}`;
    return undefined;
  }

  /** Refuses new data when the outbox is at its size cap or the disk at its free-space floor. */
  private checkBounds(): void {
    if (this.boundsStale()) this.measure();
    let reason = this.overBounds();
    if (reason && this.role === 'agent' && performance.now() - this.spacePurgedAt > BOUNDS_CHECK_MS) {
      // sent transactions and old raw events may go early; pending business transactions never do
      // (the agent's connection does this housekeeping; a writer only refuses until there is room)
      this.spacePurgedAt = performance.now();
      if (this.purgeForSpace() > 0) {
        this.measure();
        reason = this.overBounds();
      }
    }
    if (reason) {
      this.setFull(reason, 'bounds');
      throw new PlantBridgeError('OUTBOX_FULL', `outbox full: ${reason}`);
    }
    if (this.full?.cause === 'bounds') this.clearFull();
  }

  /** Under space pressure: drop sent transactions and raw events past the dedupe window (never pending ones). */
  private purgeForSpace(): number {
    let deleted = 0;
    try {
      for (let i = 0; i < 10; i++) {
        const n = this.purgeStep(this.now(), this.now() - SPACE_PRESSURE_KEEP_EVENTS_MS, PURGE_CHUNK * 5);
        deleted += n;
        if (n === 0) break;
      }
      if (deleted > 0) {
        this.log?.warn({ deleted }, 'Outbox at its bound: dropped sent transactions and old raw events early.');
        // the deletes went to the WAL: give its space back now (ingest is refused anyway, nothing waits)
        this.db.pragma('wal_checkpoint(TRUNCATE)');
      }
    } catch (err) {
      this.log?.warn({ err }, 'Could not free space in the outbox');
    }
    return deleted;
  }

  // ---------------------------------------------------------------------------------------- forwarding

  /**
   * Leases up to `limit` transactions in outbox order; one order's items are never in two leases at once.
   * The lease is one row in `leases` (its seqs and orders); the transaction rows are not written.
   */
  claim(limit: number, leaseMs: number, maxBytes = Infinity): ClaimedTx[] {
    if (this.closed) throw new PlantBridgeError('INTERNAL', 'outbox is closed');
    const now = this.now();
    const s = this.s;
    const token = ++this.claims;
    const claimed = this.relaxed(() =>
      this.db.immediate(() => {
        // live leases (this run's, or another process's) block their items and orders; ended ones are dropped
        const leased = new Set<number>();
        const blocked = new Set<string>();
        for (const l of s.leases.all()) {
          if (Number(l.until) < now) {
            this.dropLease(Number(l.id));
            continue;
          }
          for (const seq of JSON.parse(String(l.seqs)) as number[]) leased.add(seq);
          for (const order of JSON.parse(String(l.orders)) as string[]) blocked.add(order);
        }
        for (const r of s.blockedOrders.all(now, now + RETRY_HORIZON_MS)) blocked.add(String(r.order_key));
        // picked rows: seq, key, order key, attempts, bytes; their bodies are read in one statement at the end
        const picked: Array<[number, string, string, number, number]> = [];
        const delayed: number[] = [];
        let bytes = 0;
        let after = 0;
        // the claim looks at the first limit + CLAIM_SCAN pending rows, whatever it skips among them
        const horizon = s.claimHorizon.get(0, limit + CLAIM_SCAN - 1)?.seq;
        const upTo = horizon === undefined || horizon === null ? Number.MAX_SAFE_INTEGER : Number(horizon);
        const skip = JSON.stringify([...blocked]);
        // pages of pending rows of unblocked orders in outbox order, until the batch is full
        scan: while (picked.length < limit) {
          const page = s.claimScan.all(after, upTo, skip, Math.max(64, limit - picked.length));
          if (page.length === 0) break;
          for (const r of page) {
            after = Number(r.seq);
            if (picked.length >= limit) break;
            // a leased row's order is in its lease, so SQLite skipped it already; kept as the guard that a
            // seq is never in two leases, whatever a lease row from another version holds
            if (leased.has(after)) continue;
            const next = Number(r.next_attempt_at);
            if ((next > now && next <= now + RETRY_HORIZON_MS) || blocked.has(String(r.order_key))) {
              // keep the order's items in sequence: a later item never overtakes a waiting one
              blocked.add(String(r.order_key));
              continue;
            }
            const size = Number(r.bytes);
            if (picked.length > 0 && bytes + size > maxBytes) break scan;
            bytes += size;
            if (next > 0) delayed.push(after);
            picked.push([after, String(r.idempotency_key), String(r.order_key), Number(r.attempts) + 1, size]);
          }
        }
        if (picked.length === 0) return undefined;
        const seqs = JSON.stringify(picked.map((c) => c[0]));
        const orders = [...new Set(picked.map((c) => c[2]))];
        const id = Number(s.insertLease.get(now + leaseMs, seqs, JSON.stringify(orders))!.id);
        if (delayed.length > 0) s.clearDelayMany.run(JSON.stringify(delayed));
        return { id, items: this.readBodies(picked, seqs, token) };
      }),
    );
    if (!claimed) return [];
    // remembered only once the lease is committed
    this.ownLeases.set(claimed.id, new Map(claimed.items.map((c) => [c.seq, c.orderKey])));
    this.leaseToken.set(claimed.id, token);
    for (const c of claimed.items) this.leaseOfSeq.set(c.seq, claimed.id);
    return claimed.items;
  }

  /**
   * The claimed items with their bodies. Usually one statement joins all bodies, in seq order and
   * comma-separated, into one buffer, and each item's body is a view of it: no allocation per item, and
   * a batch of consecutive items is one slice of it (serialiseBatch). Each view is checked (the stored
   * byte length, a JSON object, a comma after it); if anything does not fit (a body from before schema 4
   * lives in the row), the bodies are read one row each.
   */
  private readBodies(picked: Array<[number, string, string, number, number]>, seqs: string, lease: number): ClaimedRow[] {
    const s = this.s;
    const joined = s.bodiesJoined.get(seqs)?.body;
    if (Buffer.isBuffer(joined)) {
      const items: ClaimedRow[] = [];
      let off = 0;
      for (const [seq, key, orderKey, attempts, size] of picked) {
        const end = off + size;
        if (end > joined.length || joined[off] !== 0x7b || joined[end - 1] !== 0x7d || (end < joined.length && joined[end] !== 0x2c)) break;
        items.push(new ClaimedRow(seq, key, orderKey, lease, joined.subarray(off, end), attempts, size));
        off = end + 1;
      }
      if (items.length === picked.length && off === joined.length + 1) return items;
    }
    const bodies = new Map<number, Buffer>();
    for (const b of s.bodiesMany.all(seqs)) bodies.set(Number(b.seq), b.body as Buffer);
    return picked.map(([seq, key, orderKey, attempts, size]) => {
      // rows written before schema 4 keep their body in the row itself
      const raw = bodies.get(seq) ?? ((s.legacyBody.get(seq)?.body as Buffer | undefined) ?? Buffer.alloc(0));
      return new ClaimedRow(seq, key, orderKey, lease, raw, attempts, size);
    });
  }

  /** Ends a lease whose items were not all settled: they count one attempt and are free to claim again. */
  private dropLease(id: number): number {
    const n = this.s.expireLease.run(id).changes;
    this.s.deleteLease.run(id);
    const items = this.ownLeases.get(id);
    if (items) {
      for (const seq of items.keys()) if (this.leaseOfSeq.get(seq) === id) this.leaseOfSeq.delete(seq);
      this.ownLeases.delete(id);
      this.leaseToken.delete(id);
    }
    return n;
  }

  /**
   * Claims and settles need no fsync of their own: a lost lease or a lost "sent" only means one more send,
   * which the hub dedupes. They commit with synchronous=NORMAL (still crash-safe in WAL mode); the next
   * FULL commit on the ack path syncs them along. Only appends, which precede upstream acks, pay the fsync.
   */
  private relaxed<T>(fn: () => T): T {
    if (this.opts.synchronous !== 'full' || this.role === 'tool') return fn();
    this.db.pragma('synchronous = NORMAL');
    try {
      return fn();
    } finally {
      this.db.pragma('synchronous = FULL');
    }
  }

  /** Applies the hub's per-item results: sent, dead letter (with the hub's code), or retry later with backoff. */
  settle(answers: Settlement[]): void {
    if (answers.length === 0) return;
    if (this.closed) throw new PlantBridgeError('INTERNAL', 'outbox is closed');
    const now = this.now();
    const s = this.s;
    // a late answer of a lease that is no longer the item's: its retry or dead letter would act on an item
    // that another lease may have in flight; its "sent" is applied to the row only (the hub has the item)
    const stale = (st: Settlement) => {
      if (st.lease === undefined) return false;
      const id = this.leaseOfSeq.get(st.seq);
      return id === undefined || this.leaseToken.get(id) !== st.lease;
    };
    const settlements = answers.some(stale) ? answers.filter((st) => !stale(st) || st.status === 'sent') : answers;
    // the leases of this run that hold settled items, with what stays out of each
    const rest = new Map<number, Map<number, string>>();
    for (const st of settlements) {
      if (stale(st)) continue;
      const id = this.leaseOfSeq.get(st.seq);
      if (id === undefined) continue;
      let items = rest.get(id);
      if (!items) rest.set(id, (items = new Map(this.ownLeases.get(id))));
      items.delete(st.seq);
    }
    if (settlements.length === 0) return;
    this.relaxed(() => this.settleAll(settlements, now, s, rest));
    // committed: forget the settled items' leases
    for (const st of settlements) if (!stale(st)) this.leaseOfSeq.delete(st.seq);
    for (const [id, items] of rest) {
      if (items.size === 0) {
        this.ownLeases.delete(id);
        this.leaseToken.delete(id);
      } else this.ownLeases.set(id, items);
    }
  }

  private settleAll(settlements: Settlement[], now: number, s: Stmts, rest: Map<number, Map<number, string>>): void {
    this.db.immediate(() => {
      // sent items grouped by their result's JSON text
      const sent = new Map<string | null, number[]>();
      for (const st of settlements) {
        if (st.status === 'sent') {
          const result = st.result === undefined ? null : JSON.stringify(st.result);
          const seqs = sent.get(result);
          if (seqs) seqs.push(st.seq);
          else sent.set(result, [st.seq]);
        }
        else if (st.status === 'retry') {
          // only while leased: an item whose lease ran out is pending again (and maybe in another batch)
          if (!this.leaseOfSeq.has(st.seq)) continue;
          let delay = st.delayMs;
          if (!Number.isFinite(delay) || delay < 0) {
            // this attempt is counted by the update below
            const attempts = Number(s.attempts.get(st.seq)?.attempts ?? 0) + 1;
            delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(20, Math.max(0, attempts - 1))) * (0.5 + Math.random() / 2);
          }
          s.settleRetry.run(Math.round(now + Math.min(delay, RETRY_HORIZON_MS)), st.reason ?? null, st.seq);
        } else {
          const r = s.settleDead.run(now, JSON.stringify({ code: st.code, reason: st.reason }), st.seq);
          if (r.changes > 0) s.insertDead.run('transaction', st.seq, null, st.code, st.reason, null, now);
        }
      }
      // a large group in one statement with its result bound once; the odd ones (pairs of seq and result) in another
      const odd: Array<[number, string | null]> = [];
      let moved = 0;
      for (const [result, seqs] of sent) {
        if (seqs.length >= SAME_RESULT_GROUP) moved += s.settleSentSameMany.run(now, result, JSON.stringify(seqs)).changes;
        else for (const seq of seqs) odd.push([seq, result]);
      }
      if (odd.length > 0) moved += s.settleSentMany.run(now, JSON.stringify(odd)).changes;
      if (moved > 0) s.countSent.run(moved, moved);
      for (const [id, items] of rest) {
        if (items.size === 0) s.deleteLease.run(id);
        else s.updateLease.run(JSON.stringify([...items.keys()]), JSON.stringify([...new Set(items.values())]), id);
      }
    });
  }

  // ---------------------------------------------------------------------------------------- dead letters, alarms

  /**
   * Records an input that could not become a signal (undecodable payload): acknowledged, kept, visible.
   * False when an open dead letter already has `dedupeKey` (the same input delivered again): nothing written.
   */
  deadLetterInput(source: string, code: ErrorCode, reason: string, payload: Buffer | string | null, dedupeKey?: string): boolean {
    try {
      return this.s.insertInputDead.run(source, code, reason, capPayload(payload), this.now(), dedupeKey ?? null).changes > 0;
    } catch (err) {
      throw this.toStorageError(err);
    }
  }

  listDeadLetters(limit = 100, includeResolved = false): DeadLetter[] {
    const rows = this.db
      .prepare(`SELECT * FROM dead_letters ${includeResolved ? '' : 'WHERE resolved IS NULL'} ORDER BY id DESC LIMIT ?`)
      .all(limit);
    return rows.map((r) => ({
      id: Number(r.id),
      kind: r.kind as DeadLetter['kind'],
      txSeq: r.tx_seq === null ? null : Number(r.tx_seq),
      source: r.source === null ? null : String(r.source),
      // the database holds only codes this outbox wrote
      code: String(r.code) as ErrorCode,
      reason: String(r.reason),
      payload: r.payload === null ? null : Buffer.isBuffer(r.payload) ? r.payload.toString('utf8') : String(r.payload),
      createdAt: new Date(Number(r.created_at)).toISOString(),
      dedupeKey: r.dedupe_key === null || r.dedupe_key === undefined ? null : String(r.dedupe_key),
    }));
  }

  /** Puts a dead-lettered transaction back in the queue (after the cause was fixed). Inputs cannot be replayed here. */
  replayDeadLetter(id: number): boolean {
    return this.db.immediate(() => {
      const dl = this.db.prepare('SELECT tx_seq FROM dead_letters WHERE id = ? AND resolved IS NULL').get(id);
      if (!dl || dl.tx_seq === null) return false;
      this.db.prepare("UPDATE transactions SET status = 'pending', next_attempt_at = 0, settled_at = NULL, result = NULL WHERE seq = ? AND status = 'dead'").run(dl.tx_seq);
      this.db.prepare("UPDATE dead_letters SET resolved = 'replayed' WHERE id = ?").run(id);
      return true;
    });
  }

  /** Replays every open transaction dead letter, in chunks (short write transactions beside a running agent). */
  replayAllDeadLetters(chunk = 500): number {
    let total = 0;
    for (;;) {
      const ids = this.db
        .prepare("SELECT id FROM dead_letters WHERE resolved IS NULL AND kind = 'transaction' AND tx_seq IS NOT NULL ORDER BY id LIMIT ?")
        .all(chunk)
        .map((r) => Number(r.id));
      if (ids.length === 0) return total;
      this.db.immediate(() => {
        for (const id of ids) if (this.replayDeadLetter(id)) total++;
      });
    }
  }

  discardDeadLetter(id: number): boolean {
    return this.db.immediate(() => {
      const dl = this.db.prepare('SELECT tx_seq FROM dead_letters WHERE id = ? AND resolved IS NULL').get(id);
      if (!dl) return false;
      if (dl.tx_seq !== null) this.db.prepare("UPDATE transactions SET status = 'discarded' WHERE seq = ? AND status = 'dead'").run(dl.tx_seq);
      this.db.prepare("UPDATE dead_letters SET resolved = 'discarded' WHERE id = ?").run(id);
      return true;
    });
  }

  alarms(): Alarm[] {
    const rows = this.db.prepare('SELECT code, message, since FROM alarms ORDER BY since').all();
    const out: Alarm[] = rows.map((r) => ({ code: String(r.code) as AlarmCode, message: String(r.message), since: new Date(Number(r.since)).toISOString() }));
    if (this.full) out.push({ code: this.full.cause === 'io' ? 'OUTBOX_IO' : 'OUTBOX_FULL', message: this.full.reason, since: new Date(this.full.since).toISOString() });
    return out;
  }

  acknowledgeAlarm(code: string): boolean {
    return this.db.prepare('DELETE FROM alarms WHERE code = ?').run(code).changes > 0;
  }

  // ---------------------------------------------------------------------------------------- reports, CLI

  /**
   * O(1) at any backlog: counters kept by triggers, one index probe, the lease rows (one per claim in
   * flight), three pragmas, one statfs.
   */
  stats(): OutboxStats {
    this.measure();
    const c: Record<string, number> = {};
    for (const r of this.s.counters.all()) c[String(r.name)] = Number(r.value);
    const oldest = this.s.oldestPending.get()?.t;
    return {
      // leased items are pending rows (schema 5); tx_leased counts rows of files from before, until released
      pending: (c.tx_pending ?? 0) + (c.tx_leased ?? 0),
      leased: Number(this.s.leasedCount.get(this.now())?.n ?? 0),
      oldestPendingAgeS: oldest === null || oldest === undefined ? 0 : Math.max(0, (this.now() - Number(oldest)) / 1000),
      deadLetters: c.dead_letters_open ?? 0,
      shadow: c.tx_shadow ?? 0,
      bytes: this.cachedBytes,
      diskFreeBytes: this.cachedDiskFree === Number.MAX_SAFE_INTEGER ? 0 : this.cachedDiskFree,
      full: this.full !== undefined,
      ...(this.full ? { fullReason: this.full.reason } : {}),
      lastCommitMs: this.lastCommitMs,
      sent: c.tx_sent ?? 0,
      walBytes: this.cachedWal,
      commits: this.commits,
    };
  }

  /** Transactions in outbox order, optionally of one status, after a sequence number (paging). */
  listTransactions(opts: { status?: TxStatus; limit?: number; afterSeq?: number } = {}): ListedTx[] {
    const limit = Math.max(1, Math.min(10_000, opts.limit ?? 50));
    const now = this.now();
    // a leased item is a pending row held by a live lease (schema 5)
    const live = 'SELECT value FROM leases, json_each(leases.seqs) WHERE leases.until >= ?';
    // the rare statuses are read through the partial index transactions_other (its condition, verbatim)
    const where =
      opts.status === 'leased'
        ? `AND status = 'pending' AND seq IN (${live})`
        : opts.status === 'pending'
          ? `AND status = 'pending' AND seq NOT IN (${live})`
          : opts.status === 'sent'
            ? 'AND status = ?'
            : opts.status
              ? "AND status = ? AND status NOT IN ('pending', 'sent')"
              : '';
    const whereParams = opts.status === 'leased' || opts.status === 'pending' ? [now] : opts.status ? [opts.status] : [];
    const rows = this.db
      .prepare(
        `SELECT seq, idempotency_key, type, order_key, CASE WHEN status = 'pending' AND seq IN (${live}) THEN 'leased' ELSE status END AS status,
           attempts, created_at, settled_at, next_attempt_at, last_error, bytes
         FROM transactions WHERE seq > ? ${where} ORDER BY seq LIMIT ?`,
      )
      .all(now, opts.afterSeq ?? 0, ...whereParams, limit);
    return rows.map((r) => ({
      seq: Number(r.seq),
      idempotencyKey: String(r.idempotency_key),
      type: String(r.type),
      orderKey: String(r.order_key),
      status: r.status as TxStatus,
      attempts: Number(r.attempts),
      createdAt: new Date(Number(r.created_at)).toISOString(),
      settledAt: r.settled_at === null ? null : new Date(Number(r.settled_at)).toISOString(),
      nextAttemptAt: Number(r.next_attempt_at) > 0 ? new Date(Number(r.next_attempt_at)).toISOString() : null,
      lastError: r.last_error === null ? null : String(r.last_error),
      bytes: Number(r.bytes),
    }));
  }

  /**
   * Puts transactions sent at or after `sinceMs` back to pending, in outbox order (for a hub restored from
   * a backup: the hub dedupes what it still has). Short chunks, so it runs beside a live agent.
   */
  resendSince(sinceMs: number, chunk = 1000): number {
    let total = 0;
    for (;;) {
      const n = this.db.immediate(
        () =>
          this.db
            .prepare(
              `UPDATE transactions SET status = 'pending', next_attempt_at = 0, settled_at = NULL, lease_until = NULL, result = NULL
               WHERE seq IN (SELECT seq FROM transactions WHERE status = 'sent' AND settled_at >= ? ORDER BY seq LIMIT ?)`,
            )
            .run(sinceMs, chunk).changes,
      );
      total += n;
      if (n < chunk) return total;
    }
  }

  /** Where the hub's ERP-outcome feed stopped ('0' before the first outcome). */
  outcomeCursor(): string {
    const row = this.db.prepare("SELECT value FROM meta WHERE key = 'outcome_cursor'").get() as { value?: unknown } | undefined;
    return row?.value === undefined ? '0' : String(row.value);
  }

  /**
   * Marks sent transactions with their ERP outcome (document number, or the failure) and stores the feed's
   * cursor in the same commit. Outcomes for keys this outbox no longer has (purged by retention) are skipped.
   */
  recordOutcomes(items: Array<{ idempotencyKey: string; outcome: { state: string; erpRef?: string; postedAt?: string; code?: string; message?: string } }>, cursor: string): number {
    return this.db.immediate(() => {
      const mark = this.db.prepare('UPDATE transactions SET erp_state = ?, erp_ref = ?, erp_at = ? WHERE idempotency_key = ?');
      let n = 0;
      for (const { idempotencyKey, outcome } of items) {
        if (outcome.state !== 'posted' && outcome.state !== 'failed') continue;
        const ref = outcome.state === 'posted' ? (outcome.erpRef ?? null) : `${outcome.code ?? 'ERP_BUSINESS'}: ${outcome.message ?? ''}`.slice(0, 1000);
        const at = outcome.postedAt ? Date.parse(outcome.postedAt) : this.now();
        n += mark.run(outcome.state, ref, Number.isFinite(at) ? at : this.now(), idempotencyKey).changes;
      }
      this.db.prepare("INSERT INTO meta(key, value) VALUES ('outcome_cursor', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value").run(cursor);
      return n;
    });
  }

  /** Reads rule state as committed (for reports and tests). */
  ruleState(ruleId: string): unknown {
    this.syncState();
    return this.cachedState(ruleId);
  }

  /** Read-only access for CLI reports and tests. */
  query<T = unknown>(sql: string, ...params: unknown[]): T[] {
    return this.db.prepare(sql).all(...params) as T[];
  }

  // ---------------------------------------------------------------------------------------- housekeeping

  /**
   * PASSIVE checkpoint (never waits for, nor blocks, a writer). With only this process on the file it
   * completes, and the next commit rewinds the WAL and trims it to walMaxBytes. If a reader (the CLI) kept
   * it from completing and the WAL outgrew walMaxBytes, a TRUNCATE checkpoint runs while no append waits.
   */
  checkpoint(): void {
    if (this.closed || this.role !== 'agent') return;
    try {
      this.db.pragma('wal_checkpoint(PASSIVE)');
      let wal = 0;
      try {
        wal = statSync(`${this.path}-wal`).size;
      } catch {
        // no WAL
      }
      if (wal > this.opts.walMaxBytes && this.queue.length === 0) this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch (err) {
      this.log?.warn({ err }, 'WAL checkpoint failed; will retry');
    }
  }

  /** One bounded retention step; returns rows deleted. */
  private purgeStep(sentCutoffMs: number, eventCutoffMs: number, chunk: number): number {
    return this.db.immediate(() => {
      let n = 0;
      if (Number.isFinite(sentCutoffMs)) {
        n += this.s.purgeSent.run(sentCutoffMs, chunk).changes;
        n += this.s.purgeResolved.run(sentCutoffMs, chunk).changes;
      }
      if (Number.isFinite(eventCutoffMs)) n += this.s.purgeEvents.run(chunk, eventCutoffMs).changes;
      return n;
    });
  }

  /**
   * Retention: sent transactions after retentionDays, raw events after eventRetentionDays, in short steps
   * that yield to the event loop. Resolves with the rows deleted; a call while one runs joins it.
   */
  purgeExpired(): Promise<number> {
    if (this.closed || this.role !== 'agent') return Promise.resolve(0);
    if (this.purging) return this.purging;
    const now = this.now();
    const sentCutoff = this.opts.retentionDays > 0 ? now - this.opts.retentionDays * DAY_MS : -Infinity;
    const eventCutoff = this.opts.eventRetentionDays > 0 ? now - this.opts.eventRetentionDays * DAY_MS : -Infinity;
    this.purging = new Promise<number>((resolve) => {
      let total = 0;
      const step = () => {
        let n = 0;
        if (!this.closed) {
          try {
            n = this.purgeStep(sentCutoff, eventCutoff, PURGE_CHUNK);
          } catch (err) {
            this.log?.warn({ err }, 'Retention purge failed; will retry');
          }
        }
        total += n;
        // yield between steps so appends keep their latency
        if (n > 0) setImmediate(step);
        else {
          this.purging = undefined;
          resolve(total);
        }
      };
      step();
    });
    return this.purging;
  }

  /** Finishes the queued commits, checkpoints and closes. */
  close(): void {
    if (this.closed) return;
    if (this.flushImmediate) clearImmediate(this.flushImmediate);
    this.flushImmediate = undefined;
    while (this.queue.length > 0) this.flush();
    this.closed = true;
    clearInterval(this.checkpointTimer);
    clearInterval(this.retentionTimer);
    if (this.role === 'agent') {
      try {
        this.db.pragma('wal_checkpoint(TRUNCATE)');
      } catch {
        // best effort: the WAL is replayed at next open
      }
    }
    this.db.close();
  }
}

/** Cheap structural checks: a malformed signal is dead-lettered instead of failing the whole group commit. */
function invalidSignal(sig: Signal): string | undefined {
  if (!sig || typeof sig !== 'object') return 'signal is not an object';
  for (const k of ['source', 'ref', 'sourceId', 'sourceTime', 'quality'] as const) {
    if (typeof sig[k] !== 'string' || sig[k].length === 0) return `signal.${k} is missing or not a string`;
  }
  return undefined;
}

export function openOutbox(opts: OutboxOptions): Outbox {
  return new Outbox(opts);
}
