import { join } from 'node:path';
import { printable, printableJson } from '../../contracts/index.ts';
import type { AgentConfig } from '../config/schema.ts';
import { openOutbox, type Outbox, type TxStatus } from './outbox.ts';
import { OUTBOX_USAGE } from './outbox-usage.ts';

/**
 * `plantbridge-agent outbox …` on the live database, beside a running agent. The outbox is opened as a
 * tool: no start-up check or quarantine (that is the agent's job), no timers, no checkpoint at close.
 * SQLite WAL lets reads run without blocking the agent; writes (replay, discard, resend) are short
 * IMMEDIATE transactions of at most a few hundred rows, so the agent's commits wait milliseconds at most.
 */

export interface OutboxCommandOptions {
  limit?: number;
  status?: string;
  after?: number;
  since?: string;
  all?: boolean;
  /** better-sqlite3's addon when running as the single executable */
  nativeBinding?: string;
}

const STATUSES: TxStatus[] = ['pending', 'leased', 'sent', 'dead', 'shadow', 'discarded'];

/** "2026-05-01T06:00:00Z", "2026-05-01", or a duration back from now: "90m", "6h", "2d", "1w". */
export function parseSince(text: string, now = Date.now()): number | undefined {
  const rel = /^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$/.exec(text.trim());
  if (rel) return now - Number(rel[1]) * { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 }[rel[2] as 's']!;
  const t = Date.parse(text);
  return Number.isNaN(t) ? undefined : t;
}

export interface CommandIo {
  out(text: string): void;
  err(text: string): void;
  now?: () => number;
}

const stdio: CommandIo = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

/** Runs one outbox subcommand against an open outbox; returns the exit code (0 ok, 1 usage or not found). */
export function runOutboxCommand(outbox: Outbox, sub: string | undefined, arg: string | undefined, opts: OutboxCommandOptions = {}, io: CommandIo = stdio): number {
  // dead letters hold raw payloads and hub reasons: JSON with every control character escaped
  const json = (v: unknown) => io.out(`${printableJson(v)}\n`);
  const limit = opts.limit !== undefined && Number.isFinite(opts.limit) && opts.limit > 0 ? Math.floor(opts.limit) : 50;
  switch (sub) {
    case 'stats': {
      const { full: _full, fullReason: _reason, ...stats } = outbox.stats();
      // "full" is the running agent's in-memory view: it is in its /health, not in the file
      json({ ...stats, alarms: outbox.alarms() });
      return 0;
    }
    case 'list': {
      if (opts.status !== undefined && !STATUSES.includes(opts.status as TxStatus)) {
        io.err(`outbox list: --status must be one of ${STATUSES.join(', ')}\n`);
        return 1;
      }
      json(outbox.listTransactions({ limit, ...(opts.status ? { status: opts.status as TxStatus } : {}), ...(opts.after !== undefined ? { afterSeq: opts.after } : {}) }));
      return 0;
    }
    case 'dead-letters':
      json(outbox.listDeadLetters(limit));
      return 0;
    case 'replay':
    case 'discard': {
      if (sub === 'replay' && (opts.all || arg === '--all' || arg === 'all')) {
        const n = outbox.replayAllDeadLetters();
        io.out(`${n} dead-lettered transaction(s) queued again\n`);
        return 0;
      }
      const id = Number(arg);
      if (!Number.isInteger(id)) {
        io.err(`outbox ${sub}: a dead letter id is needed${sub === 'replay' ? ' (or --all)' : ''} (see: outbox dead-letters)\n`);
        return 1;
      }
      const ok = sub === 'replay' ? outbox.replayDeadLetter(id) : outbox.discardDeadLetter(id);
      if (ok) io.out(`dead letter ${printable(String(id))}: ${sub === 'replay' ? 'queued again' : 'discarded'}\n`);
      else io.err(`dead letter ${printable(String(id))}: not found, already resolved${sub === 'replay' ? ', or not a transaction (inputs are replayed at their source)' : ''}\n`);
      return ok ? 0 : 1;
    }
    case 'resend': {
      const text = opts.since ?? (arg && arg !== '--since' ? arg : undefined);
      const since = text === undefined ? undefined : parseSince(text, (io.now ?? Date.now)());
      if (since === undefined) {
        io.err('outbox resend: --since <time> is needed (ISO 8601 such as 2026-05-01T06:00Z, or 90m / 6h / 2d ago)\n');
        return 1;
      }
      const n = outbox.resendSince(since);
      io.out(`${n} transaction(s) sent since ${new Date(since).toISOString()} are pending again; the hub dedupes those it still has\n`);
      return 0;
    }
    case 'ack-alarm': {
      if (!arg) {
        io.err('outbox ack-alarm: an alarm code is needed (see: outbox stats)\n');
        return 1;
      }
      const ok = outbox.acknowledgeAlarm(arg);
      if (ok) io.out(`alarm ${printable(arg)} acknowledged\n`);
      else io.err(`no alarm ${printable(arg)}\n`);
      return ok ? 0 : 1;
    }
    default:
      io.err(`${OUTBOX_USAGE}\n`);
      return 1;
  }
}

/** Entry point used by agent/cli.ts: opens the agent's outbox as a tool and runs one subcommand. */
export async function outboxCommand(config: AgentConfig, sub: string | undefined, arg: string | undefined, opts: OutboxCommandOptions): Promise<number> {
  const outbox = openOutbox({
    path: join(config.agent.stateDir, 'outbox.db'),
    role: 'tool',
    driver: config.outbox.driver,
    ...(opts.nativeBinding ? { nativeBinding: opts.nativeBinding } : {}),
  });
  try {
    return runOutboxCommand(outbox, sub, arg, opts);
  } finally {
    outbox.close();
  }
}

export { OUTBOX_USAGE };
