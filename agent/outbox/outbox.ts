import { existsSync, mkdirSync, renameSync, statSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { PlantBridgeError, type Signal, type Transaction, transactionTypeOf } from '../../contracts/index.ts';
import { migrations } from './migrations.ts';

/**
 * The agent's durable store-and-forward (DESIGN.md §2-§4): raw events deduped by sourceId, rule state and
 * derived transactions are committed in ONE SQLite transaction; only then does `append` resolve, so a
 * driver acknowledges its source after the commit. Transactions leave only after the hub's per-item result.
 */

export interface DerivedItem {
  tx: Transaction;
  /** shadow transactions are stored for reports but never forwarded */
  shadow: boolean;
}

export interface Quarantined {
  code: string;
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
  synchronous?: 'full' | 'normal';
  maxBytes?: number;
  minFreeDiskBytes?: number;
  retentionDays?: number;
  groupCommitDelayMs?: number;
  groupCommitRows?: number;
  checkpointIntervalMs?: number;
  rules?: Deriver;
  log?: Logger;
  now?: () => number;
  /** path of better-sqlite3's native addon (the single executable extracts it from its assets) */
  nativeBinding?: string;
}

export interface AppendResult {
  accepted: number;
  duplicates: number;
  transactions: number;
}

export interface ClaimedTx {
  seq: number;
  tx: Transaction;
  attempts: number;
  bytes: number;
}

export type Settlement =
  | { seq: number; status: 'sent'; result?: unknown }
  | { seq: number; status: 'dead'; code: string; reason: string }
  | { seq: number; status: 'retry'; delayMs: number; reason?: string };

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
}

export interface Alarm {
  code: string;
  message: string;
  since: string;
}

export interface DeadLetter {
  id: number;
  kind: 'transaction' | 'signal' | 'quarantine';
  txSeq: number | null;
  source: string | null;
  code: string;
  reason: string;
  payload: string | null;
  createdAt: string;
}

interface PendingAppend {
  signals: Signal[];
  resolve: (r: AppendResult) => void;
  reject: (e: unknown) => void;
}

const DAY_MS = 86_400_000;
const BOUNDS_CHECK_MS = 1000;

export class Outbox {
  readonly path: string;
  private db: Database.Database;
  private readonly opts: Required<Omit<OutboxOptions, 'log' | 'rules' | 'now' | 'nativeBinding'>>;
  private readonly nativeBinding: string | undefined;
  private readonly rules: Deriver;
  private readonly log: Logger | undefined;
  private readonly now: () => number;
  private stateCache = new Map<string, unknown>();
  private queue: PendingAppend[] = [];
  private queuedRows = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private retentionTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private full: string | undefined;
  private boundsCheckedAt = -Infinity;
  private cachedBytes = 0;
  private cachedDiskFree = 0;
  private lastCommitMs = 0;
  private readonly stmts: ReturnType<Outbox['prepare']>;

  constructor(opts: OutboxOptions) {
    this.path = opts.path;
    this.opts = {
      path: opts.path,
      synchronous: opts.synchronous ?? 'full',
      maxBytes: opts.maxBytes ?? 10 * 1024 ** 3,
      minFreeDiskBytes: opts.minFreeDiskBytes ?? 1024 ** 3,
      retentionDays: opts.retentionDays ?? 7,
      groupCommitDelayMs: opts.groupCommitDelayMs ?? 5,
      groupCommitRows: opts.groupCommitRows ?? 1000,
      checkpointIntervalMs: opts.checkpointIntervalMs ?? 1000,
    };
    this.nativeBinding = opts.nativeBinding;
    this.rules = opts.rules ?? noRules;
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
    mkdirSync(dirname(this.path), { recursive: true });
    this.db = this.openChecked();
    this.stmts = this.prepare();
    for (const row of this.db.prepare('SELECT rule_id, state FROM rule_state').all() as Array<{ rule_id: string; state: string }>) {
      this.stateCache.set(row.rule_id, JSON.parse(row.state));
    }
    this.checkpointTimer = setInterval(() => this.checkpoint(), this.opts.checkpointIntervalMs);
    this.checkpointTimer.unref();
    this.retentionTimer = setInterval(() => this.purgeExpired(), 10 * 60_000);
    this.retentionTimer.unref();
  }

