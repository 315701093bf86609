import { join } from 'node:path';
import type { HubConfig } from '../config/schema.ts';
import type { HubStore } from './hub-store.ts';
import { SqliteHubStore, type CheckpointerSource } from './sqlite/sqlite-store.ts';

/**
 * What the process's entry point knows about where the SQLite store's code lives. From a checkout nothing:
 * better-sqlite3 finds its addon in node_modules and the checkpoint thread runs checkpoint-worker.ts. The
 * single executable's entry (installers/build/hub-entry.ts) extracts the addon and hands in the bundled
 * thread; product code never imports installers/.
 */
export interface StoreRuntime {
  /** better-sqlite3's addon for this data directory (extracted there by the single executable) */
  nativeBinding?: (dataDir: string) => string | undefined;
  checkpointer?: CheckpointerSource;
}

/** Opens the configured store; pg is loaded only when PostgreSQL is configured. */
export async function openHubStore(config: HubConfig, runtime: StoreRuntime = {}): Promise<HubStore> {
  if (config.store.type === 'sqlite') {
    const nativeBinding = runtime.nativeBinding?.(config.hub.dataDir);
    return new SqliteHubStore(config.store.path ?? join(config.hub.dataDir, 'hub.db'), nativeBinding, runtime.checkpointer ? { checkpointer: runtime.checkpointer } : {});
  }
  const { PostgresHubStore } = await import('./postgres/postgres-store.ts');
  return new PostgresHubStore({ connectionString: config.store.url.reveal(), max: config.store.poolSize });
}
