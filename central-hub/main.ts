import type { HubConfig } from './config/schema.ts';
import { buildHub } from './build-hub.ts';
import type { StoreRuntime } from './store/open-store.ts';
import { createLogger } from '../contracts/log.ts';

/** Serves until SIGINT / SIGTERM; then stops listening, lets ERP calls in flight finish and record, closes the store. */
export async function serveHub(config: HubConfig, stopSignal: Promise<string>, storeRuntime: StoreRuntime = {}): Promise<number> {
  const log = createLogger({ level: config.log.level, base: { component: 'hub' } });
  const hub = buildHub({ config, log, storeRuntime });
  try {
    await hub.start();
  } catch (err) {
    log.fatal({ err }, 'Hub failed to start');
    await hub.stop().catch(() => {});
    return 2;
  }
  const sig = await stopSignal;
  log.info({ signal: sig }, 'Stopping');
  await hub.stop();
  return 0;
}
