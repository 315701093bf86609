import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { hubStoreContract } from '../contract-suite.ts';
import { SqliteHubStore } from './sqlite-store.ts';

const dir = mkdtempSync(join(tmpdir(), 'pb-hubstore-'));
const file = join(dir, 'hub.db');

hubStoreContract('sqlite', {
  open: async () => new SqliteHubStore(file),
  second: async () => new SqliteHubStore(file),
  cleanup: async () => rmSync(dir, { recursive: true, force: true }),
});

void test('keeps statement journals in memory, after migrating with the default temp store', async () => {
  // with the default, each ingest group's later statements spill their journal to a new temp file (strace)
  const d = mkdtempSync(join(tmpdir(), 'pb-hubstore-temp-'));
  try {
    const store = new SqliteHubStore(join(d, 'hub.db'));
    const db = (store as unknown as { db: { pragma(t: string, o: { simple: true }): unknown } }).db;
    assert.equal(db.pragma('temp_store', { simple: true }), 2);
    assert.equal(db.pragma('user_version', { simple: true }) as number > 0, true);
    await store.close();
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});
