#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { isPlantBridgeError } from '../contracts/errors.ts';
import { VERSION } from '../contracts/version.ts';

/**
 * plantbridge-agent — exit codes: 0 ok, 1 invalid config or usage, 2 runtime failure.
 * Heavy modules (drivers, the outbox) load only for the commands that need them, so --version,
 * --help and check-config answer at once.
 */

const HELP = `plantbridge-agent ${VERSION} — reads machines, keeps a durable outbox, forwards to the PlantBridge hub

Usage:
  plantbridge-agent run [--config FILE]              run the agent (Ctrl-C / SIGTERM stop it cleanly)
  plantbridge-agent enroll --hub URL --token T [--config FILE]
                                                     exchange a one-time enrollment token for this agent's credential
  plantbridge-agent check-config [--config FILE] [--live]
                                                     validate the config offline; --live also connects to every
                                                     source and the hub and checks what the config relies on
  plantbridge-agent outbox stats|list|dead-letters|replay <id>|replay --all|discard <id>|resend --since <time>|ack-alarm <code>
                                                     the live outbox, safely beside a running agent (outbox --help)
  plantbridge-agent opcua browse <endpoint> [--node ID] [--depth N] [--json] [--emit-config]
                     [--security-mode M --security-policy P]
                                                     the server's address space with data types and access levels
  plantbridge-agent pki trust <thumbprint> [--config FILE]
                                                     trust a refused OPC UA server certificate (from pki/rejected)
  plantbridge-agent rules report --since <time> [--compare <csv>] [--tolerance N] [--json] [--config FILE]
                                                     per order: what was (or in shadow mode would have been) posted,
                                                     compared with a CSV exported from the MES / ERP
  plantbridge-agent --version | --help

Options:
  -c, --config FILE   agent.yaml (default: $PLANTBRIDGE_AGENT_CONFIG, else ./agent.yaml)

Exit codes: 0 ok, 1 invalid configuration or usage, 2 runtime failure (check-config --live: a live check failed).
Docs: README.md, docs/ARCHITECTURE.md, config/agent.example.yaml`;

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

async function main(argv: string[]): Promise<number> {
  // enroll has its own options (--hub, --token)
  if (argv[0] === 'enroll') return (await import('./enrollment/enroll.ts')).enrollMain(argv.slice(1));
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        version: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
        live: { type: 'boolean' },
        limit: { type: 'string' },
        since: { type: 'string' },
        all: { type: 'boolean' },
        status: { type: 'string' },
        after: { type: 'string' },
        node: { type: 'string' },
        depth: { type: 'string' },
        'emit-config': { type: 'boolean' },
        'security-mode': { type: 'string' },
        'security-policy': { type: 'string' },
        'state-dir': { type: 'string' },
        compare: { type: 'string' },
        tolerance: { type: 'string' },
        json: { type: 'boolean' },
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
  const configFile = values.config ?? process.env.PLANTBRIDGE_AGENT_CONFIG ?? 'agent.yaml';
  const stop = command === 'run' ? stopSignal() : undefined;
  const { loadAgentConfig } = await import('./config/load.ts');

  switch (command) {
    case 'check-config': {
      const { config, version } = loadAgentConfig(configFile);
      process.stdout.write(
        `${configFile}: valid (config version ${version}; agent ${config.agent.id}, plant ${config.agent.plant}, ` +
          `${config.drivers.length} driver(s), ${config.rules.length} rule(s), mode ${config.agent.mode})\n`,
      );
      if (!values.live) return 0;
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
      const { config } = loadAgentConfig(configFile);
      const { outboxCommand } = await import('./outbox/outbox-cli.ts');
      const { nativeBindingPath } = await import('../installers/build/sea-runtime.ts');
      const nativeBinding = nativeBindingPath(config.agent.stateDir);
      return outboxCommand(config, sub, arg, {
        limit: values.limit ? Number(values.limit) : 50,
        ...(values.status ? { status: values.status } : {}),
        ...(values.since ? { since: values.since } : {}),
        ...(values.after ? { after: Number(values.after) } : {}),
        all: values.all === true,
        ...(nativeBinding ? { nativeBinding } : {}),
      });
    }
    case 'opcua': {
      if (sub !== 'browse' || !arg) throw new UsageError('opcua: expected browse <opc.tcp://host:port> [--node ID] [--depth N] [--json] [--emit-config]');
      const mode = values['security-mode'];
      const policy = values['security-policy'];
      if ((mode === undefined) !== (policy === undefined)) throw new UsageError('opcua browse: give --security-mode and --security-policy together (None/None, or e.g. SignAndEncrypt/Basic256Sha256)');
      // the PKI folder: the configured agent's, else a local one (browsing before any config exists)
      let stateDir = values['state-dir'];
      if (!stateDir) {
        try {
          stateDir = loadAgentConfig(configFile).config.agent.stateDir;
        } catch {
          stateDir = './data/agent';
        }
      }
      const { browse, formatBrowse, emitConfig } = await import('./drivers/opcua/index.ts');
      const nodes = await browse(arg, {
        stateDir,
        ...(values.node ? { node: values.node } : {}),
        ...(values.depth ? { depth: Number(values.depth) } : {}),
        ...(mode ? { securityMode: mode as never, securityPolicy: policy as never } : {}),
      });
      process.stdout.write(`${values['emit-config'] ? emitConfig(nodes, { endpoint: arg }) : formatBrowse(nodes, values.json === true)}\n`);
      return 0;
    }
    case 'pki': {
      if (sub !== 'trust' || !arg) throw new UsageError('pki: expected trust <thumbprint>');
      const { config } = loadAgentConfig(configFile);
      const { pkiTrust } = await import('./drivers/opcua/pki.ts');
      process.stdout.write(`${await pkiTrust(config.agent.stateDir, arg)}\n`);
      return 0;
    }
    case 'rules': {
      if (sub !== 'report') throw new UsageError('rules: expected report --since <time> [--compare <csv>]');
      const { config } = loadAgentConfig(configFile);
      const { rulesReportCommand } = await import('./rules/report.ts');
      return rulesReportCommand(config, {
        since: values.since,
        compare: values.compare,
        tolerance: values.tolerance ? Number(values.tolerance) : undefined,
        json: values.json,
      });
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    if (err instanceof UsageError) {
      process.stderr.write(`plantbridge-agent: ${err.message}\n\n${HELP}\n`);
      process.exitCode = 1;
    } else if (isPlantBridgeError(err, 'CONFIG_INVALID')) {
      process.stderr.write(`plantbridge-agent: ${err.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`plantbridge-agent: ${isPlantBridgeError(err) ? `${err.code}: ` : ''}${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 2;
    }
  },
);
