import { parseArgs } from 'node:util';
import { duration, isWireText, printable } from '../../contracts/index.ts';
import type { HubConfig } from '../config/schema.ts';
import type { HubStore } from '../store/hub-store.ts';
import { openHubStore, type StoreRuntime } from '../store/open-store.ts';
import { AGENT_ID, ENROLLMENT_TTL_MS, issueEnrollmentToken } from './enrollment.ts';
import { AGENTS_HELP } from './agents-help.ts';

export interface AgentsIo {
  out: (s: string) => void;
  err: (s: string) => void;
  /** opened from config when not given (tests inject one) */
  store?: HubStore;
  now?: Date;
}

const stdio: AgentsIo = { out: (s) => void process.stdout.write(s), err: (s) => void process.stderr.write(s) };

/**
 * `plantbridge-hub agents <add|list|revoke|rotate>`; `argv` is what follows "agents" (with --config
 * removed or not: it is ignored here). Exit codes: 0 ok, 1 usage or refused, 2 runtime failure.
 */
export async function agentsCommand(config: HubConfig, argv: string[], io: AgentsIo = stdio, runtime: StoreRuntime = {}): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        plant: { type: 'string', multiple: true },
        name: { type: 'string' },
        ttl: { type: 'string' },
        json: { type: 'boolean' },
        config: { type: 'string', short: 'c' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    io.err(`plantbridge-hub agents: ${(err as Error).message}\n\n${AGENTS_HELP}\n`);
    return 1;
  }
  const { values, positionals } = parsed;
  const [sub] = positionals;
  if (values.help || !sub) {
    io.out(`${AGENTS_HELP}\n`);
    return sub || values.help ? 0 : 1;
  }
  const usage = (msg: string) => {
    io.err(`plantbridge-hub agents ${sub}: ${msg}\n`);
    return 1;
  };
  let ttlMs = ENROLLMENT_TTL_MS;
  if (values.ttl !== undefined) {
    const d = duration.safeParse(values.ttl);
    if (!d.success || (d.data as number) <= 0) return usage(`--ttl "${values.ttl}": expected a duration such as 24h or 30m`);
    ttlMs = d.data as number;
  }
  if (!['add', 'list', 'revoke', 'rotate'].includes(sub)) return usage('expected add, list, revoke or rotate');
  if (sub !== 'list') {
    if (!values.name) return usage('--name is needed (the agent.id in the agent\'s agent.yaml)');
    if (!AGENT_ID.test(values.name)) return usage(`--name "${values.name}": expected letters, digits, dot, dash or underscore`);
  }
  const store = io.store ?? (await openHubStore(config, runtime));
  const actor = `admin:${process.env.SUDO_USER ?? process.env.USER ?? process.env.USERNAME ?? 'cli'}`;
  try {
    await store.migrate();
    const name = values.name!;
    switch (sub) {
      case 'list': {
        const agents = await store.listAgentInfo();
        if (values.json) {
          io.out(`${JSON.stringify(agents, null, 2)}\n`);
          return 0;
        }
        if (agents.length === 0) {
          io.out('No agents yet. Add one: plantbridge-hub agents add --plant P --name N\n');
          return 0;
        }
        // values from the database are escaped: a plant name must not be able to drive the terminal
        const rows = agents.map((a) => [printable(a.id), printable(a.plants.join(',')), a.revokedAt ? 'revoked' : a.enrolled ? 'enrolled' : 'awaiting enrollment', a.pendingEnrollments ? String(a.pendingEnrollments) : '-', printable(a.lastHeartbeatAt ?? 'never')]);
        const head = ['AGENT', 'PLANTS', 'STATE', 'OPEN TOKENS', 'LAST HEARTBEAT'];
        const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
        for (const r of [head, ...rows]) io.out(`${r.map((c, i) => c.padEnd(w[i])).join('  ').trimEnd()}\n`);
        return 0;
      }
      case 'add':
      case 'rotate': {
        // hub.yaml's static token is what such an agent uses: at the next start it would replace an
        // enrolled credential again (and a token issued here would only let someone else take it over)
        if (config?.agents?.some((a) => a.id === name)) {
          return usage(`agent ${name} is listed in hub.yaml with a static token: give it a new token there (and on the agent), or remove the entry to enroll it instead`);
        }
        const existing = await store.getAgent(name);
        if (sub === 'add' && existing?.enrolled && !existing.revokedAt) return usage(`agent ${name} exists and is enrolled; use "agents rotate --name ${name}" for a new credential`);
        if (sub === 'rotate' && !existing) return usage(`no agent ${name}; use "agents add --plant P --name ${name}"`);
        const plants = values.plant?.length ? values.plant : (existing?.plants ?? []);
        if (plants.length === 0) return usage('--plant is needed (repeat it for an agent serving several plants)');
        const badPlant = plants.find((p) => p.length === 0 || p.length > 64 || !isWireText(p) || p.includes(':'));
        // a plant is the first part of every idempotency key (`1010:WC-01:…`): no colon, no control characters
        if (badPlant !== undefined) return usage(`--plant ${JSON.stringify(printable(badPlant))}: expected 1 to 64 characters without ":" or control characters`);
        const { token, expiresAt } = await issueEnrollmentToken(store, { agentId: name, plants, ttlMs, actor, ...(io.now ? { now: io.now } : {}) });
        io.out(
          `${sub === 'add' ? 'Agent' : 'New enrollment for agent'} ${name} (plants ${plants.join(', ')}): one-time enrollment token, valid until ${expiresAt.toISOString()}:\n\n  ${token}\n\n` +
            `On the agent's server run, and paste the token when it waits (it stays out of the shell history):\n  plantbridge-agent enroll --hub https://<this hub> --token-stdin\n` +
            'or pass it in the environment variable PLANTBRIDGE_ENROLL_TOKEN (--token TOKEN works too, but lands in the shell history).\n' +
            `${sub === 'rotate' ? 'The current credential keeps working until the agent enrolls with this token.\n' : ''}` +
            'The token works once; the hub keeps only its hash. It is not shown again.\n',
        );
        return 0;
      }
      case 'revoke': {
        const ok = await store.revokeAgent(name, actor);
        if (!ok) return usage(`no active agent or open token named ${name}`);
        io.out(`Agent ${name} revoked: its credential and open enrollment tokens stop working now.\n`);
        return 0;
      }
    }
    return 1;
  } finally {
    if (!io.store) await store.close();
  }
}

