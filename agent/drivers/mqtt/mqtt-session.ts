import type { Logger } from 'pino';
import { connect, MqttClient as MqttClientClass, type IClientOptions, type IClientPublishOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import { isPlantBridgeError, PlantBridgeError, type ErrorCode, type Signal } from '../../../contracts/index.ts';
import { backoffDelay, type DriverContext, type HealthTracker } from '../driver.ts';
import type { MqttConnectionConfig } from './config.ts';
import { RawBatch } from './commit-thread.ts';
import { clientOptions, inflightLimit } from './connect-options.ts';

/**
 * One persistent MQTT session that commits before it acknowledges (DESIGN.md §2, "Ack").
 *
 * mqtt.js handles incoming packets one at a time: for a QoS 1 PUBLISH it emits 'message', calls
 * `handleMessage(packet, cb)`, and then sends the PUBACK through `client._sendPacket(puback, done)`; the
 * next packet is handled only after `done`. Committing inside that chain serialises one fsync per
 * message (~1.6k msgs/s with FULL). Acking there loses messages on a crash.
 *
 * So each connection's `_sendPacket` is wrapped: every PUBACK mqtt.js wants to send is swallowed (its
 * `done` is called at once, so the stream keeps flowing) and the message joins the current batch. The
 * batch is committed with one `ctx.emit(...)`; only when it resolves are the PUBACKs written, strictly in
 * arrival order. A batch is committed when the packets of the current socket read are handled, when it
 * holds `maxBatch` signals, or at once when the unacknowledged messages reach the Receive Maximum (the
 * broker would stop sending). If a commit fails nothing after it is acknowledged: the connection is
 * dropped and the broker redelivers from the persistent session; dedupe makes the replay harmless.
 *
 * With `commitRaw` (the MQTT driver's commit thread) the session does not decode at all: a batch is the
 * raw topics and payloads, handed over whole; its acks wait for the answer in the same way.
 *
 * What this relies on in mqtt.js is pinned by mqtt-ack-pin.test.ts; a 'packetsend' watchdog also reports
 * any PUBACK that was not sent by this class (health degraded, error log).
 */

export interface InboundMessage {
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
  dup: boolean;
  receivedAtMs: number;
}

export type HandleResult =
  | { signals: Signal[] }
  | { deadLetter: { code: ErrorCode; reason: string } }
  /**
   * nothing to store. `commitPoint`: the message changed the handler's own state (a Sparkplug birth or
   * death without metrics): it is acknowledged only once everything before it is committed, and the
   * `checkpoint` hook sees it as part of a batch, like a message with signals
   */
  | { ignore: string; commitPoint?: boolean };

export interface SessionSubscription {
  filter: string;
  qos: 0 | 1;
}

export interface SessionCounters {
  received: number;
  committed: number;
  committedBatches: number;
  deadLettered: Record<string, number>;
  ignored: number;
  commitFailures: number;
  connects: number;
  acksSent: number;
  /** acks not sent because their connection closed or a commit failed: the broker redelivers these */
  acksDropped: number;
}

export interface MqttSessionOptions {
  config: MqttConnectionConfig;
  subscriptions: SessionSubscription[];
  ctx: Pick<DriverContext, 'emit' | 'deadLetter'>;
  log: Logger;
  health: HealthTracker;
  /** decodes one message, in arrival order; must not throw (a throw dead-letters the message as INTERNAL) */
  handle?(msg: InboundMessage): HandleResult;
  /**
   * The dedupe key of a message's dead letter (the MQTT driver: topic and payload digest), so that a
   * message whose dead letter was committed but not acknowledged is not written again when it comes
   * again. Absent: dead letters have no key.
   */
  deadLetterKey?(topic: string, payload: Buffer): string;
  /** instead of handle + ctx.emit: decodes and commits a whole batch elsewhere; resolves when it is durable */
  commitRaw?(batch: RawBatch): Promise<RawCommitResult>;
  /** extra mqtt.js options for each connection (a will message) */
  connectOverrides?: () => Partial<IClientOptions>;
  /** after the subscriptions are granted on a new connection */
  onReady?: (sessionPresent: boolean) => void;
  /**
   * Handler state that must match what is durable (Sparkplug births). Called when a batch is cut, with
   * the handler's state as of that batch's last message; the function it returns (if any) runs once that
   * batch is committed, before its acknowledgements go out.
   */
  checkpoint?: () => (() => void) | undefined;
  /**
   * The connection ended (a commit failed, the socket closed, stop) with messages not acknowledged: the
   * broker redelivers them after the reconnect, and a batch not yet committed never will be. A stateful
   * handler goes back to its state as of the last committed batch (its last checkpoint that committed),
   * so the redelivered messages meet the state they first met.
   */
  onRewind?: () => void;
}

export interface RawCommitResult {
  /** messages that became signals (stored, or duplicates of stored ones) */
  committed: number;
  deadByCode: Record<string, number>;
  ignored: number;
}

/** raw bytes kept with a dead letter */
export const DEAD_LETTER_MAX_BYTES = 64 * 1024;
const RECONNECT_BASE_MS = 500;
const STOP_TIMEOUT_MS = 5000;
/** commits handed to the outbox (or the commit thread) and not yet durable, per connection */
const EMITS_IN_FLIGHT = 1;

interface AckEntry {
  messageId: number;
  ready: boolean;
}

interface Batch {
  signals: Signal[];
  entries: AckEntry[];
  /** commit-thread mode: the messages themselves */
  raw: RawBatch | undefined;
  /** holds a commit point: goes through the commit chain even without signals */
  force: boolean;
  /** dead letters of this batch's messages: written when the batch commits, in its turn (key: deadLetterKey's) */
  dead: Array<{ code: ErrorCode; reason: string; payload: Buffer; key?: string }>;
}

type SendPacket = (packet: Record<string, unknown>, cb?: (err?: Error) => void, cbStorePut?: unknown, noStore?: boolean) => void;

/** One network connection; its acks die with it. */
interface Conn {
  client: MqttClient;
  sendPacket: SendPacket;
  /** QoS 1 messages received and not yet acknowledged, in arrival order */
  acks: AckEntry[];
  batch: Batch;
  flushScheduled: boolean;
  emits: Set<Promise<void>>;
  /** the last batch handed on: the next one is committed only after it, and only if it succeeded */
  last: Promise<void>;
  /** this connection's number: the commit thread refuses its later batches once one of them failed */
  gen: number;
  /** signals handed to emit and not yet committed */
  pendingSignals: number;
  /** handleMessage callbacks held while too much is pending (back-pressure on the socket) */
  held: Array<() => void>;
  dead: boolean;
}

export class MqttSession {
  readonly counters: SessionCounters = {
    received: 0,
    committed: 0,
    committedBatches: 0,
    deadLettered: {},
    ignored: 0,
    commitFailures: 0,
    connects: 0,
    acksSent: 0,
    acksDropped: 0,
  };
  private readonly o: MqttSessionOptions;
  private readonly limit: number;
  private readonly maxPending: number;
  private conn: Conn | undefined;
  private attempt = 0;
  private gens = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
  private started = false;
  private sendingOwnAck = false;
  private lastError: string | undefined;

  constructor(o: MqttSessionOptions) {
    this.o = o;
    if ((o.handle === undefined) === (o.commitRaw === undefined)) throw new Error('MqttSession needs exactly one of handle and commitRaw');
    this.limit = inflightLimit(o.config);
    this.maxPending = Math.max(o.config.maxBatch * 4, this.limit * 2);
  }

  get connected(): boolean {
    return this.conn?.client.connected === true && !this.conn.dead;
  }

  /** Connects in the background; retries with jittered backoff forever. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.stopping = false;
    this.o.health.set('starting', `connecting to ${this.o.config.url}`);
    this.connectOnce();
  }

  private connectOnce(): void {
    this.timer = undefined;
    if (this.stopping) return;
    let opts: IClientOptions;
    try {
      opts = clientOptions(this.o.config, this.o.connectOverrides?.() ?? {});
    } catch (err) {
      // e.g. a certificate file that disappeared: visible, and retried like a network error
      this.lastError = String((err as Error).message ?? err);
      this.o.health.set('down', `cannot prepare the connection: ${this.lastError}`);
      this.scheduleReconnect();
      return;
    }
    const client = connect(opts);
    const conn = this.wire(client);
    this.conn = conn;
  }

  private wire(client: MqttClient): Conn {
    const anyClient = client as unknown as { _sendPacket: SendPacket; handleMessage: (p: unknown, cb: () => void) => void };
    const original = anyClient._sendPacket.bind(client) as SendPacket;
    const conn: Conn = {
      client,
      sendPacket: original,
      acks: [],
      batch: this.newBatch(),
      flushScheduled: false,
      emits: new Set(),
      last: Promise.resolve(),
      gen: ++this.gens,
      pendingSignals: 0,
      held: [],
      dead: false,
    };
    anyClient._sendPacket = (packet, cb, cbStorePut, noStore) => {
      if (packet.cmd === 'puback') {
        // our acks go out in pumpAcks(), after the commit; mqtt.js's own would be too early
        cb?.();
        return;
      }
      original(packet, cb, cbStorePut, noStore);
    };
    anyClient.handleMessage = (_packet, cb) => {
      if (conn.pendingSignals + this.batchSize(conn.batch) >= this.maxPending) conn.held.push(cb);
      else cb();
    };
    client.on('packetsend', (packet) => {
      if (packet.cmd === 'puback' && !this.sendingOwnAck) {
        this.o.log.error({ messageId: (packet as { messageId?: number }).messageId }, 'mqtt.js sent a PUBACK before the outbox commit: this mqtt.js version bypasses the ack hook. Data is at risk on a crash.');
        this.o.health.set('degraded', 'PUBACK sent before commit (unsupported mqtt.js version)');
      }
    });
    client.on('connect', (connack) => {
      if (conn !== this.conn || this.stopping) return;
      this.counters.connects++;
      this.subscribe(conn, connack.sessionPresent);
    });
    client.on('message', (topic, payload, packet) => this.onMessage(conn, topic, payload, packet));
    client.on('error', (err) => {
      this.lastError = describeError(err);
      this.o.log.debug({ err: this.lastError }, 'MQTT connection error');
    });
    client.on('close', () => this.onClose(conn));
    return conn;
  }

  private subscribe(conn: Conn, sessionPresent: boolean): void {
    const map: Record<string, { qos: 0 | 1; rh?: number }> = {};
    // MQTT 5: retained messages only for new subscriptions, so a reconnect does not replay them
    for (const s of this.o.subscriptions) map[s.filter] = { qos: s.qos, ...(this.o.config.protocolVersion === 5 ? { rh: 1 } : {}) };
    conn.client.subscribe(map, (err, granted) => {
      if (conn !== this.conn || conn.dead) return;
      if (err) {
        this.o.health.set('degraded', `subscribe failed: ${describeError(err)}`);
        return;
      }
      const refused = (granted ?? []).filter((g) => g.qos === 128 || g.qos > 2);
      this.attempt = 0;
      if (refused.length > 0) {
        this.o.health.set('degraded', `broker refused subscription to ${refused.map((g) => g.topic).join(', ')}`);
      } else {
        this.o.health.set('up', sessionPresent ? 'connected, session resumed' : 'connected, new session');
      }
      this.o.onReady?.(sessionPresent);
    });
  }

  private newBatch(): Batch {
    return { signals: [], entries: [], raw: this.o.commitRaw ? new RawBatch() : undefined, force: false, dead: [] };
  }

  private batchSize(b: Batch): number {
    return b.raw ? b.raw.length : b.signals.length;
  }

  private onMessage(conn: Conn, topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (conn.dead || this.stopping || conn !== this.conn) return; // never acknowledged: redelivered later
    this.counters.received++;
    let entry: AckEntry | undefined;
    if (packet.qos > 0 && packet.messageId !== undefined) {
      entry = { messageId: packet.messageId, ready: false };
      conn.acks.push(entry);
    }
    const raw = conn.batch.raw;
    if (raw) {
      raw.push(topic, payload, packet.retain, Date.now());
      if (entry) conn.batch.entries.push(entry);
      this.afterMessage(conn);
      return;
    }
    let result: HandleResult;
    try {
      result = this.o.handle!({ topic, payload, qos: packet.qos, retain: packet.retain, dup: packet.dup, receivedAtMs: Date.now() });
    } catch (err) {
      result = { deadLetter: { code: 'INTERNAL', reason: `decoding failed: ${String((err as Error)?.stack ?? err).slice(0, 500)}` } };
    }
    if ('signals' in result && result.signals.length > 0) {
      conn.batch.signals.push(...result.signals);
      if (entry) conn.batch.entries.push(entry);
    } else {
      if ('deadLetter' in result) {
        // written with the batch, in its turn: written now, ahead of a batch whose commit then failed,
        // it was written again when the broker redelivered the message
        const key = this.o.deadLetterKey?.(topic, payload);
        conn.batch.dead.push({ code: result.deadLetter.code, reason: result.deadLetter.reason, payload: Buffer.from(payload.subarray(0, DEAD_LETTER_MAX_BYTES)), ...(key !== undefined ? { key } : {}) });
        conn.batch.force = true;
        if (entry) conn.batch.entries.push(entry);
        this.afterMessage(conn);
        return;
      } else {
        this.counters.ignored++;
        if ('commitPoint' in result && result.commitPoint) {
          // acknowledged with the batch it closes (after everything before it is committed)
          conn.batch.force = true;
          if (entry) conn.batch.entries.push(entry);
          this.afterMessage(conn);
          return;
        }
      }
      if (entry) entry.ready = true;
    }
    this.afterMessage(conn);
  }

  private afterMessage(conn: Conn): void {
    if ((conn.acks.length >= this.limit && conn.emits.size < EMITS_IN_FLIGHT) || this.batchSize(conn.batch) >= this.o.config.maxBatch) {
      // the broker's window is full and no commit is in flight to free it: nothing more comes until this
      // batch is committed, so commit it now. (With a commit in flight, its acks will free the window.)
      this.flush(conn);
    } else {
      this.scheduleFlush(conn);
    }
    this.pumpAcks(conn);
  }

  /**
   * Group commit by pipelining: with no commit in flight the batch goes when the packets of this socket
   * read are handled (low latency when quiet); while one is in flight, messages keep collecting and go
   * together the moment it completes, so the batch grows with the rate.
   */
  private scheduleFlush(conn: Conn): void {
    if (conn.flushScheduled || conn.emits.size >= EMITS_IN_FLIGHT) return;
    conn.flushScheduled = true;
    setImmediate(() => {
      conn.flushScheduled = false;
      if (conn.emits.size < EMITS_IN_FLIGHT) this.flush(conn);
    });
  }

  private flush(conn: Conn): void {
    const batch = conn.batch;
    const n = this.batchSize(batch);
    if (n === 0 && !batch.force) {
      this.pumpAcks(conn);
      return;
    }
    conn.batch = this.newBatch();
    if (conn.dead) return;
    conn.pendingSignals += n;
    // the handler's state as of this batch's last message (taken now: later messages change it)
    const committed = this.o.checkpoint?.();
    // Batches commit one after the other, in arrival order, and none after a failed one: a later batch
    // committed before the redelivery of an earlier one would put its events first (a counter would
    // read a lower total after a higher one, a reset, and count again).
    // The commit thread (raw batches) does that itself, so it can have the next batch queued while it
    // commits one: it refuses a connection's batches once one of them failed (RawBatch.gen).
    const commit = (): Promise<void> => {
      if (conn.dead) return Promise.reject(new Error('an earlier batch of this connection failed; this one is redelivered'));
      // after the signals: if their commit fails, no dead letter of the batch is written either (the
      // redelivery writes it once); if a dead letter fails, the redelivered signals are duplicates
      const writeDead = () => {
        for (const d of batch.dead) {
          this.o.ctx.deadLetter(d.code, d.reason, d.payload, d.key);
          this.counters.deadLettered[d.code] = (this.counters.deadLettered[d.code] ?? 0) + 1;
        }
      };
      if (n === 0) return Promise.resolve().then(writeDead);
      return (batch.raw ? this.o.commitRaw!(batch.raw).then((r) => this.countRaw(r)) : this.o.ctx.emit(batch.signals).then(() => void (this.counters.committed += n))).then(writeDead);
    };
    if (batch.raw) batch.raw.gen = conn.gen;
    const p = (batch.raw ? commit() : conn.last.then(commit)).then(
      () => {
        this.counters.committedBatches++;
        if (n > 0) this.o.health.valueSeen();
        committed?.();
        for (const e of batch.entries) e.ready = true;
        this.pumpAcks(conn);
      },
      (err: unknown) => this.commitFailed(conn, err),
    );
    conn.last = p;
    conn.emits.add(p);
    void p.finally(() => {
      conn.emits.delete(p);
      conn.pendingSignals -= n;
      this.releaseHeld(conn);
      if (this.batchSize(conn.batch) > 0) this.scheduleFlush(conn);
    });
  }

  private countRaw(r: RawCommitResult): void {
    this.counters.committed += r.committed;
    this.counters.ignored += r.ignored;
    for (const [code, k] of Object.entries(r.deadByCode)) this.counters.deadLettered[code] = (this.counters.deadLettered[code] ?? 0) + k;
  }

  private releaseHeld(conn: Conn): void {
    while (conn.held.length > 0 && (conn.dead || conn.pendingSignals + this.batchSize(conn.batch) < this.maxPending)) conn.held.shift()!();
  }

  /** Sends the PUBACKs of committed messages, in arrival order, on the connection that received them. */
  private pumpAcks(conn: Conn): void {
    const q = conn.acks;
    let n = 0;
    while (n < q.length && q[n].ready) n++;
    if (n === 0) return;
    const done = q.splice(0, n);
    if (conn.dead || conn !== this.conn || !conn.client.connected) {
      this.counters.acksDropped += done.length;
      return;
    }
    // one write for the whole batch: the broker reads the acks together and refills its window in a burst
    const stream = conn.client.stream as { cork?: () => void; uncork?: () => void } | undefined;
    this.sendingOwnAck = true;
    stream?.cork?.();
    try {
      for (const e of done) conn.sendPacket({ cmd: 'puback', messageId: e.messageId, reasonCode: 0 });
    } finally {
      this.sendingOwnAck = false;
      stream?.uncork?.();
    }
    this.counters.acksSent += done.length;
  }

  /** Nothing of this connection is acknowledged any more; the broker redelivers after a reconnect. */
  private commitFailed(conn: Conn, err: unknown): void {
    if (conn.dead) return;
    this.counters.commitFailures++;
    const why = isPlantBridgeError(err) ? `${err.code}: ${err.message}` : String((err as Error)?.message ?? err);
    this.o.log.warn({ err: why }, 'Outbox commit failed: not acknowledging; the broker will redeliver after a reconnect.');
    this.o.health.set('degraded', `not acknowledging (${why}); reconnecting`);
    this.kill(conn);
  }

  private kill(conn: Conn): void {
    if (conn.dead) return;
    conn.dead = true;
    if (conn === this.conn) this.o.onRewind?.();
    this.counters.acksDropped += conn.acks.length;
    conn.acks = [];
    conn.batch = this.newBatch();
    this.releaseHeld(conn);
    conn.client.end(true);
  }

  private onClose(conn: Conn): void {
    const wasCurrent = conn === this.conn;
    this.kill(conn);
    if (!wasCurrent || this.stopping) return;
    const delay = this.scheduleReconnect();
    this.o.health.set('down', `disconnected${this.lastError ? ` (${this.lastError})` : ''}; retrying in ${Math.round(delay / 100) / 10}s`);
  }

  private scheduleReconnect(): number {
    const delay = backoffDelay(this.attempt++, RECONNECT_BASE_MS, this.o.config.reconnectMaxDelay);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connectOnce(), delay);
    return delay;
  }

  /** Publishes on the current connection (Sparkplug NCMD, STATE). Rejects when not connected. */
  async publish(topic: string, payload: Buffer | string, opts: IClientPublishOptions): Promise<void> {
    const conn = this.conn;
    if (!conn || conn.dead || !conn.client.connected) throw new Error('not connected');
    await conn.client.publishAsync(topic, payload, opts);
  }

  /** Stops taking messages, commits and acknowledges what was taken, then disconnects (the session stays). */
  async stop(): Promise<void> {
    this.stopping = true;
    this.started = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    const conn = this.conn;
    if (!conn) return;
    this.flush(conn);
    // a stuck outbox must not hold shutdown forever: what is not acknowledged is redelivered next time
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      Promise.allSettled([...conn.emits]).then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), STOP_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
    if (!drained) this.o.log.warn('Stopping without waiting for the last commit; its messages will be redelivered.');
    this.pumpAcks(conn);
    conn.dead = true;
    this.releaseHeld(conn);
    const client = conn.client;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => client.end(true, () => resolve()), STOP_TIMEOUT_MS);
      client.end(!client.connected, () => {
        clearTimeout(t);
        resolve();
      });
    });
    this.conn = undefined;
  }
}

/** Fails at create() when mqtt.js no longer has the method the ack hook wraps (see mqtt-ack-pin.test.ts). */
export function assertAckHookSupported(): void {
  if (typeof (MqttClientClass.prototype as unknown as Record<string, unknown>)._sendPacket !== 'function') {
    throw new PlantBridgeError('INTERNAL', 'this mqtt.js version has no MqttClient._sendPacket: acknowledging after the commit is not possible; pin mqtt to 5.x (agent/drivers/mqtt/README.md)');
  }
}

export function describeError(err: unknown): string {
  const e = err as { code?: unknown; message?: string };
  const code = e?.code !== undefined ? `${String(e.code)} ` : '';
  return `${code}${e?.message ?? String(err)}`.trim().slice(0, 300);
}
