/**
 * `npm run test:only`: the whole suite under node --test, with a private temporary directory.
 *
 * Tests make many scratch directories (brokers, PKI, outboxes, hubs); TMPDIR points at one fresh root for
 * the run, which is removed afterwards, so a run leaves nothing behind in the system's temp directory. Extra
 * arguments go to node --test. PLANTBRIDGE_KEEP_TMP=1 keeps the root to look at.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const GLOBS = ['contracts/**/*.test.ts', 'config/**/*.test.ts', 'agent/**/*.test.ts', 'central-hub/**/*.test.ts', 'installers/**/*.test.ts', 'test/**/*.test.ts'];

const root = mkdtempSync(join(tmpdir(), 'plantbridge-test-'));
// traversable like /tmp itself: a root-started Mosquitto drops to its own user and must reach its config
// (each test's own scratch directory keeps the mode the test gives it)
chmodSync(root, 0o755);
const args = ['--test', '--test-concurrency=3', '--test-timeout=600000', ...process.argv.slice(2), ...GLOBS];
const child = spawn(process.execPath, args, { stdio: 'inherit', env: { ...process.env, TMPDIR: root, TEMP: root, TMP: root } });
const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
process.on('SIGINT', forward('SIGINT'));
process.on('SIGTERM', forward('SIGTERM'));
child.on('exit', (code, signal) => {
  if (process.env.PLANTBRIDGE_KEEP_TMP) process.stderr.write(`test scratch directories kept in ${root}\n`);
  else rmSync(root, { recursive: true, force: true, maxRetries: 3 });
  process.exit(code ?? (signal ? 1 : 0));
});
