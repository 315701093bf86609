import { getAsset, isSea } from 'node:sea';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { PlantBridgeError } from '../../../contracts/index.ts';
import { COMMIT_WORKER_ASSET } from '../../../installers/build/sea-runtime.ts';
import type { AppendResult } from '../../outbox/outbox.ts';
import type { OutboxWriterSpec } from '../driver.ts';
import type { MqttConfig } from './config.ts';

/**
 * The MQTT driver's commit thread, main-thread side (README.md, "Commit thread").
 *
 * On one core mqtt.js alone needs ~6 µs per QoS 1 message; decoding the JSON, mapping it and committing it
 * on the same thread needs as much again, so the client could take messages at only half the rate a bare
 * subscriber does. Here the connection's thread only collects each message's topic and bytes; a worker
 * thread with its own outbox connection decodes, maps, dedupes and commits them (rules included, in the
 * same SQLite transaction as always) and answers when the batch is durable. The PUBACKs of a batch are
 * sent only after that answer, exactly as when committing on the main thread.
 *
 * If the worker dies, every batch it had not answered is failed (the session drops the connection and the
 * broker redelivers); the next batch starts a new worker.
 */

export interface CommitWorkerData {
  spec: OutboxWriterSpec;
  mapper: Pick<MqttConfig, 'name' | 'subscriptions' | 'maxPayloadBytes'>;
}

export type ToWorker =
  /** gen: the connection the batch came from; after a batch of it fails, the later ones are refused */
  | { type: 'batch'; id: number; gen: number; topics: string[]; ends: Uint32Array; retain: Uint8Array; receivedAt: Float64Array; bytes: ArrayBuffer }
  | { type: 'close' };

export interface WorkerLog {
  type: 'log';
  level: 'info' | 'warn' | 'error';
  obj?: Record<string, unknown>;
  msg?: string;
}

export interface BatchReply {
  type: 'done';
  id: number;
  /** messages that became signals (committed or found to be duplicates) */
  signals: number;
  result: AppendResult;
  /** input dead letters by reason code */
  deadByCode: Record<string, number>;
  ignored: number;
  /** the worker thread's CPU time so far, µs (user + system) */
  cpuUs: number;
}

type FromWorker =
  | BatchReply
  | WorkerLog
  | { type: 'ready'; cpuUs: number }
  | { type: 'closed' }
  | { type: 'start-failed'; error: { code: string; message: string } }
  | { type: 'failed'; id: number; error: { code: string; message: string } };

/** One batch of raw messages as received, in arrival order. */
export class RawBatch {
  /** the connection that received it (set by the session): the commit thread never commits a batch of a
   *  connection after one of its batches failed, so a redelivery cannot land behind later messages */
  gen = 0;
  readonly topics: string[] = [];
  readonly payloads: Buffer[] = [];
  readonly retain: number[] = [];
  readonly receivedAt: number[] = [];
  bytes = 0;

  get length(): number {
    return this.topics.length;
  }

  push(topic: string, payload: Buffer, retain: boolean, receivedAtMs: number): void {
    this.topics.push(topic);
    this.payloads.push(payload);
    this.retain.push(retain ? 1 : 0);
    this.receivedAt.push(receivedAtMs);
    this.bytes += payload.length;
  }
}

interface Pending {
  resolve: (r: BatchReply) => void;
  reject: (e: unknown) => void;
}

/** Where the worker's code is: this folder's commit-worker.ts, or (single executable) a bundled asset. */
export type WorkerSource = { file: URL } | { code: string };


/** The single executable carries commit-worker.ts as an asset (installers/build/sea.ts). Throws when the code cannot be found (then the driver commits on the main thread). */
function defaultSource(): WorkerSource {
  if (isSea()) return { code: getAsset(COMMIT_WORKER_ASSET, 'utf8') };
  return { file: new URL('./commit-worker.ts', import.meta.url) };
}

export class CommitThread {
  private readonly data: CommitWorkerData;
  private readonly log: Logger;
  private readonly source: WorkerSource | undefined;
  private worker: Worker | undefined;
  private starting: Promise<Worker> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closing = false;
  private cpuUs = 0;

  constructor(data: CommitWorkerData, log: Logger, source?: WorkerSource) {
    this.data = data;
    this.log = log;
    this.source = source;
  }

