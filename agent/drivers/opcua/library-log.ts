import { format } from 'node:util';
import type { Logger } from 'pino';
import { setErrorLogger, setWarningLogger } from 'node-opcua';

/** After this many of one message, node-opcua's repeats of it are dropped (as its own logger does). */
const REPEATS = 10;

/**
 * node-opcua prints its own warnings and errors with console.log, i.e. to stdout: among the agent's JSON
 * log lines, or into the answer of `opcua browse` (e.g. "Creating default certificate ... please wait" on
 * the first connect with a fresh PKI folder). Routed here instead: into `log` as JSON lines with
 * `library: "node-opcua"` (the agent), else to stderr (the CLI tools, whose stdout is their answer).
 * node-opcua keeps one process-wide logger, so a message is not attributed to a driver.
 */
export function routeNodeOpcuaLog(log?: Logger): void {
  const seen = new Map<string, number>();
  const write = (level: 'warn' | 'error') => (_context: unknown, ...args: unknown[]) => {
    // eslint-disable-next-line no-control-regex
    const msg = format(...args).replace(/\u001b\[[0-9;]*m/g, '').trim();
    const n = (seen.get(msg) ?? 0) + 1;
    if (seen.size > 500) seen.clear();
    seen.set(msg, n);
    if (n > REPEATS) return;
    const text = n === REPEATS ? `${msg} (repeated ${REPEATS} times; further repeats are not logged)` : msg;
    if (log) log[level]({ library: 'node-opcua' }, text);
    else process.stderr.write(`node-opcua: ${text}\n`);
  };
  setWarningLogger(write('warn'));
  setErrorLogger(write('error'));
}
