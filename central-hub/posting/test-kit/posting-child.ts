/**
 * A hub's posting service in its own process, for kill tests: posts from a SQLite store file to the SAP
 * simulator until killed. argv: <store path> <sap url> <lease ms>
 */
import { pino } from 'pino';
import { SqliteHubStore } from '../../store/sqlite/sqlite-store.ts';
import { createSapOdataAdapter } from '../../erp/sap-odata/sap-odata-adapter.ts';
import { PostingService } from '../posting-service.ts';
import { Secret } from '../../../contracts/index.ts';
import { SAP_SIM_USER } from '../../erp/sap-odata/sap-simulator.ts';

const [storePath, sapUrl, leaseMs] = process.argv.slice(2);
const store = new SqliteHubStore(storePath);
const adapter = createSapOdataAdapter(
  { type: 'sap-odata', url: sapUrl, auth: { type: 'basic', username: SAP_SIM_USER.username, password: new Secret(SAP_SIM_USER.password, 'test') }, timeout: 2000, concurrency: 4 } as never,
  {},
);
const service = new PostingService({ store, adapter, log: pino({ level: 'silent' }), concurrency: 4, leaseMs: Number(leaseMs), retryMaxDelayMs: 200, idleMs: 20 });
service.start();
process.stdout.write('ready\n');