  /** Opens the file, checks it, and quarantines a corrupt one instead of crash-looping. */
  private openChecked(): Database.Database {
    let corruptReason: string | undefined;
    if (existsSync(this.path)) {
      try {
        const db = this.openRaw();
        const check = db.pragma('quick_check', { simple: true });
        if (check === 'ok') {
          this.migrate(db);
          return db;
        }
        corruptReason = String(check);
        db.close();
      } catch (err) {
        const code = (err as { code?: string }).code ?? '';
        if (!/SQLITE_(CORRUPT|NOTADB)/.test(code) && !/malformed|not a database/i.test(String(err))) throw err;
        corruptReason = String((err as Error).message);
      }
    }
    if (corruptReason === undefined) {
      const db = this.openRaw();
      this.migrate(db);
      return db;
    }
    const stamp = new Date(this.now()).toISOString().replace(/[:.]/g, '-');
    const moved = `${this.path}.corrupt-${stamp}`;
    for (const suffix of ['', '-wal', '-shm']) {
      if (existsSync(this.path + suffix)) renameSync(this.path + suffix, moved + suffix);
    }
    this.log?.error({ moved, reason: corruptReason }, 'Outbox database was corrupt: moved aside, starting a fresh one. Unsent transactions in it need recovery.');
    const db = this.openRaw();
    this.migrate(db);
    db.prepare('INSERT OR REPLACE INTO alarms(code, message, since) VALUES (?, ?, ?)').run(
      'OUTBOX_CORRUPT',
      `The outbox database was corrupt (${corruptReason.slice(0, 300)}) and was moved to ${moved}. Transactions not yet sent from it are not in the new outbox. Acknowledge with: plantbridge-agent outbox ack-alarm OUTBOX_CORRUPT`,
      this.now(),
    );
    return db;
  }

  private openRaw(): Database.Database {
    const db = new Database(this.path, this.nativeBinding ? { nativeBinding: this.nativeBinding } : undefined);
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${this.opts.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    // the inline auto-checkpoint halves ingest and stalls commits for ~0.5 s: checkpoint on a timer instead
    db.pragma('wal_autocheckpoint = 0');
    db.pragma('busy_timeout = 5000');
    db.pragma('cache_size = -16000');
    return db;
  }

  private migrate(db: Database.Database): void {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > migrations.length) {
      throw new PlantBridgeError('INTERNAL', `outbox schema version ${version} is newer than this agent knows (${migrations.length}): a downgrade needs the matching outbox`);
    }
    for (let v = version; v < migrations.length; v++) {
      db.transaction(() => {
        db.exec(migrations[v]);
        db.pragma(`user_version = ${v + 1}`);
      }).immediate();
    }
  }

