#!/usr/bin/env node
import { isSea } from 'node:sea';
import { commandHelp, docsLine, finish, GLOBAL_OPTIONS, parseCli, UsageError, type CliSpec } from '../contracts/cli-kit.ts';
import { VERSION } from '../contracts/version.ts';
import { ENROLL_HELP } from './enrollment/enroll-help.ts';
import { OUTBOX_USAGE } from './outbox/outbox-usage.ts';

/**
 * plantbridge-agent — exit codes: 0 ok, 1 invalid config or usage, 2 runtime failure.
 * Heavy modules (drivers, the outbox) load only for the commands that need them, so --version,
 * --help and check-config answer at once.
 */

const OUTBOX_SUBCOMMANDS = ['stats', 'list', 'dead-letters', 'replay', 'discard', 'resend', 'ack-alarm'];

const CONFIG_OPTION = `  -c, --config FILE   agent.yaml (default: $PLANTBRIDGE_AGENT_CONFIG, else ./agent.yaml)`;


const HELP = `plantbridge-agent ${VERSION} — reads machines, keeps a durable outbox, forwards to the PlantBridge hub

Usage:
  plantbridge-agent run [--config FILE]              run the agent (Ctrl-C / SIGTERM stop it cleanly)
  plantbridge-agent enroll --token-stdin [--hub URL] [--config FILE]
                                                     exchange a one-time enrollment token for this agent's credential
  plantbridge-agent check-config [--config FILE] [--live]
                                                     validate the config offline; --live also connects to every
                                                     source and the hub and checks what the config relies on
  plantbridge-agent outbox stats|list|dead-letters|replay <id>|replay --all|discard <id>|resend --since <time>|ack-alarm <code>
                                                     the live outbox, safely beside a running agent
  plantbridge-agent opcua browse <endpoint> [--node ID] [--depth N] [--json] [--emit-config]
                     [--security-mode M --security-policy P]
                                                     the server's address space with data types and access levels
  plantbridge-agent pki trust <thumbprint> [--config FILE]
                                                     trust a refused OPC UA server certificate (from pki/rejected)
  plantbridge-agent rules report --since <time> [--compare <csv>] [--tolerance N] [--json] [--config FILE]
                                                     per order: what was (or in shadow mode would have been) posted,
                                                     compared with a CSV exported from the MES / ERP
  plantbridge-agent <command> --help                 that command's options
  plantbridge-agent --version | --help

Options:
${CONFIG_OPTION}

Exit codes: 0 ok, 1 invalid configuration or usage, 2 runtime failure (check-config --live: a live check failed).
${docsLine('agent', isSea())}`;

const command = (usage: string, text: string, options?: string, exit?: string) => commandHelp(CONFIG_OPTION, usage, text, options, exit);

