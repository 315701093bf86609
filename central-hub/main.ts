import type { HubConfig } from './config/schema.ts';
import { buildHub } from './build-hub.ts';
import type { StoreRuntime } from './store/open-store.ts';
import { createLogger } from '../contracts/log.ts';
import { PostingSummary } from './posting-summary.ts';

/** Serves until SIGINT / SIGTERM; then stops listening, lets ERP calls in flight finish and record, closes the store. */
export async function serveHub(config: HubConfig, stopSignal: Promise<string>, storeRuntime: StoreRuntime = {}): Promise<number> {
  const log = createLogger({ level: config.log.level, base: { component: 'hub' } });
  const summary = new PostingSummary(log.child({ component: 'posting' }));
  const hub = buildHub({ config, log, storeRuntime, onOutcome: (_tx, outcome) => summary.record(outcome) });
  try {
    await hub.start();
    summary.start();
  } catch (err) {
    log.fatal({ err }, 'Hub failed to start');
    await hub.stop().catch(() => {});
    return 2;
  }
  const sig = await stopSignal;
  log.info({ signal: sig }, 'Stopping');
  await hub.stop();
  summary.stop();
  log.info('Stopped');
  return 0;
}
