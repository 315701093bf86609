import { hashOf, instantErp, startTestHub } from './test-hub.ts';

/**
 * A hub in its own process (for SIGSTOP / SIGKILL tests): argv = dataDir, agentId, plant; the agent's
 * credential comes in PB_TEST_CREDENTIAL. Prints the URL as one line, then serves until SIGTERM.
 */
const [dir, agentId, plant] = process.argv.slice(2);
// an ERP with some latency, as a real one has: the hub's event loop is not all posting
const t = await startTestHub({ dir, adapter: instantErp(20) });
await t.hub.store.upsertAgent({ id: agentId, plants: [plant], tokenHash: hashOf(process.env.PB_TEST_CREDENTIAL ?? '') });
process.stdout.write(`${t.url}\n`);
process.once('SIGTERM', () => void t.stop().then(() => process.exit(0)));
