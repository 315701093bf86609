#!/usr/bin/env node
import { isSea } from 'node:sea';
import { commandHelp, docsLine, finish, GLOBAL_OPTIONS, parseCli, UsageError, type CliSpec } from '../contracts/cli-kit.ts';
import { VERSION } from '../contracts/version.ts';
import { AGENTS_HELP } from './enrollment/agents-help.ts';

const CONFIG_OPTION = '  -c, --config FILE   hub.yaml (default: $PLANTBRIDGE_HUB_CONFIG, else ./hub.yaml)';

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
  plantbridge-hub <command> --help                 that command's options
  plantbridge-hub --version | --help

Options:
${CONFIG_OPTION}

Exit codes: 0 ok, 1 invalid configuration or usage, 2 runtime failure.
${docsLine('hub', isSea())}`;

const command = (usage: string, text: string, options?: string, exit?: string) => commandHelp(CONFIG_OPTION, usage, text, options, exit);

const SPEC: CliSpec = {
  prog: 'plantbridge-hub',
  help: HELP,
  globals: GLOBAL_OPTIONS,
  commands: {
    serve: {
      options: {},
      help: command(
        'plantbridge-hub serve [--config FILE]',
        'Runs the hub: the agents\' API (/v1), the dashboard, /metrics, and the posting service that sends each\n' +
          'transaction to the ERP once. Ctrl-C or SIGTERM stops it cleanly (requests and ERP calls in flight finish);\n' +
          'a second signal exits at once.',
        '',
        'Exit codes: 0 stopped cleanly, 1 invalid configuration, 2 runtime failure (the log line says which).',
      ),
    },
    'check-config': {
      options: {},
      help: command(
        'plantbridge-hub check-config [--config FILE]',
        'Validates hub.yaml offline and prints a summary: every problem is named with its path, and every secret\n' +
          'reference must resolve (${ENV_VAR} set, file: readable).',
      ),
    },
    agents: {
      options: { plant: { type: 'string', multiple: true }, name: { type: 'string' }, ttl: { type: 'string' }, json: { type: 'boolean' } },
      help: `${AGENTS_HELP}\n\nOptions:\n${CONFIG_OPTION}`,
    },
    'dead-letters': {
      options: { json: { type: 'boolean' }, limit: { type: 'string' }, reason: { type: 'string' } },
      help: command(
        'plantbridge-hub dead-letters list|show|replay|discard … [--config FILE]',
        'Transactions the ERP refused for good (a business error) or that ran out of attempts:\n' +
          '  dead-letters list [--json] [--limit N]          newest first: sequence, key, order, the ERP\'s message\n' +
          '  dead-letters show <seq|key>                     one of them, with its body and attempts (JSON)\n' +
          '  dead-letters replay <seq>                       queue it again after the cause was fixed; the ERP is\n' +
          '                                                  asked first whether it holds the document already\n' +
          '  dead-letters discard <seq> --reason "…"         resolve it without posting (e.g. posted by hand)\n' +
          'Replay and discard are audited with the operator\'s name.',
        '      --json          list: as JSON\n      --limit N       list: at most N (default 50)\n      --reason TEXT   discard: why it is not posted (needed)',
      ),
    },
  },
};

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
  const cli = parseCli(SPEC, argv);
  if (cli.kind === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (cli.kind === 'help') {
    process.stdout.write(`${cli.text}\n`);
    return 0;
  }
  const { command, positionals } = cli;
  const str = (k: string) => (typeof cli.values[k] === 'string' ? (cli.values[k] as string) : undefined);
  const [sub, arg] = positionals;
  // agents parses its own options (checked above) and needs none of the ERP's secrets
  if (command === 'agents') return (await import('./enrollment/agents-cli.ts')).agentsMain(cli.argv, undefined, runtime);
  const file = str('config') ?? process.env.PLANTBRIDGE_HUB_CONFIG ?? 'hub.yaml';
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
      if (!sub || !['list', 'show', 'replay', 'discard'].includes(sub)) throw new UsageError(sub ? `unknown subcommand ${JSON.stringify(sub)}` : 'a subcommand is needed', SPEC.commands['dead-letters'].help, 'dead-letters');
      const { config } = loadHubConfig(file);
      const { deadLettersCommand } = await import('./dead-letters-cli.ts');
      return deadLettersCommand(config, sub, arg, {
        ...(str('reason') ? { reason: str('reason') } : {}),
        ...(cli.values.json === true ? { json: true } : {}),
        ...(str('limit') ? { limit: Number(str('limit')) } : {}),
      }, runtime);
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`, HELP);
  }
}

/**
 * Runs the CLI. `runtime`: where the SQLite store's addon and checkpoint thread are, handed in by the
 * single executable's entry (installers/build/hub-entry.ts); from a checkout, nothing.
 */
export function runHubCli(argv: string[], runtime: StoreRuntime = {}): void {
  finish('plantbridge-hub', main(argv, runtime));
}

if (import.meta.main) runHubCli(process.argv.slice(2));