  private prepare() {
    const db = this.db;
    return {
      insertEvent: db.prepare(
        'INSERT OR IGNORE INTO events(source_id, source, ref, value, quality, source_time, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      insertTx: db.prepare(
        'INSERT OR IGNORE INTO transactions(idempotency_key, id, type, order_key, status, body, bytes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      upsertState: db.prepare(
        'INSERT INTO rule_state(rule_id, state, updated_at) VALUES (?, ?, ?) ON CONFLICT(rule_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at',
      ),
      insertDead: db.prepare('INSERT INTO dead_letters(kind, tx_seq, source, code, reason, payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      expireLeases: db.prepare("UPDATE transactions SET status = 'pending', lease_until = NULL WHERE status = 'leased' AND lease_until < ?"),
      claim: db.prepare(`
        SELECT seq, body, attempts, bytes FROM transactions
        WHERE status = 'pending' AND next_attempt_at <= @now
          AND order_key NOT IN (
            SELECT order_key FROM transactions WHERE status = 'leased'
            UNION SELECT order_key FROM transactions WHERE next_attempt_at > @now AND status = 'pending')
        ORDER BY seq LIMIT @limit`),
      lease: db.prepare("UPDATE transactions SET status = 'leased', lease_until = ?, attempts = attempts + 1 WHERE seq = ?"),
      settleSent: db.prepare("UPDATE transactions SET status = 'sent', settled_at = ?, result = ?, lease_until = NULL WHERE seq = ? AND status = 'leased'"),
      settleDead: db.prepare("UPDATE transactions SET status = 'dead', settled_at = ?, result = ?, lease_until = NULL WHERE seq = ? AND status = 'leased'"),
      settleRetry: db.prepare("UPDATE transactions SET status = 'pending', next_attempt_at = ?, lease_until = NULL WHERE seq = ? AND status = 'leased'"),
      countByStatus: db.prepare('SELECT status, COUNT(*) AS n FROM transactions GROUP BY status'),
      oldestPending: db.prepare("SELECT MIN(created_at) AS t FROM transactions WHERE status IN ('pending', 'leased')"),
      openDeadLetters: db.prepare('SELECT COUNT(*) AS n FROM dead_letters WHERE resolved IS NULL'),
    };
  }

  /**
   * Commits signals (deduped), the rule state they change and the transactions they derive, all in one
   * SQLite transaction. Resolves after the commit is durable; rejects with OUTBOX_FULL / OUTBOX_IO, in
   * which case nothing of this call was stored and the caller must not acknowledge its source.
   */
  append(signals: Signal[]): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new PlantBridgeError('INTERNAL', 'outbox is closed'));
    if (signals.length === 0) return Promise.resolve({ accepted: 0, duplicates: 0, transactions: 0 });
    return new Promise((resolve, reject) => {
      this.queue.push({ signals, resolve, reject });
      this.queuedRows += signals.length;
      if (this.queuedRows >= this.opts.groupCommitRows) this.scheduleFlush(0);
      else this.scheduleFlush(this.opts.groupCommitDelayMs);
    });
  }

  private scheduleFlush(delayMs: number): void {
    if (delayMs === 0) {
      if (this.flushTimer) clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
      setImmediate(() => this.flush());
      return;
    }
    if (this.flushTimer) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.flush();
    }, delayMs);
  }

  /** Runs time-based rules (aggregation windows that must close after T seconds). */
  tick(): Promise<AppendResult> {
    return this.commitGroup([], true)[0];
  }

  private flush(): void {
    if (this.queue.length === 0) return;
    const group = this.queue;
    this.queue = [];
    this.queuedRows = 0;
    const started = performance.now();
    try {
      this.checkBounds();
      const results = this.commit(group.map((p) => p.signals), false);
      this.lastCommitMs = performance.now() - started;
      group.forEach((p, i) => p.resolve(results[i]));
    } catch (err) {
      const e = this.toStorageError(err);
      for (const p of group) p.reject(e);
    }
  }

  private commitGroup(signals: Signal[], tick: boolean): Promise<AppendResult>[] {
    try {
      if (this.closed) throw new PlantBridgeError('INTERNAL', 'outbox is closed');
      this.checkBounds();
      return this.commit([signals], tick).map((r) => Promise.resolve(r));
    } catch (err) {
      return [Promise.reject(this.toStorageError(err))];
    }
  }

  private commit(groups: Signal[][], tick: boolean): AppendResult[] {
    const overlay = new Map<string, unknown>();
    const access: StateAccess = {
      get: (id) => (overlay.has(id) ? overlay.get(id) : this.stateCache.get(id)),
      set: (id, s) => void overlay.set(id, s),
    };
    const now = this.now();
    const s = this.stmts;
    const store = (d: Derivation): number => {
      let n = 0;
      for (const { tx, shadow } of d.items) {
        const body = JSON.stringify(tx);
        const orderKey = `${tx.workCenter ?? ''}:${tx.data.order}`;
        const r = s.insertTx.run(tx.idempotencyKey, tx.id, transactionTypeOf(tx) ?? 'unknown', orderKey, shadow ? 'shadow' : 'pending', body, body.length, now);
        n += r.changes;
      }
      for (const q of d.quarantined) {
        s.insertDead.run('quarantine', null, q.source ?? null, q.code, q.reason, q.payload === undefined ? null : JSON.stringify(q.payload), now);
      }
      return n;
    };
    const results = this.db.transaction(() => {
      const out: AppendResult[] = [];
      for (const signals of groups) {
        const r: AppendResult = { accepted: 0, duplicates: 0, transactions: 0 };
        for (const sig of signals) {
          const ins = s.insertEvent.run(
            sig.sourceId,
            sig.source,
            sig.ref,
            sig.value === null ? null : JSON.stringify(sig.value),
            sig.quality,
            sig.sourceTime,
            Date.parse(sig.receivedAt),
          );
          if (ins.changes === 0) {
            r.duplicates++;
            continue;
          }
          r.accepted++;
          r.transactions += store(this.rules.derive(sig, access));
        }
        out.push(r);
      }
      if (tick) out[0].transactions += store(this.rules.tick(now, access));
      for (const [id, state] of overlay) s.upsertState.run(id, JSON.stringify(state), now);
      return out;
    })();
    // the commit is durable: only now does the in-memory rule state move on
    for (const [id, state] of overlay) this.stateCache.set(id, state);
    if (this.full) this.clearFull();
    return results;
  }

  private toStorageError(err: unknown): unknown {
    if (err instanceof PlantBridgeError) return err;
    const code = String((err as { code?: string }).code ?? '');
    if (/SQLITE_(FULL|IOERR|CANTOPEN|READONLY)/.test(code) || /ENOSPC|EIO/.test(String(err))) {
      this.setFull(`I/O error: ${code || String(err)}`);
      return new PlantBridgeError('OUTBOX_IO', `outbox write failed (${code}); sources are not acknowledged until it recovers`, { cause: err });
    }
    return err;
  }

  private setFull(reason: string): void {
    if (this.full === reason) return;
    this.full = reason;
    this.log?.error({ reason }, 'Outbox is full: sources are no longer acknowledged until space returns.');
  }

  private clearFull(): void {
    this.log?.warn({ previous: this.full }, 'Outbox has space again: ingest resumed.');
    this.full = undefined;
  }

  private measure(): void {
    const pageSize = this.db.pragma('page_size', { simple: true }) as number;
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const free = this.db.pragma('freelist_count', { simple: true }) as number;
    let wal = 0;
    try {
      wal = statSync(`${this.path}-wal`).size;
    } catch {
      // no WAL file yet
    }
    this.cachedBytes = (pages - free) * pageSize + wal;
    try {
      const fs = statfsSync(dirname(this.path));
      this.cachedDiskFree = fs.bavail * fs.bsize;
    } catch {
      this.cachedDiskFree = Number.MAX_SAFE_INTEGER;
    }
    this.boundsCheckedAt = performance.now();
  }

  /** Refuses new data when the outbox is at its size cap or the disk at its free-space floor. */
  private checkBounds(): void {
    if (performance.now() - this.boundsCheckedAt > BOUNDS_CHECK_MS || this.full) this.measure();
    let reason: string | undefined;
    if (this.cachedBytes >= this.opts.maxBytes) reason = `outbox uses ${this.cachedBytes} bytes, maxBytes is ${this.opts.maxBytes}`;
    else if (this.cachedDiskFree < this.opts.minFreeDiskBytes) reason = `disk has ${this.cachedDiskFree} bytes free, minFreeDiskBytes is ${this.opts.minFreeDiskBytes}`;
    if (reason) {
      // raw events and sent transactions may go early; pending business transactions never do
      if (this.purgeForSpace() > 0) this.measure();
      if (this.cachedBytes >= this.opts.maxBytes || this.cachedDiskFree < this.opts.minFreeDiskBytes) {
        this.setFull(reason);
        throw new PlantBridgeError('OUTBOX_FULL', `outbox full: ${reason}`);
      }
    }
  }

  /** Leases up to `limit` transactions in outbox order; one order's items are never in two leases at once. */
  claim(limit: number, leaseMs: number, maxBytes = Infinity): ClaimedTx[] {
    const now = this.now();
    return this.db
      .transaction(() => {
        this.stmts.expireLeases.run(now);
        const rows = this.stmts.claim.all({ now, limit }) as Array<{ seq: number; body: string; attempts: number; bytes: number }>;
        const out: ClaimedTx[] = [];
        let bytes = 0;
        for (const r of rows) {
          if (out.length > 0 && bytes + r.bytes > maxBytes) break;
          bytes += r.bytes;
          this.stmts.lease.run(now + leaseMs, r.seq);
          out.push({ seq: r.seq, tx: JSON.parse(r.body) as Transaction, attempts: r.attempts + 1, bytes: r.bytes });
        }
        return out;
      })
      .immediate();
  }

  /** Applies the hub's per-item results: sent, dead letter (with the hub's code), or retry later. */
  settle(settlements: Settlement[]): void {
    const now = this.now();
    const s = this.stmts;
    this.db
      .transaction(() => {
        for (const st of settlements) {
          if (st.status === 'sent') s.settleSent.run(now, st.result === undefined ? null : JSON.stringify(st.result), st.seq);
          else if (st.status === 'retry') s.settleRetry.run(now + st.delayMs, st.seq);
          else {
            const r = s.settleDead.run(now, JSON.stringify({ code: st.code, reason: st.reason }), st.seq);
            if (r.changes > 0) s.insertDead.run('transaction', st.seq, null, st.code, st.reason, null, now);
          }
        }
      })
      .immediate();
  }

  /** Records an input that could not become a signal (undecodable payload): acknowledged, kept, visible. */
  deadLetterInput(source: string, code: string, reason: string, payload: Buffer | string | null): void {
    const capped = payload === null ? null : typeof payload === 'string' ? payload.slice(0, 64 * 1024) : payload.subarray(0, 64 * 1024);
    this.stmts.insertDead.run('signal', null, source, code, reason, capped, this.now());
  }

  listDeadLetters(limit = 100, includeResolved = false): DeadLetter[] {
    const rows = this.db
      .prepare(`SELECT * FROM dead_letters ${includeResolved ? '' : 'WHERE resolved IS NULL'} ORDER BY id DESC LIMIT ?`)
      .all(limit) as Array<Record<string, any>>;
    return rows.map((r) => ({
      id: r.id,
      kind: r.kind,
      txSeq: r.tx_seq,
      source: r.source,
      code: r.code,
      reason: r.reason,
      payload: r.payload === null ? null : Buffer.isBuffer(r.payload) ? r.payload.toString('utf8') : String(r.payload),
      createdAt: new Date(r.created_at).toISOString(),
    }));
  }

  /** Puts a dead-lettered transaction back in the queue (after the cause was fixed). */
  replayDeadLetter(id: number): boolean {
    return this.db
      .transaction(() => {
        const dl = this.db.prepare('SELECT tx_seq FROM dead_letters WHERE id = ? AND resolved IS NULL').get(id) as { tx_seq: number | null } | undefined;
        if (!dl || dl.tx_seq === null) return false;
        this.db.prepare("UPDATE transactions SET status = 'pending', next_attempt_at = 0, settled_at = NULL WHERE seq = ? AND status = 'dead'").run(dl.tx_seq);
        this.db.prepare("UPDATE dead_letters SET resolved = 'replayed' WHERE id = ?").run(id);
        return true;
      })
      .immediate();
  }

  discardDeadLetter(id: number): boolean {
    return this.db
      .transaction(() => {
        const dl = this.db.prepare('SELECT tx_seq FROM dead_letters WHERE id = ? AND resolved IS NULL').get(id) as { tx_seq: number | null } | undefined;
        if (!dl) return false;
        if (dl.tx_seq !== null) this.db.prepare("UPDATE transactions SET status = 'discarded' WHERE seq = ? AND status = 'dead'").run(dl.tx_seq);
        this.db.prepare("UPDATE dead_letters SET resolved = 'discarded' WHERE id = ?").run(id);
        return true;
      })
      .immediate();
  }

  alarms(): Alarm[] {
    const rows = this.db.prepare('SELECT code, message, since FROM alarms ORDER BY since').all() as Array<{ code: string; message: string; since: number }>;
    const out = rows.map((r) => ({ code: r.code, message: r.message, since: new Date(r.since).toISOString() }));
    if (this.full) out.push({ code: 'OUTBOX_FULL', message: this.full, since: new Date(this.now()).toISOString() });
    return out;
  }

  acknowledgeAlarm(code: string): boolean {
    return this.db.prepare('DELETE FROM alarms WHERE code = ?').run(code).changes > 0;
  }

  stats(): OutboxStats {
    this.measure();
    const counts = Object.fromEntries(
      (this.stmts.countByStatus.all() as Array<{ status: string; n: number }>).map((r) => [r.status, r.n]),
    ) as Record<string, number>;
    const oldest = (this.stmts.oldestPending.get() as { t: number | null }).t;
    return {
      pending: (counts.pending ?? 0) + (counts.leased ?? 0),
      leased: counts.leased ?? 0,
      oldestPendingAgeS: oldest === null ? 0 : Math.max(0, (this.now() - oldest) / 1000),
      deadLetters: (this.stmts.openDeadLetters.get() as { n: number }).n,
      shadow: counts.shadow ?? 0,
      bytes: this.cachedBytes,
      diskFreeBytes: this.cachedDiskFree === Number.MAX_SAFE_INTEGER ? 0 : this.cachedDiskFree,
      full: this.full !== undefined,
      ...(this.full ? { fullReason: this.full } : {}),
      lastCommitMs: this.lastCommitMs,
    };
  }

  /** Reads rule state as committed (for reports and tests). */
  ruleState(ruleId: string): unknown {
    return this.stateCache.get(ruleId);
  }

  /** Read-only access for CLI reports and tests. */
  query<T = unknown>(sql: string, ...params: unknown[]): T[] {
    return this.db.prepare(sql).all(...params) as T[];
  }

  checkpoint(): void {
    if (this.closed) return;
    try {
      this.db.pragma('wal_checkpoint(PASSIVE)');
    } catch (err) {
      this.log?.warn({ err }, 'WAL checkpoint failed; will retry');
    }
  }

  private purgeExpired(): void {
    if (this.closed || this.opts.retentionDays === 0) return;
    const cutoff = this.now() - this.opts.retentionDays * DAY_MS;
    try {
      this.purge(cutoff, 10_000);
    } catch (err) {
      this.log?.warn({ err }, 'Retention purge failed; will retry');
    }
  }

  /** Deletes settled transactions and raw events older than cutoff, in bounded chunks. */
  private purge(cutoffMs: number, chunk: number): number {
    let n = 0;
    n += this.db
      .prepare(
        `DELETE FROM transactions WHERE seq IN (SELECT seq FROM transactions WHERE settled_at < ? AND status IN ('sent', 'discarded') LIMIT ?)`,
      )
      .run(cutoffMs, chunk).changes;
    n += this.db.prepare('DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE received_at < ? ORDER BY seq LIMIT ?)').run(cutoffMs, chunk).changes;
    return n;
  }

  /** Under space pressure: drop the oldest raw events and sent transactions (never pending ones). */
  private purgeForSpace(): number {
    try {
      const deleted = this.purge(this.now() - 60_000, 50_000);
      if (deleted > 0) this.log?.warn({ deleted }, 'Outbox near its bound: dropped old raw events and sent transactions early.');
      return deleted;
    } catch {
      return 0;
    }
  }

  /** Finishes the in-flight commit, checkpoints and closes. */
  close(): void {
    if (this.closed) return;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flush();
    this.closed = true;
    clearInterval(this.checkpointTimer);
    clearInterval(this.retentionTimer);
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      // best effort: the WAL is replayed at next open
    }
    this.db.close();
  }
}

export function openOutbox(opts: OutboxOptions): Outbox {
  return new Outbox(opts);
}
