import { execFileSync } from 'node:child_process';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildHub, type Hub } from '../build-hub.ts';
import { parseHubConfig } from '../config/load.ts';
import type { ErpAdapter } from '../erp/erp-adapter.ts';
import type { HubStore } from '../store/hub-store.ts';
import { schemaId, ulid } from '../../contracts/index.ts';
import { testLogger } from '../../test/helpers/log.ts';

/**
 * Test harness: a real hub with an instant ERP, its SQLite file in a temp dir (or a given store).
 * openTestHub: opened for `inject()`, no port (and no posting unless asked); startTestHub: listening on
 * port 0 with posting, for what needs a socket (TLS, the agent's forwarder and enrollment, child processes).
 * `t.fetch(path, init)` talks to either the same way.
 */

export function instantErp(latencyMs = 0): ErpAdapter & { posted: string[] } {
  const posted: string[] = [];
  return {
    name: 'test',
    posted,
    post: async (tx) => {
      if (latencyMs > 0) await new Promise((r) => setTimeout(r, latencyMs));
      posted.push(tx.idempotencyKey);
      return { status: 'posted', erpRef: `DOC-${posted.length}` };
    },
    lookup: async () => ({ found: false }),
    healthcheck: async () => ({ ok: true }),
  };
}

export interface TestHubOptions {
  dir?: string;
  port?: number;
  store?: HubStore;
  rateLimitPerAgent?: number;
  bodyLimit?: string;
  tls?: { cert: string; key: string; clientCa?: string };
  /** an operator of the admin API with this bearer token (name "test-operator") */
  operatorToken?: string;
  adapter?: ErpAdapter;
  /** openTestHub only: run the posting service (without listening) */
  posting?: boolean;
}

export interface TestHub {
  hub: Hub;
  url: string;
  dir: string;
  adapter: ErpAdapter;
  /** registers an agent with a static credential and returns the credential */
  addAgent(id: string, plants: string[]): Promise<string>;
  /** a request to the hub: over the socket when it listens, else through `app.inject()` */
  fetch(path: string, init?: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array }): Promise<Response>;
  stop(): Promise<void>;
}

export const hashOf = (s: string) => createHash('sha256').update(s).digest('hex');

export async function startTestHub(opts: TestHubOptions = {}): Promise<TestHub> {
  return testHub(opts, true);
}

export async function openTestHub(opts: TestHubOptions = {}): Promise<TestHub> {
  return testHub(opts, false);
}

async function testHub(opts: TestHubOptions, listen: boolean): Promise<TestHub> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'pb-hub-'));
  const yaml = `
hub:
  host: 127.0.0.1
  port: ${opts.port ?? 0}
  dataDir: ${dir}
  bodyLimit: ${opts.bodyLimit ?? '8MiB'}
  rateLimitPerAgent: ${opts.rateLimitPerAgent ?? 1000}
${opts.tls ? `  tls:\n    cert: ${opts.tls.cert}\n    key: ${opts.tls.key}\n${opts.tls.clientCa ? `    clientCa: ${opts.tls.clientCa}\n` : ''}` : ''}
${opts.operatorToken ? `admin:\n  operators:\n    - name: test-operator\n      token: \${OPERATOR_TOKEN}\n` : ''}
log:
  level: warn
store:
  type: sqlite
erp:
  type: sap-odata
  url: http://127.0.0.1:9
  auth:
    type: basic
    username: u
    password: \${SAP_PASSWORD}
posting:
  concurrency: 4
`;
  const { config } = parseHubConfig(yaml, join(dir, 'hub.yaml'), { env: { SAP_PASSWORD: 'x', ...(opts.operatorToken ? { OPERATOR_TOKEN: opts.operatorToken } : {}) }, readFile: (p) => readFileSync(p, 'utf8') });
  const adapter = opts.adapter ?? instantErp();
  const hub = buildHub({ config, log: testLogger(), adapter, ...(opts.store ? { store: opts.store } : {}) });
  if (listen) await hub.start();
  else {
    await hub.open();
    if (opts.posting) hub.posting.start();
  }
  return {
    hub,
    url: hub.url,
    dir,
    adapter,
    fetch: (path, init = {}) => (listen ? fetch(`${hub.url}${path}`, init) : injected(hub, path, init)),
    addAgent: async (id, plants) => {
      const token = `pbc_${randomBytes(24).toString('base64url')}`;
      await hub.store.upsertAgent({ id, plants, tokenHash: hashOf(token) });
      return token;
    },
    stop: () => hub.stop(),
  };
}

/** `app.inject()` with fetch's shape, so a test reads the same whether the hub listens or not. */
export async function injected(hub: Hub, path: string, init: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array } = {}): Promise<Response> {
  const res = await hub.app.inject({
    method: (init.method ?? 'GET') as 'GET',
    url: path,
    headers: init.headers ?? {},
    ...(init.body !== undefined ? { payload: typeof init.body === 'string' ? init.body : Buffer.from(init.body) } : {}),
  });
  const headers = new Headers();
  for (const [k, v] of Object.entries(res.headers)) for (const x of Array.isArray(v) ? v : [v]) if (x !== undefined) headers.append(k, String(x));
  return new Response(res.statusCode === 204 ? null : res.rawPayload, { status: res.statusCode, headers });
}

/** a valid heartbeat of an agent (tests edit what they are about) */
export function heartbeatOf(agentId: string, plant: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const now = new Date().toISOString();
  return {
    schema: schemaId('agent-heartbeat', 1, 0),
    id: ulid(),
    agentId,
    plant,
    sentAt: now,
    version: '0.1.0',
    uptimeS: 1,
    configVersion: 'cfg-1',
    mode: 'live',
    drivers: [{ name: 'plc', type: 'opcua', state: 'up', since: now }],
    outbox: { pending: 0, oldestPendingAgeS: 0, deadLetters: 0, bytes: 0, diskFreeBytes: 1, full: false },
    rates: { signalsPerS: 0, forwardedPerS: 0 },
    alarms: [],
    ...extra,
  };
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface TestPki {
  dir: string;
  caCert: string;
  otherCaCert: string;
  serverCert: string;
  serverKey: string;
  selfSignedCert: string;
  selfSignedKey: string;
  /** SHA-256 fingerprint (AA:BB:...) of serverCert / selfSignedCert */
  serverFingerprint: string;
  selfSignedFingerprint: string;
}

/** A CA, a second unrelated CA, a server certificate for 127.0.0.1/localhost signed by the first, and a self-signed one (openssl CLI). */
export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'pb-pki-'));
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const san = 'subjectAltName=IP:127.0.0.1,DNS:localhost';
  run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=PlantBridge Test CA');
  run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'other.key', '-out', 'other.crt', '-days', '2', '-subj', '/CN=Other CA');
  run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1', '-addext', san);
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-copy_extensions', 'copy');
  run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'self.key', '-out', 'self.crt', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', san);
  const fp = (f: string) => new X509Certificate(readFileSync(join(dir, f))).fingerprint256;
  return {
    dir,
    caCert: join(dir, 'ca.crt'),
    otherCaCert: join(dir, 'other.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    selfSignedCert: join(dir, 'self.crt'),
    selfSignedKey: join(dir, 'self.key'),
    serverFingerprint: fp('server.crt'),
    selfSignedFingerprint: fp('self.crt'),
  };
}
