import { outboxContractSuite } from './contract-suite.ts';
import { openOutbox } from './outbox.ts';

// one suite, every database layer (DESIGN.md §4): better-sqlite3 (default) and Node's built-in node:sqlite
outboxContractSuite({ name: 'better-sqlite3', driver: 'better-sqlite3', open: (o) => openOutbox({ ...o, driver: 'better-sqlite3' }) });
outboxContractSuite({ name: 'node:sqlite', driver: 'node:sqlite', open: (o) => openOutbox({ ...o, driver: 'node:sqlite' }) });
