import { join } from 'node:path';
import type { HubConfig } from '../config/schema.ts';
import type { HubStore } from './hub-store.ts';
import { SqliteHubStore } from './sqlite/sqlite-store.ts';

/** Opens the configured store; pg is loaded only when PostgreSQL is configured. */
export async function openHubStore(config: HubConfig): Promise<HubStore> {
  if (config.store.type === 'sqlite') {
    // in the single executable, better-sqlite3's addon is extracted to the data directory
    const { nativeBindingPath } = await import('../../installers/build/sea-runtime.ts');
    return new SqliteHubStore(config.store.path ?? join(config.hub.dataDir, 'hub.db'), nativeBindingPath(config.hub.dataDir));
  }
  const { PostgresHubStore } = await import('./postgres/postgres-store.ts');
  return new PostgresHubStore({ connectionString: config.store.url.reveal(), max: config.store.poolSize });
}
