import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

/**
 * The hub SQLite store's checkpoint thread (sqlite-store.ts, startCheckpointer): a connection of its own
 * to the hub's file, off the event loop. Every `intervalMs` it copies the WAL's frames into the database
 * file (PASSIVE: it never waits for, nor blocks, a commit) and tells the store, whose own PASSIVE
 * checkpoint then copies what was committed meanwhile and completes, so the next commit rewinds the WAL.
 * It tells the store after a failed round too: the store's checkpoint then copies everything, and the WAL
 * stays bounded even if this connection cannot checkpoint.
 */
const port = parentPort;
if (!port) throw new Error('checkpoint-worker.ts runs as a worker thread of the hub SQLite store');
const data = workerData as { path: string; nativeBinding?: string; intervalMs: number };
const db = new Database(data.path, { fileMustExist: true, ...(data.nativeBinding ? { nativeBinding: data.nativeBinding } : {}) });
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const timer = setInterval(() => {
  try {
    checkpoint.get();
  } catch {
    // busy (the store's own checkpoint runs) or an I/O error: the store's follow-up copies it all
  }
  port.postMessage({ type: 'checkpointed' });
}, data.intervalMs);
port.on('message', (m: { type?: string }) => {
  if (m?.type !== 'stop') return;
  clearInterval(timer);
  db.close();
  port.close();
});
port.postMessage({ type: 'ready' });
