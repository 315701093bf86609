import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { hubStoreContract } from '../contract-suite.ts';
import { testTx } from '../test-tx.ts';
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

void test('checkpoints run on a thread of their own and complete there: the WAL rewinds, nothing is lost', async () => {
  const d = mkdtempSync(join(tmpdir(), 'pb-hubstore-ckpt-'));
  const path = join(d, 'hub.db');
  const store = new SqliteHubStore(path);
  try {
    assert.deepEqual(await store.checkpointerStarted(), { where: 'worker' });
    const keys: string[] = [];
    for (let b = 0; b < 10; b++) {
      const items = Array.from({ length: 200 }, () => testTx({ order: `CK-${b % 3}` }));
      keys.push(...items.map((t) => t.idempotencyKey));
      await store.ingest('edge-1', items, new Date());
    }
    const walAfterIngest = statSync(`${path}-wal`).size;
    assert.ok(walAfterIngest > 1_000_000, `the WAL holds the batches (${walAfterIngest} bytes)`);
    const deadline = Date.now() + 10_000;
    while (store.checkpoints.worker === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(store.checkpoints.worker > 0, 'the worker checkpointed');
    // nothing committed while it copied: it completed the checkpoint alone, the event loop did nothing
    assert.equal(store.checkpoints.completeOnWorker, store.checkpoints.worker);
    assert.equal(store.checkpoints.eventLoop, 0, 'no follow-up on the event loop');
    // everything is in the database file: a checkpoint from another connection finds no frame left to copy
    const reader = new Database(path, { readonly: true });
    const r = reader.pragma('wal_checkpoint(PASSIVE)', { simple: false }) as Array<{ log: number; checkpointed: number }>;
    assert.equal(r[0].checkpointed, r[0].log, 'no frame left to copy');
    reader.close();
    // the next commit rewinds the WAL: it writes from the start of the file, which does not grow
    await store.ingest('edge-1', [testTx({ order: 'CK-x' })], new Date());
    assert.ok(statSync(`${path}-wal`).size <= walAfterIngest);
    assert.equal((await store.counts()).queued, keys.length + 1);
  } finally {
    await store.close();
    rmSync(d, { recursive: true, force: true });
  }
});

void test('a checkpoint the thread could not complete is completed by the store: the WAL rewinds', async () => {
  const d = mkdtempSync(join(tmpdir(), 'pb-hubstore-ckpt-'));
  const path = join(d, 'hub.db');
  // a thread whose rounds never catch up (as under a steady stream of commits): it copies nothing and says so
  const code = `const { parentPort } = require('node:worker_threads');
    parentPort.postMessage({ type: 'ready' });
    const t = setInterval(() => parentPort.postMessage({ type: 'checkpointed', complete: false }), 100);
    parentPort.on('message', (m) => { if (m.type === 'stop') { clearInterval(t); parentPort.close(); } });`;
  const store = new SqliteHubStore(path, undefined, { checkpointer: { code } });
  try {
    assert.deepEqual(await store.checkpointerStarted(), { where: 'worker' });
    await store.ingest('edge-1', Array.from({ length: 200 }, () => testTx({ order: 'CK-i' })), new Date());
    const walAfterIngest = statSync(`${path}-wal`).size;
    const deadline = Date.now() + 10_000;
    while (store.checkpoints.eventLoop === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(store.checkpoints.eventLoop > 0, 'the store followed up');
    assert.equal(store.checkpoints.completeOnWorker, 0);
    const reader = new Database(path, { readonly: true });
    const r = reader.pragma('wal_checkpoint(PASSIVE)', { simple: false }) as Array<{ log: number; checkpointed: number }>;
    assert.equal(r[0].checkpointed, r[0].log, 'no frame left to copy');
    reader.close();
    await store.ingest('edge-1', [testTx({ order: 'CK-i' })], new Date());
    assert.ok(statSync(`${path}-wal`).size <= walAfterIngest, 'the next commit rewound the WAL');
    assert.equal((await store.counts()).queued, 201);
  } finally {
    await store.close();
    rmSync(d, { recursive: true, force: true });
  }
});

void test('a checkpoint thread that cannot run leaves the checkpoints to the event loop', async () => {
  const d = mkdtempSync(join(tmpdir(), 'pb-hubstore-ckpt-'));
  const store = new SqliteHubStore(join(d, 'hub.db'), undefined, { checkpointer: { code: 'throw new Error("no checkpoints here")' } });
  try {
    const started = await store.checkpointerStarted();
    assert.equal(started.where, 'event-loop');
    assert.match(started.reason ?? '', /no checkpoints here/);
    const deadline = Date.now() + 10_000;
    await store.ingest('edge-1', [testTx({ order: 'CK-f' })], new Date());
    while (store.checkpoints.eventLoop === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(store.checkpoints.eventLoop > 0);
  } finally {
    await store.close();
    rmSync(d, { recursive: true, force: true });
  }
});
