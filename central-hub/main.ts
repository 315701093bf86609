import type { HubConfig } from './config/schema.ts';
import { buildHub } from './build-hub.ts';
import { createHubLogger } from './log.ts';

/** Serves until SIGINT / SIGTERM; then stops listening, lets ERP calls in flight finish and record, closes the store. */
export async function serveHub(config: HubConfig, stopSignal: Promise<string>): Promise<number> {
  const log = createHubLogger(config.log.level);
  const hub = buildHub({ config, log });
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
