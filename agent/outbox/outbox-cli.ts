import { join } from 'node:path';
import type { AgentConfig } from '../config/schema.ts';
import { openOutbox } from './outbox.ts';

/**
 * `plantbridge-agent outbox …` on the live database. SQLite WAL lets this run beside the agent: reads
 * never block it, and writes (replay, discard) are short IMMEDIATE transactions.
 */
export async function outboxCommand(config: AgentConfig, sub: string | undefined, arg: string | undefined, opts: { limit: number }): Promise<number> {
  const outbox = openOutbox({ path: join(config.agent.stateDir, 'outbox.db'), synchronous: config.outbox.synchronous, maxBytes: Infinity, minFreeDiskBytes: 0 });
  try {
    switch (sub) {
      case 'stats':
        process.stdout.write(`${JSON.stringify({ ...outbox.stats(), alarms: outbox.alarms() }, null, 2)}\n`);
        return 0;
      case 'dead-letters':
        process.stdout.write(`${JSON.stringify(outbox.listDeadLetters(opts.limit), null, 2)}\n`);
        return 0;
      case 'replay':
      case 'discard': {
        const id = Number(arg);
        if (!Number.isInteger(id)) {
          process.stderr.write(`outbox ${sub}: a dead letter id is needed (see: outbox dead-letters)\n`);
          return 1;
        }
        const ok = sub === 'replay' ? outbox.replayDeadLetter(id) : outbox.discardDeadLetter(id);
        process.stdout.write(ok ? `dead letter ${id}: ${sub === 'replay' ? 'queued again' : 'discarded'}\n` : `dead letter ${id}: not found or already resolved\n`);
        return ok ? 0 : 1;
      }
      case 'ack-alarm': {
        if (!arg) {
          process.stderr.write('outbox ack-alarm: an alarm code is needed (see: outbox stats)\n');
          return 1;
        }
        const ok = outbox.acknowledgeAlarm(arg);
        process.stdout.write(ok ? `alarm ${arg} acknowledged\n` : `no alarm ${arg}\n`);
        return ok ? 0 : 1;
      }
      default:
        process.stderr.write('outbox: expected stats | dead-letters | replay <id> | discard <id> | ack-alarm <code>\n');
        return 1;
    }
  } finally {
    outbox.close();
  }
}
