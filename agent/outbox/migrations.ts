/**
 * Versioned schema of the outbox. PRAGMA user_version holds the number of migrations applied; each
 * migration runs in its own transaction. Never edit a released migration: add one.
 */
export const migrations: string[] = [
  `
  CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    -- the dedupe key has locality (source + monotonic sequence or time-ordered key), never a random hash
    source_id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    ref TEXT NOT NULL,
    value TEXT,
    quality TEXT NOT NULL,
    source_time TEXT NOT NULL,
    received_at INTEGER NOT NULL
  );
  CREATE TABLE rule_state (
    rule_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE transactions (
    seq INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    -- workCenter:order: items of one order leave in order
    order_key TEXT NOT NULL,
    -- pending | leased | sent | dead | shadow | discarded
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER,
    settled_at INTEGER,
    result TEXT
  );
  CREATE INDEX transactions_status ON transactions(status, seq);
  CREATE INDEX transactions_delayed ON transactions(order_key) WHERE next_attempt_at > 0 AND status = 'pending';
  CREATE INDEX transactions_settled ON transactions(settled_at) WHERE settled_at IS NOT NULL;
  CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY,
    -- transaction: rejected by the hub; signal: undecodable input; quarantine: implausible counter jump
    kind TEXT NOT NULL,
    tx_seq INTEGER,
    source TEXT,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload BLOB,
    created_at INTEGER NOT NULL,
    resolved TEXT
  );
  CREATE INDEX dead_letters_open ON dead_letters(resolved, id);
  CREATE TABLE alarms (
    code TEXT PRIMARY KEY,
    message TEXT NOT NULL,
    since INTEGER NOT NULL
  );
  `,
];
