import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync } from 'node:fs';
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

/** A store on a file of its own in a fresh folder, closed and removed after fn. */
async function withStore(fn: (store: SqliteHubStore, path: string) => Promise<void>, opts?: ConstructorParameters<typeof SqliteHubStore>[2]): Promise<void> {
  const d = mkdtempSync(join(tmpdir(), 'pb-hubstore-ckpt-'));
  const path = join(d, 'hub.db');
  const store = new SqliteHubStore(path, undefined, opts);
  try {
    await fn(store, path);
  } finally {
    await store.close();
    rmSync(d, { recursive: true, force: true });
  }
}

void test('checkpoints run on a thread of their own, and the store completes each: the WAL rewinds, nothing is lost', () =>
  withStore(async (store, path) => {
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
    assert.ok(store.checkpoints.eventLoop > 0, 'the store followed up');
    assertAllCopied(path);
    // the next commit rewinds the WAL: it writes from the start of the file, which does not grow
    await store.ingest('edge-1', [testTx({ order: 'CK-x' })], new Date());
    assert.ok(statSync(`${path}-wal`).size <= walAfterIngest);
    assert.equal((await store.counts()).queued, keys.length + 1);
  }));

void test('a round the thread could not checkpoint is copied whole by the store: the WAL rewinds all the same', () => {
  // a thread whose connection checkpoints nothing (as one whose every round fails): it only says its round ended
  const code = `const { parentPort } = require('node:worker_threads');
    parentPort.postMessage({ type: 'ready' });
    const t = setInterval(() => parentPort.postMessage({ type: 'checkpointed' }), 100);
    parentPort.on('message', (m) => { if (m.type === 'stop') { clearInterval(t); parentPort.close(); } });`;
  return withStore(
    async (store, path) => {
      assert.deepEqual(await store.checkpointerStarted(), { where: 'worker' });
      await store.ingest('edge-1', Array.from({ length: 200 }, () => testTx({ order: 'CK-i' })), new Date());
      const walAfterIngest = statSync(`${path}-wal`).size;
      const deadline = Date.now() + 10_000;
      while (store.checkpoints.eventLoop === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.ok(store.checkpoints.eventLoop > 0, 'the store followed up');
      assertAllCopied(path);
      await store.ingest('edge-1', [testTx({ order: 'CK-i' })], new Date());
      assert.ok(statSync(`${path}-wal`).size <= walAfterIngest, 'the next commit rewound the WAL');
      assert.equal((await store.counts()).queued, 201);
    },
    { checkpointer: { code } },
  );
});

/** Everything is in the database file: a checkpoint from another connection finds no frame left to copy. */
function assertAllCopied(path: string): void {
  const reader = new Database(path, { readonly: true });
  try {
    const r = reader.pragma('wal_checkpoint(PASSIVE)', { simple: false }) as Array<{ log: number; checkpointed: number }>;
    assert.equal(r[0].checkpointed, r[0].log, 'no frame left to copy');
  } finally {
    reader.close();
  }
}

/** The WAL header's salts: a writer that rewinds the WAL (starts again at its first frame) draws new ones. */
function walSalts(path: string): string {
  const fd = openSync(`${path}-wal`, 'r');
  try {
    const head = Buffer.alloc(32);
    readSync(fd, head, 0, 32, 0);
    return head.subarray(16, 24).toString('hex');
  } finally {
    closeSync(fd);
  }
}

void test('under a steady stream of commits the WAL still rewinds: it does not grow with the backlog', () =>
  // A checkpoint that completes while a commit is under way leaves that commit's transaction on its old
  // read snapshot, which cannot rewind the WAL, and the next one finds new frames: completion must come
  // between two of the store's commits. Ingest never pauses here, as during a drain.
  withStore(async (store, path) => {
    assert.deepEqual(await store.checkpointerStarted(), { where: 'worker' });
    await store.ingest('edge-1', [testTx({ order: 'ST-0' })], new Date());
    const first = walSalts(path);
    let batches = 0;
    let rewound = false;
    const deadline = Date.now() + 20_000;
    // two batches in flight, as two agents' requests: one is always about to commit
    while (!rewound && Date.now() < deadline) {
      await Promise.all([0, 1].map((k) => store.ingest('edge-1', Array.from({ length: 100 }, () => testTx({ order: `ST-${k}` })), new Date())));
      batches += 2;
      rewound = walSalts(path) !== first;
    }
    assert.ok(rewound, `the WAL rewound during ${batches} batches committed back to back`);
    assert.equal((await store.counts()).queued, 1 + batches * 100);
  }));

void test('a checkpoint thread that cannot run leaves the checkpoints to the event loop', () =>
  withStore(
    async (store) => {
      const started = await store.checkpointerStarted();
      assert.equal(started.where, 'event-loop');
      assert.match(started.reason ?? '', /no checkpoints here/);
      const deadline = Date.now() + 10_000;
      await store.ingest('edge-1', [testTx({ order: 'CK-f' })], new Date());
      while (store.checkpoints.eventLoop === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.ok(store.checkpoints.eventLoop > 0);
    },
    { checkpointer: { code: 'throw new Error("no checkpoints here")' } },
  ));