const SPEC: CliSpec = {
  prog: 'plantbridge-agent',
  help: HELP,
  globals: GLOBAL_OPTIONS,
  commands: {
    run: {
      options: {},
      help: command(
        'plantbridge-agent run [--config FILE]',
        'Runs the agent: connects to every configured source, commits what they send to the outbox with the\n' +
          'transactions the rules derive, and forwards those to the hub. Ctrl-C or SIGTERM stops it cleanly (in-flight\n' +
          'work drains); a second signal exits at once. status.host:status.port serves /metrics and /healthz.',
        '',
        'Exit codes: 0 stopped cleanly, 1 invalid configuration, 2 runtime failure (the log line says which).',
      ),
    },
    'check-config': {
      options: { live: { type: 'boolean' } },
      help: command(
        'plantbridge-agent check-config [--config FILE] [--live]',
        'Validates agent.yaml offline and prints a summary: every problem is named with its path, and every secret\n' +
          'reference must resolve (${ENV_VAR} set, file: readable). With --live it also connects, read-only, to each\n' +
          'OPC UA server (nodes exist, with the expected types), each MQTT broker (topics reachable) and the hub\n' +
          '(reachable, certificate trusted, credential accepted).',
        '      --live          also check, over the network, what the config relies on',
        'Exit codes: 0 valid (and every live check passed), 1 invalid configuration or usage, 2 a live check failed.',
      ),
    },
    enroll: { options: { hub: { type: 'string' }, token: { type: 'string' }, 'token-stdin': { type: 'boolean' } }, help: ENROLL_HELP },
    outbox: {
      options: { limit: { type: 'string' }, status: { type: 'string' }, after: { type: 'string' }, since: { type: 'string' }, all: { type: 'boolean' } },
      help: command(
        'plantbridge-agent outbox <subcommand> [options] [--config FILE]',
        `${OUTBOX_USAGE}\n\nThe outbox is <agent.stateDir>/outbox.db; stats, list and dead-letters print JSON.`,
        '      --status S      list: only transactions in state S\n      --after SEQ     list: after this outbox sequence number\n      --limit N       list, dead-letters: at most N (default 50)\n      --all           replay: every open dead letter\n      --since TIME    resend: ISO 8601, or a look-back such as 90m, 6h, 2d',
        'Exit codes: 0 ok, 1 usage or not found, 2 runtime failure.',
      ),
    },
    opcua: {
      options: {
        node: { type: 'string' },
        depth: { type: 'string' },
        json: { type: 'boolean' },
        'emit-config': { type: 'boolean' },
        'security-mode': { type: 'string' },
        'security-policy': { type: 'string' },
        'state-dir': { type: 'string' },
      },
      help: command(
        'plantbridge-agent opcua browse <opc.tcp://host:port> [--node ID] [--depth N] [--json | --emit-config]\n                         [--security-mode M --security-policy P] [--state-dir DIR]',
        "Browses an OPC UA server's address space: each node with its node id, class, data type and access level.\n" +
          '--emit-config prints a driver section for agent.yaml instead, with a node entry per variable found.\n' +
          "The agent's certificate comes from <stateDir>/pki (agent.stateDir of --config, or --state-dir, else\n" +
          './data/agent): with security, trust it on the server, and the server\'s with "pki trust".',
        '      --node ID       where to start (default: the Objects folder)\n      --depth N       levels below it (default 3)\n      --json          the nodes as JSON\n      --emit-config   an agent.yaml driver section\n      --security-mode M --security-policy P\n                      e.g. SignAndEncrypt Basic256Sha256 (default None None)\n      --state-dir DIR the PKI folder\'s state directory',
      ),
    },
    pki: {
      options: {},
      help: command(
        'plantbridge-agent pki trust <thumbprint> [--config FILE]',
        'Moves an OPC UA server certificate that the agent refused (<stateDir>/pki/rejected/) to trusted/certs/.\n' +
          'The thumbprint is in the driver\'s log line; a unique prefix of at least 8 hex digits is enough.',
      ),
    },
    rules: {
      options: { since: { type: 'string' }, compare: { type: 'string' }, tolerance: { type: 'string' }, json: { type: 'boolean' } },
      help: command(
        'plantbridge-agent rules report --since <time> [--compare <csv>] [--tolerance N] [--json] [--config FILE]',
        'Per order and operation: the yield and scrap the rules derived since <time> (posted, or in shadow mode\n' +
          'what would have been), read from the live outbox. With --compare, matched against a CSV exported from\n' +
          'the MES or ERP (order, operation, yield, scrap), each row match / mismatch / missing.',
        '      --since TIME    ISO 8601, or a look-back such as 24h or 7d (needed)\n      --compare CSV   the export to compare with\n      --tolerance N   a difference of up to N counts as a match (default 0)\n      --json          the report as JSON',
        'Exit codes: 0 (differences are in the report, not the exit code), 1 usage or an unreadable CSV, 2 runtime failure.',
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

async function main(argv: string[]): Promise<number> {
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
  const flag = (k: string) => cli.values[k] === true;
  const [sub, arg] = positionals;
  // enroll parses its own options (checked above) and reads agent.yaml without the credential
  if (command === 'enroll') {
    const { enrollCommand } = await import('./enrollment/enroll.ts');
    return enrollCommand(str('config') ?? process.env.PLANTBRIDGE_AGENT_CONFIG ?? 'agent.yaml', cli.argv);
  }
  const configFile = str('config') ?? process.env.PLANTBRIDGE_AGENT_CONFIG ?? 'agent.yaml';
  const stop = command === 'run' ? stopSignal() : undefined;
  const { loadAgentConfig } = await import('./config/load.ts');

  switch (command) {
    case 'check-config': {
      const { config, version } = loadAgentConfig(configFile);
      process.stdout.write(
        `${configFile}: valid (config version ${version}; agent ${config.agent.id}, plant ${config.agent.plant}, ` +
          `${config.drivers.length} driver(s), ${config.rules.length} rule(s), mode ${config.agent.mode})\n`,
      );
      if (!flag('live')) return 0;
      // the live checks' answer is stdout: node-opcua's own messages go to stderr
      if (config.drivers.some((d) => d.type === 'opcua')) (await import('./drivers/opcua/library-log.ts')).routeNodeOpcuaLog();
      const { checkLiveAll } = await import('./check-live.ts');
      const live = await checkLiveAll(config);
      process.stdout.write(`${live.lines.join('\n')}\n${live.ok ? 'live checks passed' : 'live checks FAILED'}\n`);
      return live.ok ? 0 : 2;
    }
    case 'run': {
      const { config, version } = loadAgentConfig(configFile);
      const { runAgent } = await import('./main.ts');
      // in the single executable, better-sqlite3's addon is extracted to the state directory; where it
      // cannot load (glibc < 2.34: RHEL 8, Ubuntu 20.04) the outbox runs on Node's built-in node:sqlite
      const { chooseSqlite } = await import('../installers/build/sea-runtime.ts');
      const sqlite = config.outbox.driver === 'node:sqlite' ? undefined : chooseSqlite(config.agent.stateDir);
      if (sqlite?.engine === 'node:sqlite') {
        process.stderr.write(`plantbridge-agent: ${sqlite.reason}: the outbox uses node:sqlite\n`);
        config.outbox.driver = 'node:sqlite';
      }
      return runAgent(config, version, stop!, sqlite?.engine === 'better-sqlite3' ? sqlite.nativeBinding : undefined);
    }
    case 'outbox': {
      if (!sub || !OUTBOX_SUBCOMMANDS.includes(sub)) throw new UsageError(sub ? `unknown subcommand ${JSON.stringify(sub)}` : 'a subcommand is needed', SPEC.commands.outbox.help, 'outbox');
      const { config } = loadAgentConfig(configFile);
      const { outboxCommand } = await import('./outbox/outbox-cli.ts');
      const { nativeBindingPath } = await import('../installers/build/sea-runtime.ts');
      const nativeBinding = nativeBindingPath(config.agent.stateDir);
      return outboxCommand(config, sub, arg, {
        limit: str('limit') ? Number(str('limit')) : 50,
        ...(str('status') ? { status: str('status') } : {}),
        ...(str('since') ? { since: str('since') } : {}),
        ...(str('after') ? { after: Number(str('after')) } : {}),
        all: flag('all'),
        ...(nativeBinding ? { nativeBinding } : {}),
      });
    }
    case 'opcua': {
      if (sub !== 'browse' || !arg) throw new UsageError('expected browse <opc.tcp://host:port>', SPEC.commands.opcua.help, 'opcua');
      const mode = str('security-mode');
      const policy = str('security-policy');
      if ((mode === undefined) !== (policy === undefined)) throw new UsageError('give --security-mode and --security-policy together (None/None, or e.g. SignAndEncrypt/Basic256Sha256)', SPEC.commands.opcua.help, 'opcua');
      // the PKI folder: the configured agent's, else a local one (browsing before any config exists)
      let stateDir = str('state-dir');
      if (!stateDir) {
        try {
          stateDir = loadAgentConfig(configFile).config.agent.stateDir;
        } catch {
          stateDir = './data/agent';
        }
      }
      const { browse, formatBrowse, emitConfig } = await import('./drivers/opcua/index.ts');
      (await import('./drivers/opcua/library-log.ts')).routeNodeOpcuaLog();
      const nodes = await browse(arg, {
        stateDir,
        ...(str('node') ? { node: str('node') } : {}),
        ...(str('depth') ? { depth: Number(str('depth')) } : {}),
        ...(mode ? { securityMode: mode as never, securityPolicy: policy as never } : {}),
      });
      process.stdout.write(`${flag('emit-config') ? emitConfig(nodes, { endpoint: arg }) : formatBrowse(nodes, flag('json'))}\n`);
      return 0;
    }
    case 'pki': {
      if (sub !== 'trust' || !arg) throw new UsageError('expected trust <thumbprint>', SPEC.commands.pki.help, 'pki');
      const { config } = loadAgentConfig(configFile);
      const { pkiTrust } = await import('./drivers/opcua/pki.ts');
      process.stdout.write(`${await pkiTrust(config.agent.stateDir, arg)}\n`);
      return 0;
    }
    case 'rules': {
      if (sub !== 'report') throw new UsageError('expected report --since <time>', SPEC.commands.rules.help, 'rules');
      const { config } = loadAgentConfig(configFile);
      const { rulesReportCommand } = await import('./rules/report.ts');
      return rulesReportCommand(config, {
        since: str('since'),
        compare: str('compare'),
        tolerance: str('tolerance') ? Number(str('tolerance')) : undefined,
        json: flag('json'),
      });
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`, HELP);
  }
}

finish('plantbridge-agent', main(process.argv.slice(2)));
