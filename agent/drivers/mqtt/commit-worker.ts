import { parentPort, workerData } from 'node:worker_threads';
import type { Logger } from 'pino';
import { isPlantBridgeError, type Signal } from '../../../contracts/index.ts';
import { openOutbox, type InputDeadLetter, type Outbox } from '../../outbox/outbox.ts';
import { RuleEngine, buildRules } from '../../rules/engine.ts';
import { deadLetterKey, Mapper } from './mapping.ts';
import { DEAD_LETTER_MAX_BYTES } from './mqtt-session.ts';
import type { BatchReply, CommitWorkerData, ToWorker, WorkerLog } from './commit-thread.ts';

/**
 * The MQTT driver's commit thread (see commit-thread.ts): decodes the payloads of each batch the driver's
 * connection received and commits them, with the rules, through an outbox connection of its own. It answers
 * each batch only after its commit is durable; the driver then sends the batch's PUBACKs.
 */

const port = parentPort;
if (!port) throw new Error('commit-worker.ts runs as a worker thread of the MQTT driver');
const data = workerData as CommitWorkerData;

/** log records go to the driver's logger on the main thread */
function logger(): Logger {
  const send = (level: WorkerLog['level']) => (obj: unknown, msg?: string) => {
    const rec: WorkerLog = typeof obj === 'string' ? { type: 'log', level, msg: obj } : { type: 'log', level, obj: plain(obj), ...(msg ? { msg } : {}) };
    port!.postMessage(rec);
  };
  const l = { trace: () => undefined, debug: () => undefined, info: send('info'), warn: send('warn'), error: send('error'), fatal: send('error') } as Record<string, unknown>;
  l.child = () => l;
  return l as unknown as Logger;
}

/** what a structured clone can carry: errors as their message */
function plain(obj: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries((obj ?? {}) as Record<string, unknown>)) out[k] = v instanceof Error ? v.message : typeof v === 'object' && v !== null ? JSON.parse(JSON.stringify(v)) : v;
  return out;
}

let outbox: Outbox;
let mapper: Mapper;
try {
  const { spec } = data;
  mapper = new Mapper(data.mapper);
  const engine = new RuleEngine(buildRules(spec.rules, spec.engine.mode), spec.engine);
  outbox = openOutbox({ ...spec.outbox, role: 'writer', rules: engine, log: logger() });
  const cpu = process.threadCpuUsage();
  port.postMessage({ type: 'ready', cpuUs: cpu.user + cpu.system });
} catch (err) {
  port.postMessage({ type: 'start-failed', error: errorOf(err) });
  process.exit(0);
}

function errorOf(err: unknown): { code: string; message: string } {
  if (isPlantBridgeError(err)) return { code: err.code, message: err.message };
  return { code: 'INTERNAL', message: String((err as Error)?.message ?? err) };
}

/** the connection whose batch failed: its later batches, queued behind it, are refused, not committed */
let failedGen = -1;

function commit(m: Extract<ToWorker, { type: 'batch' }>): void {
  if (m.gen === failedGen) {
    port!.postMessage({ type: 'failed', id: m.id, error: { code: 'INTERNAL', message: 'an earlier batch of this connection failed; this one is redelivered after it' } });
    return;
  }
  const bytes = Buffer.from(m.bytes);
  const signals: Signal[] = [];
  const dead: InputDeadLetter[] = [];
  const deadByCode: Record<string, number> = {};
  let ignored = 0;
  let start = 0;
  for (let i = 0; i < m.topics.length; i++) {
    const end = m.ends[i];
    const payload = bytes.subarray(start, end);
    start = end;
    let r: ReturnType<Mapper['map']> | { kind: 'dead'; code: 'INTERNAL'; reason: string };
    try {
      r = mapper.map(m.topics[i], payload, m.retain[i] === 1, m.receivedAt[i]);
    } catch (err) {
      r = { kind: 'dead', code: 'INTERNAL', reason: `decoding failed: ${String((err as Error)?.stack ?? err).slice(0, 500)}` };
    }
    if (r.kind === 'signal') signals.push(r.signal);
    else if (r.kind === 'dead') {
      dead.push({ source: data.mapper.name, code: r.code, reason: r.reason, payload: payload.subarray(0, DEAD_LETTER_MAX_BYTES), dedupeKey: deadLetterKey(data.mapper.name, m.topics[i], payload) });
      deadByCode[r.code] = (deadByCode[r.code] ?? 0) + 1;
    } else ignored++;
  }
  outbox.append(signals, dead).then(
    (r) => {
      const cpu = process.threadCpuUsage();
      const reply: BatchReply = { type: 'done', id: m.id, signals: signals.length, result: r, deadByCode, ignored, cpuUs: cpu.user + cpu.system };
      port!.postMessage(reply);
    },
    (err: unknown) => {
      failedGen = m.gen;
      port!.postMessage({ type: 'failed', id: m.id, error: errorOf(err) });
    },
  );
  // the batch is the group: commit it now instead of waiting for the outbox's group-commit delay (so it
  // has failed or not before the next batch's message is read: the rejection above runs first)
  outbox.flushQueued();
}

port.on('message', (m: ToWorker) => {
  if (m.type === 'batch') commit(m);
  else if (m.type === 'close') {
    try {
      outbox.close();
    } finally {
      port.postMessage({ type: 'closed' });
      port.close();
    }
  }
});
