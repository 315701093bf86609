import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

/**
 * The hub SQLite store's checkpoint thread (sqlite-store.ts, startCheckpointer): a connection of its own
 * to the hub's file, off the event loop. Every `intervalMs` it copies the WAL's frames into the database
 * file (PASSIVE: it never waits for, nor blocks, a commit). What the store committed meanwhile is copied by
 * another round, each shorter than the one before, until a round finds no frame left: then the checkpoint
 * is complete and the store's next commit rewinds the WAL. After `rounds` rounds without that (a steady
 * stream of commits), the worker says so and the store copies the short rest on its own connection,
 * between two of its commits, where it always completes.
 */
const port = parentPort;
if (!port) throw new Error('checkpoint-worker.ts runs as a worker thread of the hub SQLite store');
const data = workerData as { path: string; nativeBinding?: string; intervalMs: number; rounds: number };
const db = new Database(data.path, { fileMustExist: true, ...(data.nativeBinding ? { nativeBinding: data.nativeBinding } : {}) });
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const timer = setInterval(() => {
  try {
    let complete = false;
    for (let round = 0; round < data.rounds && !complete; round++) {
      const r = checkpoint.get() as { busy: number; log: number; checkpointed: number };
      complete = r.busy === 0 && r.checkpointed === r.log;
    }
    port.postMessage({ type: 'checkpointed', complete });
  } catch {
    // busy (the store's own checkpoint runs) or an I/O error: the next tick tries again
  }
}, data.intervalMs);
port.on('message', (m: { type?: string }) => {
  if (m?.type !== 'stop') return;
  clearInterval(timer);
  db.close();
  port.close();
});
port.postMessage({ type: 'ready' });
