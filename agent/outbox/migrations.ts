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
  // 2: counters kept by triggers (stats stay O(1) at any backlog, and the CLI's writes keep them right too),
  // the last retry reason per transaction, and a partial index of delayed items only.
  `
  CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
  ) WITHOUT ROWID;
  INSERT INTO counters(name, value)
    SELECT 'tx_' || s.status, (SELECT COUNT(*) FROM transactions t WHERE t.status = s.status)
    FROM (SELECT 'pending' AS status UNION ALL SELECT 'leased' UNION ALL SELECT 'sent' UNION ALL SELECT 'dead'
          UNION ALL SELECT 'shadow' UNION ALL SELECT 'discarded') s;
  INSERT INTO counters(name, value) SELECT 'dead_letters_open', COUNT(*) FROM dead_letters WHERE resolved IS NULL;
  CREATE TRIGGER transactions_count_insert AFTER INSERT ON transactions BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'tx_' || NEW.status;
  END;
  CREATE TRIGGER transactions_count_update AFTER UPDATE OF status ON transactions WHEN OLD.status <> NEW.status BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'tx_' || OLD.status;
    UPDATE counters SET value = value + 1 WHERE name = 'tx_' || NEW.status;
  END;
  CREATE TRIGGER transactions_count_delete AFTER DELETE ON transactions BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'tx_' || OLD.status;
  END;
  CREATE TRIGGER dead_letters_count_insert AFTER INSERT ON dead_letters WHEN NEW.resolved IS NULL BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'dead_letters_open';
  END;
  CREATE TRIGGER dead_letters_count_resolve AFTER UPDATE OF resolved ON dead_letters
    WHEN OLD.resolved IS NULL AND NEW.resolved IS NOT NULL BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'dead_letters_open';
  END;
  CREATE TRIGGER dead_letters_count_delete AFTER DELETE ON dead_letters WHEN OLD.resolved IS NULL BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'dead_letters_open';
  END;
  ALTER TABLE transactions ADD COLUMN last_error TEXT;
  DROP INDEX transactions_delayed;
  CREATE INDEX transactions_delayed ON transactions(order_key, next_attempt_at) WHERE next_attempt_at > 0 AND status = 'pending';
  `,
  // 3: the ERP outcome of each sent transaction as the hub reports it (GET /v1/agents/me/outcomes), and the
  // cursor of that feed, committed together so a restart resumes where it stopped.
  `
  ALTER TABLE transactions ADD COLUMN erp_state TEXT;
  ALTER TABLE transactions ADD COLUMN erp_ref TEXT;
  ALTER TABLE transactions ADD COLUMN erp_at INTEGER;
  CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
  ) WITHOUT ROWID;
  `,
  // 4: transaction bodies in their own table. Claiming and settling rewrite a transaction's row twice; with
  // the ~1 KB body inside, each rewrite copied it into the WAL (2.2x slower forwarding, measured). Rows
  // written before this migration keep their body in legacy_body; nothing is copied. Read bodies through
  // the transactions_json view.
  `
  ALTER TABLE transactions RENAME COLUMN body TO legacy_body;
  CREATE TABLE tx_bodies (
    seq INTEGER PRIMARY KEY,
    body TEXT NOT NULL
  );
  CREATE TRIGGER tx_bodies_delete AFTER DELETE ON transactions BEGIN
    DELETE FROM tx_bodies WHERE seq = OLD.seq;
  END;
  CREATE VIEW transactions_json AS
    SELECT t.*, COALESCE(b.body, t.legacy_body) AS body FROM transactions t LEFT JOIN tx_bodies b ON b.seq = t.seq;
  `,
  // 5: leases in a table of their own, one row per claim. A claim used to rewrite every claimed row (status
  // 'leased', lease_until, attempts: index and counter updates per row) and the settle rewrote it again; now a
  // claim writes one row here and a transaction row is written once, when it is settled. Leased transactions
  // keep status 'pending'; 'leased' and lease_until are no longer written. Leases found here at agent start
  // belong to a dead run and are released (as the leased rows were before).
  `
  CREATE TABLE leases (
    id INTEGER PRIMARY KEY,
    until INTEGER NOT NULL,
    -- JSON arrays: the claimed seqs not settled yet, and their orders (workCenter:order)
    seqs TEXT NOT NULL,
    orders TEXT NOT NULL
  );
  UPDATE transactions SET status = 'pending', lease_until = NULL WHERE status = 'leased';
  `,
  // 6: the status index holds what is looked up by status: pending rows (claims, the oldest-pending probe)
  // and the rare statuses (dead, discarded, shadow: listing). Each settle moved every sent row's entry from
  // the 'pending' to the 'sent' part of transactions(status, seq), a delete and an insert per row (~2 of
  // ~5 us per settled item, measured); now it only leaves the pending index. Sent rows are found through
  // transactions_settled (retention, resend) or in seq order.
  `
  DROP INDEX transactions_status;
  CREATE INDEX transactions_pending ON transactions(seq) WHERE status = 'pending';
  CREATE INDEX transactions_other ON transactions(status, seq) WHERE status NOT IN ('pending', 'sent');
  `,
  // 7: the counters of a settle's sent items move once per statement, not per row. The trigger ran two
  // counter UPDATEs for every item that went from pending to sent (~1.1 of ~5 us per settled item,
  // measured); the two statements that make that move (the outbox's settleSent*) now adjust the counters
  // by their change count in the same transaction. Every other status change still goes through it.
  `
  DROP TRIGGER transactions_count_update;
  CREATE TRIGGER transactions_count_update AFTER UPDATE OF status ON transactions
    WHEN OLD.status <> NEW.status AND NOT (OLD.status = 'pending' AND NEW.status = 'sent') BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'tx_' || OLD.status;
    UPDATE counters SET value = value + 1 WHERE name = 'tx_' || NEW.status;
  END;
  `,
  // 8: input dead letters may carry a dedupe key (an MQTT message's topic and payload digest). A message whose
  // dead letter was committed but not acknowledged (a crash, a dropped connection before the PUBACK) comes
  // again and was written a second time. Unique among open dead letters only: once one is resolved (discarded)
  // the same input is written again, so a source that keeps sending it stays visible. Rows from before keep a
  // null key; the index starts empty.
  `
  ALTER TABLE dead_letters ADD COLUMN dedupe_key TEXT;
  CREATE UNIQUE INDEX dead_letters_dedupe ON dead_letters(dedupe_key) WHERE dedupe_key IS NOT NULL AND resolved IS NULL;
  `,
];