  /** Starts the worker and waits until its outbox connection is open; rejects with the reason it is not. */
  start(): Promise<Worker> {
    if (this.worker) return Promise.resolve(this.worker);
    this.starting ??= new Promise<Worker>((resolve, reject) => {
      const source = this.source ?? defaultSource();
      const name = `mqtt-commit-${this.data.mapper.name}`;
      const w = 'file' in source ? new Worker(source.file, { workerData: this.data, name }) : new Worker(source.code, { eval: true, workerData: this.data, name });
      let ready = false;
      w.on('message', (m: FromWorker) => {
        switch (m.type) {
          case 'ready':
            ready = true;
            this.cpuUs = m.cpuUs;
            this.worker = w;
            this.starting = undefined;
            resolve(w);
            return;
          case 'start-failed':
            reject(new PlantBridgeError(m.error.code === 'OUTBOX_IO' ? 'OUTBOX_IO' : 'INTERNAL', `the MQTT commit thread could not start: ${m.error.message}`));
            return;
          case 'log':
            this.log[m.level](m.obj ?? {}, m.msg ?? '');
            return;
          case 'done':
            this.cpuUs = m.cpuUs;
            this.settle(m.id)?.resolve(m);
            return;
          case 'failed':
            this.settle(m.id)?.reject(toError(m.error));
            return;
          case 'closed':
            return;
        }
      });
      w.on('error', (err) => {
        this.log.error({ err }, 'The MQTT commit thread failed: its unacknowledged messages will be redelivered by the broker');
        if (!ready) reject(err);
      });
      w.on('exit', (code) => {
        if (this.worker === w) this.worker = undefined;
        if (!ready) {
          this.starting = undefined;
          reject(new PlantBridgeError('INTERNAL', `the MQTT commit thread exited with code ${code} before it was ready`));
        }
        this.failAll(new PlantBridgeError('INTERNAL', `the MQTT commit thread exited (code ${code}) before answering`));
      });
    });
    const p = this.starting;
    p.catch(() => {
      if (this.starting === p) this.starting = undefined;
    });
    return p;
  }

  /** CPU time the commit thread has used, µs, as of its last answer (for metrics and benchmarks) */
  cpuMicros(): number {
    return this.cpuUs;
  }

  /** Hands one batch to the worker; resolves when it is durable. */
  async commit(batch: RawBatch): Promise<BatchReply> {
    if (this.closing) throw new PlantBridgeError('INTERNAL', 'the MQTT commit thread is stopping');
    const w = this.worker ?? (await this.start());
    const n = batch.length;
    const ends = new Uint32Array(n);
    const bytes = Buffer.allocUnsafeSlow(batch.bytes);
    let at = 0;
    for (let i = 0; i < n; i++) {
      const p = batch.payloads[i];
      p.copy(bytes, at);
      at += p.length;
      ends[i] = at;
    }
    const id = this.nextId++;
    const done = new Promise<BatchReply>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    const msg: ToWorker = {
      type: 'batch',
      id,
      gen: batch.gen,
      topics: batch.topics,
      ends,
      retain: Uint8Array.from(batch.retain),
      receivedAt: Float64Array.from(batch.receivedAt),
      bytes: bytes.buffer as ArrayBuffer,
    };
    w.postMessage(msg, [msg.bytes, ends.buffer as ArrayBuffer]);
    return done;
  }

  /** Ends the worker at once, as a crash would (tests); the next batch starts a new one. */
  async terminate(): Promise<void> {
    await this.worker?.terminate();
  }

  /** Lets the worker finish what it was given, closes its outbox connection and ends it. */
  async close(): Promise<void> {
    this.closing = true;
    try {
      const w = this.worker ?? (await this.starting?.catch(() => undefined));
      if (!w) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => void w.terminate().then(() => resolve()), 10_000);
        w.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        w.postMessage({ type: 'close' } satisfies ToWorker);
      });
      this.worker = undefined;
    } finally {
      // a driver may be started again after a stop
      this.closing = false;
    }
  }

  private settle(id: number): Pending | undefined {
    const p = this.pending.get(id);
    this.pending.delete(id);
    return p;
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

function toError(e: { code: string; message: string }): Error {
  return e.code === 'OUTBOX_FULL' || e.code === 'OUTBOX_IO' ? new PlantBridgeError(e.code, e.message) : new PlantBridgeError('INTERNAL', e.message);
}