/**
 * Entry point for central-hub/cli.ts: `plantbridge-hub agents ...` with its own `--config` handling.
 * Secrets the admin commands do not need (ERP passwords) may be unset here; the store's are used.
 */
export async function agentsMain(argv: string[], io: AgentsIo = stdio, runtime: StoreRuntime = {}): Promise<number> {
  const i = argv.findIndex((a) => a === '--config' || a === '-c');
  const file = (i >= 0 ? argv[i + 1] : undefined) ?? process.env.PLANTBRIDGE_HUB_CONFIG ?? 'hub.yaml';
  if (argv.includes('--help') || argv.includes('-h') || argv.length === 0) return agentsCommand(undefined as never, argv, io);
  const { loadHubConfig } = await import('../config/load.ts');
  const { readFileSync } = await import('node:fs');
  const { dirname, isAbsolute, resolve } = await import('node:path');
  const baseDir = dirname(resolve(file));
  const { config } = loadHubConfig(file, {
    env: new Proxy({} as Record<string, string>, { get: (_t, k: string) => process.env[k] || 'unset-for-admin-cli' }),
    readFile: (p) => {
      try {
        return readFileSync(isAbsolute(p) ? p : resolve(baseDir, p), 'utf8');
      } catch {
        return 'unset-for-admin-cli';
      }
    },
  });
  return agentsCommand(config, argv, io, runtime);
}

export { AGENTS_HELP };
