import Database from 'better-sqlite3';

/**
 * The thin database layer under the outbox: the few calls it needs, over better-sqlite3 (default) or
 * Node's built-in `node:sqlite` (fallback where better-sqlite3's prebuilt binary cannot load, e.g.
 * glibc < 2.34). Both run the same outbox contract suite. Statements take positional parameters only,
 * and BLOBs come back as Buffers on both.
 */

export type SqliteDriver = 'better-sqlite3' | 'node:sqlite';

export interface SqlStatement {
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): Record<string, unknown> | undefined;
  all(...params: unknown[]): Array<Record<string, unknown>>;
}

export interface SqlDb {
  readonly driver: SqliteDriver;
  exec(sql: string): void;
  prepare(sql: string): SqlStatement;
  /** value of the first column of `PRAGMA <text>` (undefined when it returns no row) */
  pragma(text: string): unknown;
  /** runs fn in BEGIN IMMEDIATE … COMMIT; rolls back and rethrows on any error (including a failed COMMIT) */
  immediate<T>(fn: () => T): T;
  close(): void;
}

export interface OpenDbOptions {
  driver?: SqliteDriver;
  /** path of better-sqlite3's native addon (the single executable extracts it from its assets) */
  nativeBinding?: string;
  /** fail instead of creating the file */
  mustExist?: boolean;
  busyTimeoutMs?: number;
}

export function openDb(path: string, opts: OpenDbOptions = {}): SqlDb {
  return (opts.driver ?? 'better-sqlite3') === 'node:sqlite' ? openNodeSqlite(path, opts) : openBetterSqlite(path, opts);
}

function openBetterSqlite(path: string, opts: OpenDbOptions): SqlDb {
  const db = new Database(path, {
    ...(opts.nativeBinding ? { nativeBinding: opts.nativeBinding } : {}),
    ...(opts.mustExist ? { fileMustExist: true } : {}),
    timeout: opts.busyTimeoutMs ?? 5000,
  });
  let depth = 0;
  const pragmas = new Map<string, Database.Statement>();
  return {
    driver: 'better-sqlite3',
    exec: (sql) => void db.exec(sql),
    prepare: (sql) => {
      const st = db.prepare(sql);
      const returnsData = st.reader;
      return {
        run: (...p) => ({ changes: st.run(...p).changes }),
        get: (...p) => (returnsData ? (st.get(...p) as Record<string, unknown> | undefined) : (st.run(...p), undefined)),
        all: (...p) => (returnsData ? (st.all(...p) as Array<Record<string, unknown>>) : (st.run(...p), [])),
      };
    },
    pragma: (text) => {
      // cached: the outbox toggles synchronous around every claim and settle
      let st = pragmas.get(text);
      if (!st) pragmas.set(text, (st = db.prepare(`PRAGMA ${text}`)));
      if (!st.reader) return void st.run();
      const row = st.get() as Record<string, unknown> | undefined;
      return row ? Object.values(row)[0] : undefined;
    },
    immediate: (fn) => {
      // nested calls join the outer transaction (a savepoint would be needed for partial rollback: none is)
      if (depth > 0) return fn();
      depth++;
      try {
        return db.transaction(fn).immediate();
      } finally {
        depth--;
      }
    },
    close: () => void db.close(),
  };
}

interface NodeSqliteModule {
  DatabaseSync: new (
    path: string,
    opts?: { timeout?: number; readOnly?: boolean },
  ) => {
    exec(sql: string): void;
    prepare(sql: string): {
      run(...p: unknown[]): { changes: number | bigint };
      get(...p: unknown[]): Record<string, unknown> | undefined;
      all(...p: unknown[]): Array<Record<string, unknown>>;
    };
    close(): void;
    readonly isTransaction: boolean;
  };
}

function toBuffers(row: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!row) return row;
  for (const k in row) {
    const v = row[k];
    if (v instanceof Uint8Array && !Buffer.isBuffer(v)) row[k] = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  }
  return row;
}

