#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { isPlantBridgeError } from '../contracts/errors.ts';
import { VERSION } from '../contracts/version.ts';
import type { StoreRuntime } from './store/open-store.ts';

const HELP = `plantbridge-hub ${VERSION} — receives plant transactions, posts them to the ERP once, shows the fleet

Usage:
  plantbridge-hub serve [--config FILE]           run the hub (Ctrl-C / SIGTERM stop it cleanly)
  plantbridge-hub check-config [--config FILE]    validate the config offline and exit
  plantbridge-hub agents add --plant P [--plant P2] --name N [--ttl 24h]
                                                  one-time enrollment token for agent N (its agent.id)
  plantbridge-hub agents list [--json] | revoke --name N | rotate --name N
  plantbridge-hub dead-letters list [--json] [--limit N]
  plantbridge-hub dead-letters show <seq|key>
  plantbridge-hub dead-letters replay <seq>        queue again after a fix (the ERP is checked first)
  plantbridge-hub dead-letters discard <seq> --reason "…"
  plantbridge-hub --version | --help

Options:
  -c, --config FILE   hub.yaml (default: $PLANTBRIDGE_HUB_CONFIG, else ./hub.yaml)

Exit codes: 0 ok, 1 invalid configuration or usage, 2 runtime failure.`;

class UsageError extends Error {}

/**
 * Signal handlers are installed before anything heavy loads, so a SIGTERM that arrives while the
 * process is still starting stops it gracefully too. A second signal exits at once.
 */
function stopSignal(): Promise<string> {
  return new Promise((resolve) => {
    let seen = false;
    const on = (sig: string) => {
      if (seen) process.exit(2);
      seen = true;
      resolve(sig);
    };
    process.on('SIGINT', () => on('SIGINT'));
    process.on('SIGTERM', () => on('SIGTERM'));
  });
}

async function main(argv: string[], runtime: StoreRuntime): Promise<number> {
  // agents has its own options (--plant, --name, --ttl)
  if (argv[0] === 'agents') return (await import('./enrollment/agents-cli.ts')).agentsMain(argv.slice(1), undefined, runtime);
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        version: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
        json: { type: 'boolean' },
        limit: { type: 'string' },
        reason: { type: 'string' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const [command, sub, arg] = positionals;
  if (values.help || command === 'help') {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (!command) throw new UsageError('a command is needed');
  const file = values.config ?? process.env.PLANTBRIDGE_HUB_CONFIG ?? 'hub.yaml';
  const stop = command === 'serve' ? stopSignal() : undefined;
  const { loadHubConfig } = await import('./config/load.ts');
  switch (command) {
    case 'check-config': {
      const { config, version } = loadHubConfig(file);
      process.stdout.write(`${file}: valid (config version ${version}; listens on ${config.hub.host}:${config.hub.port}, store ${config.store.type}, ERP ${config.erp.type}, ${config.agents.length} agent(s))\n`);
      return 0;
    }
    case 'serve': {
      const { config } = loadHubConfig(file);
      const { serveHub } = await import('./main.ts');
      return serveHub(config, stop!, runtime);
    }
    case 'dead-letters': {
      const { config } = loadHubConfig(file);
      const { deadLettersCommand } = await import('./dead-letters-cli.ts');
      return deadLettersCommand(config, sub, arg, {
        ...(values.reason ? { reason: values.reason } : {}),
        ...(values.json ? { json: true } : {}),
        ...(values.limit ? { limit: Number(values.limit) } : {}),
      }, runtime);
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

/**
 * Runs the CLI. `runtime`: where the SQLite store's addon and checkpoint thread are, handed in by the
 * single executable's entry (installers/build/hub-entry.ts); from a checkout, nothing.
 */
export function runHubCli(argv: string[], runtime: StoreRuntime = {}): void {
  main(argv, runtime).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      if (err instanceof UsageError) {
        process.stderr.write(`plantbridge-hub: ${err.message}\n\n${HELP}\n`);
        process.exitCode = 1;
      } else if (isPlantBridgeError(err, 'CONFIG_INVALID')) {
        process.stderr.write(`plantbridge-hub: ${err.message}\n`);
        process.exitCode = 1;
      } else {
        process.stderr.write(`plantbridge-hub: ${isPlantBridgeError(err) ? `${err.code}: ` : ''}${(err as Error)?.stack ?? String(err)}\n`);
        process.exitCode = 2;
      }
    },
  );
}

if (import.meta.main) runHubCli(process.argv.slice(2));
