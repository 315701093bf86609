import { userInfo } from 'node:os';
import { printable, printableJson } from '../contracts/index.ts';
import type { HubConfig } from './config/schema.ts';
import { openHubStore, type StoreRuntime } from './store/open-store.ts';

/**
 * `plantbridge-hub dead-letters list | show <seq|key> | replay <seq> | discard <seq> --reason "…"`.
 * Works on the live store beside a running hub; every action is audited with the operator's name.
 */
export async function deadLettersCommand(
  config: HubConfig,
  sub: string | undefined,
  arg: string | undefined,
  opts: { reason?: string; json?: boolean; limit?: number },
  runtime: StoreRuntime = {},
): Promise<number> {
  const store = await openHubStore(config, runtime);
  const actor = `cli:${userInfo().username}`;
  const out = (s: string) => process.stdout.write(`${s}\n`);
  try {
    await store.migrate();
    switch (sub) {
      case 'list': {
        const rows = await store.listTransactions({ limit: opts.limit ?? 100, state: 'failed' });
        // every value came from an agent or the ERP: escaped, so none can move the cursor or rewrite the line
        if (opts.json) out(printableJson(rows));
        else if (rows.length === 0) out('no dead letters');
        else for (const r of rows) out([r.seq, r.plant, r.order, `${r.quantity ?? ''} ${r.uom ?? ''}`, `${r.errorCode}: ${r.errorMessage}`, r.idempotencyKey].map((v) => printable(String(v))).join('\t'));
        return 0;
      }
      case 'show': {
        if (!arg) return usage('show needs a sequence number or an idempotency key');
        // a sequence number names a dead letter (as `list` shows them); anything else is an idempotency key
        const key = /^\d+$/.test(arg) ? (await store.listTransactions({ limit: 1000, state: 'failed' })).find((r) => r.seq === Number(arg))?.idempotencyKey : arg;
        const tx = key ? await store.getTransaction(key) : undefined;
        if (!tx) {
          out(`no transaction ${printable(arg)}`);
          return 1;
        }
        out(printableJson(tx));
        return 0;
      }
      case 'replay': {
        if (!arg || !/^\d+$/.test(arg)) return usage('replay needs the sequence number shown by `dead-letters list`');
        const ok = await store.replay(Number(arg), actor);
        out(ok ? `dead letter ${arg} queued again: the hub looks the key up in the ERP before posting` : `dead letter ${arg}: not found or not failed`);
        return ok ? 0 : 1;
      }
      case 'discard': {
        if (!arg || !/^\d+$/.test(arg)) return usage('discard needs the sequence number shown by `dead-letters list`');
        if (!opts.reason) return usage('discard needs --reason "why this is not posted" (it is audited)');
        const ok = await store.discard(Number(arg), actor, opts.reason);
        out(ok ? `dead letter ${arg} discarded` : `dead letter ${arg}: not found or not failed`);
        return ok ? 0 : 1;
      }
      default:
        return usage('expected list | show <seq|key> | replay <seq> | discard <seq> --reason "…"');
    }
  } finally {
    await store.close();
  }
}

function usage(msg: string): number {
  process.stderr.write(`dead-letters: ${msg}\n`);
  return 1;
}