function openNodeSqlite(path: string, opts: OpenDbOptions): SqlDb {
  // loaded on demand: importing node:sqlite prints an ExperimentalWarning on some Node versions
  const mod = process.getBuiltinModule('node:sqlite') as unknown as NodeSqliteModule | undefined;
  if (!mod) throw new Error('node:sqlite is not available in this Node.js (needs >= 22.13)');
  if (opts.mustExist) {
    // DatabaseSync has no "must exist" flag: an open of a missing file would create it
    const { existsSync } = process.getBuiltinModule('node:fs');
    if (!existsSync(path)) throw Object.assign(new Error(`unable to open database file: ${path} does not exist`), { code: 'SQLITE_CANTOPEN' });
  }
  const db = new mod.DatabaseSync(path, { timeout: opts.busyTimeoutMs ?? 5000 });
  let depth = 0;
  const pragmas = new Map<string, ReturnType<typeof db.prepare>>();
  return {
    driver: 'node:sqlite',
    exec: (sql) => db.exec(sql),
    prepare: (sql) => {
      const st = db.prepare(sql);
      return {
        run: (...p) => ({ changes: Number(st.run(...p).changes) }),
        get: (...p) => toBuffers(st.get(...p)),
        all: (...p) => st.all(...p).map((r) => toBuffers(r)!),
      };
    },
    pragma: (text) => {
      let st = pragmas.get(text);
      if (!st) pragmas.set(text, (st = db.prepare(`PRAGMA ${text}`)));
      const row = st.get();
      return row ? Object.values(row)[0] : undefined;
    },
    immediate: (fn) => {
      if (depth > 0) return fn();
      depth++;
      try {
        db.exec('BEGIN IMMEDIATE');
        try {
          const r = fn();
          db.exec('COMMIT');
          return r;
        } catch (err) {
          if (db.isTransaction) {
            try {
              db.exec('ROLLBACK');
            } catch {
              // the connection already rolled back (e.g. after SQLITE_FULL)
            }
          }
          throw err;
        }
      } finally {
        depth--;
      }
    },
    close: () => db.close(),
  };
}

export type SqliteErrorKind = 'full' | 'io' | 'corrupt' | 'busy' | 'other';

/** Primary result codes, for node:sqlite's numeric `errcode` (extended codes carry them in the low byte). */
const PRIMARY: Record<number, SqliteErrorKind> = { 5: 'busy', 6: 'busy', 8: 'io', 10: 'io', 11: 'corrupt', 13: 'full', 14: 'io', 26: 'corrupt' };

/** Classifies an error from either driver (better-sqlite3 `code` strings, node:sqlite `errcode` numbers, Node fs errnos). */
export function sqliteErrorKind(err: unknown): SqliteErrorKind {
  const e = err as { code?: unknown; errcode?: unknown; message?: unknown } | null;
  if (!e || typeof e !== 'object') return 'other';
  if (typeof e.errcode === 'number') return PRIMARY[e.errcode & 0xff] ?? 'other';
  const code = typeof e.code === 'string' ? e.code : '';
  if (/^SQLITE_FULL/.test(code) || code === 'ENOSPC') return 'full';
  if (/^SQLITE_(CORRUPT|NOTADB)/.test(code)) return 'corrupt';
  if (/^SQLITE_(IOERR|CANTOPEN|READONLY)/.test(code) || code === 'EIO') return 'io';
  if (/^SQLITE_(BUSY|LOCKED)/.test(code)) return 'busy';
  const msg = typeof e.message === 'string' ? e.message : '';
  if (/database or disk is full/i.test(msg)) return 'full';
  if (/malformed|file is not a database/i.test(msg)) return 'corrupt';
  if (/disk I\/O error/i.test(msg)) return 'io';
  return 'other';
}

/** True for errors raised by SQLite itself (as opposed to bugs in the code calling it). */
export function isSqliteError(err: unknown): boolean {
  const e = err as { code?: unknown; errcode?: unknown } | null;
  if (!e || typeof e !== 'object') return false;
  return typeof e.errcode === 'number' || (typeof e.code === 'string' && e.code.startsWith('SQLITE_'));
}
