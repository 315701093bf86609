import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hubStoreContract } from '../contract-suite.ts';
import { SqliteHubStore } from './sqlite-store.ts';

const dir = mkdtempSync(join(tmpdir(), 'pb-hubstore-'));
const file = join(dir, 'hub.db');

hubStoreContract('sqlite', {
  open: async () => new SqliteHubStore(file),
  second: async () => new SqliteHubStore(file),
  cleanup: async () => rmSync(dir, { recursive: true, force: true }),
});
