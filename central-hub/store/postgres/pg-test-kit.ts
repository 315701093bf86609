import { randomBytes } from 'node:crypto';
import { userInfo } from 'node:os';
import pg from 'pg';
import { MissingService, postgresUrl } from '../../../test/helpers/services.ts';
import { PostgresHubStore } from './postgres-store.ts';

/** A private PostgreSQL schema per test file, dropped at the end, so parallel test files never collide. */
export async function pgSchemaForTest(): Promise<{ url: string; schema: string; open(): PostgresHubStore; drop(): Promise<void> } | { skip: string }> {
  let url: string;
  try {
    url = await postgresUrl();
  } catch (err) {
    if (err instanceof MissingService && !/CI=true/.test(err.message)) return { skip: err.message };
    throw err;
  }
  const schema = `pb_t_${randomBytes(5).toString('hex')}`;
  return {
    url,
    schema,
    open: () => new PostgresHubStore({ connectionString: url, max: 4, schema }),
    drop: async () => {
      const u = new URL(url);
      if (!u.username) u.username = process.env.PGUSER ?? userInfo().username;
      const c = new pg.Client({ connectionString: u.toString() });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await c.end();
    },
  };
}
