import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import got from 'got';
import { PlantBridgeError, enrollResponseSchema, parseConfig, parseYaml, resolveSecrets, schemaId, validate, issuesToText, type EnrollResponse } from '../../contracts/index.ts';
import { agentConfigSchema } from '../config/schema.ts';
import { explainTlsError, hubAgents, type HubTrust } from '../forwarder/hub-tls.ts';
import { ENROLL_HELP } from './enroll-help.ts';

/**
 * `plantbridge-agent enroll --hub URL --token T`: exchanges a one-time enrollment token for the agent's
 * long-lived credential and stores it in the state directory (`hub-credential`). On POSIX the file is
 * created with mode 0600; on Windows the state directory's ACLs (set by the installer) protect it.
 */

export const CREDENTIAL_FILE = 'hub-credential';

export function credentialPath(stateDir: string): string {
  return join(stateDir, CREDENTIAL_FILE);
}

/** Writes the credential atomically (temp file + fsync + rename), readable by the service account only. */
export function writeCredential(path: string, credential: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  rmSync(tmp, { force: true });
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, `${credential}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  // the umask may have narrowed the mode further, never widened it; chmod is a no-op on Windows
  if (process.platform !== 'win32') chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

export interface EnrollOptions {
  hubUrl: string;
  token: string;
  stateDir: string;
  /** the agent.id from agent.yaml; the hub checks it against the token's */
  agentId?: string;
  trust?: HubTrust;
  allowPlainHttp?: boolean;
  timeoutMs?: number;
}

export async function enroll(opts: EnrollOptions): Promise<EnrollResponse & { credentialFile: string }> {
  const url = new URL(opts.hubUrl);
  const loopback = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(url.hostname);
  if (url.protocol === 'http:' && !loopback && !opts.allowPlainHttp) {
    throw new PlantBridgeError('CONFIG_INVALID', `refusing to enroll over plain http to ${url.host}: the credential would travel unencrypted; use https://`);
  }
  const agents = hubAgents(opts.trust ?? {}, { maxSockets: 1 });
  let res;
  try {
    res = await got.post(new URL('v1/enroll', url.href.endsWith('/') ? url.href : `${url.href}/`), {
      json: { schema: schemaId('enroll-request', 1, 0), token: opts.token, ...(opts.agentId ? { agentId: opts.agentId } : {}) },
      responseType: 'text',
      throwHttpErrors: false,
      retry: { limit: 1 },
      timeout: { request: opts.timeoutMs ?? 30_000 },
      agent: agents,
      https: {
        rejectUnauthorized: true,
        ...(opts.trust?.ca ? { certificateAuthority: opts.trust.ca } : {}),
        ...(opts.trust?.clientCert && opts.trust.clientKey ? { certificate: opts.trust.clientCert, key: opts.trust.clientKey } : {}),
      },
    });
  } catch (err) {
    const why = explainTlsError(err, opts.trust ?? {});
    throw new PlantBridgeError('UPSTREAM_UNAVAILABLE', why ?? `cannot reach the hub at ${url.origin}: ${(err as Error).message}`, { cause: err, retriable: !why });
  } finally {
    agents.http.destroy();
    agents.https.destroy();
  }
  let body: any;
  try {
    body = JSON.parse(res.body);
  } catch {
    body = undefined;
  }
  if (res.statusCode !== 200) {
    const code = body?.error?.code === 'UNAUTHENTICATED' ? 'UNAUTHENTICATED' : res.statusCode === 429 ? 'RATE_LIMITED' : 'UPSTREAM_UNAVAILABLE';
    throw new PlantBridgeError(code, `the hub refused the enrollment (${res.statusCode}): ${body?.error?.message ?? res.body.slice(0, 200)}`);
  }
  const v = validate(enrollResponseSchema, body);
  if (!v.ok) throw new PlantBridgeError('SCHEMA_INVALID', `unexpected answer from the hub: ${issuesToText(v.issues)}`);
  const file = credentialPath(opts.stateDir);
  writeCredential(file, v.value.credential);
  return { ...v.value, credentialFile: file };
}

/**
 * The CLI command. `argv` is what follows "enroll". Reads agent.yaml without needing the credential
 * (it does not exist yet). Exit codes: 0 enrolled, 1 usage / config / refused, 2 hub unreachable.
 */
export async function enrollCommand(
  configFile: string,
  argv: string[],
  io: { out: (s: string) => void; err: (s: string) => void; stdin?: () => Promise<string> } = { out: (s) => void process.stdout.write(s), err: (s) => void process.stderr.write(s) },
): Promise<number> {
  let values;
  try {
    values = parseArgs({ args: argv, options: { hub: { type: 'string' }, token: { type: 'string' }, 'token-stdin': { type: 'boolean' }, config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } } }).values;
  } catch (err) {
    io.err(`plantbridge-agent enroll: ${(err as Error).message}\n\n${ENROLL_HELP}\n`);
    return 1;
  }
  if (values.help) {
    io.out(`${ENROLL_HELP}\n`);
    return 0;
  }
  if (values.token !== undefined && values['token-stdin']) {
    io.err(`plantbridge-agent enroll: give the token once: --token or --token-stdin\n\n${ENROLL_HELP}\n`);
    return 1;
  }
  // the token's ways in, most private first: standard input and the environment keep it out of argv (ps, shell history)
  const token = values['token-stdin'] ? (await (io.stdin ?? readStdin)()).trim() : (values.token ?? process.env.PLANTBRIDGE_ENROLL_TOKEN);
  if (!token) {
    io.err(`plantbridge-agent enroll: the one-time token is needed: --token-stdin (then paste or pipe it), PLANTBRIDGE_ENROLL_TOKEN, or --token\n\n${ENROLL_HELP}\n`);
    return 1;
  }
  const file = values.config ?? configFile;
  let cfg;
  try {
    const text = readFileSync(file, 'utf8');
    const baseDir = dirname(resolve(file));
    const parsed = parseConfig(agentConfigSchema, parseYaml(text, file) ?? {}, file);
    // the credential does not exist yet: unresolvable secrets are placeholders here, nothing is sent with them
    cfg = resolveSecrets(parsed, {
      env: new Proxy({} as Record<string, string>, { get: (_t, k: string) => process.env[k] || 'unresolved' }),
      readFile: (p) => {
        try {
          return readFileSync(isAbsolute(p) ? p : resolve(baseDir, p), 'utf8');
        } catch {
          return 'unresolved';
        }
      },
    });
    cfg.agent.stateDir = isAbsolute(cfg.agent.stateDir) ? cfg.agent.stateDir : resolve(baseDir, cfg.agent.stateDir);
    const abs = (p: string | undefined) => (p === undefined ? undefined : isAbsolute(p) ? p : resolve(baseDir, p));
    const caFile = abs(cfg.hub.ca);
    const [certFile, keyFile] = [abs(cfg.hub.clientCert), abs(cfg.hub.clientKey)];
    const hubUrl = values.hub ?? cfg.hub.url;
    const r = await enroll({
      hubUrl,
      token,
      stateDir: cfg.agent.stateDir,
      agentId: cfg.agent.id,
      allowPlainHttp: cfg.hub.allowPlainHttp,
      trust: {
        ...(caFile ? { ca: readFileSync(caFile, 'utf8') } : {}),
        ...(cfg.hub.fingerprint ? { fingerprint: cfg.hub.fingerprint } : {}),
        ...(certFile && keyFile ? { clientCert: readFileSync(certFile, 'utf8'), clientKey: readFileSync(keyFile, 'utf8') } : {}),
      },
    });
    io.out(`Enrolled as agent ${r.agentId} for plant(s) ${r.plants.join(', ')}. Credential stored in ${r.credentialFile} (readable by this account only).\n`);
    const ref = cfg.hub.token.ref;
    const wanted = `file:${r.credentialFile}`;
    const refPath = ref.startsWith('file:') ? resolve(baseDir, ref.slice(5)) : undefined;
    if (refPath !== r.credentialFile) io.out(`Set this in ${file} so the agent uses it:\n  hub:\n    token: ${wanted}\n`);
    if (values.hub && values.hub.replace(/\/+$/, '') !== cfg.hub.url.replace(/\/+$/, '')) io.out(`Note: hub.url in ${file} is ${cfg.hub.url}, not ${values.hub}.\n`);
    io.out('Restart the agent to use the new credential.\n');
    return 0;
  } catch (err) {
    const e = err instanceof PlantBridgeError ? err : undefined;
    io.err(`plantbridge-agent enroll: ${e ? `${e.code}: ` : ''}${(err as Error).message}\n`);
    return e?.code === 'UPSTREAM_UNAVAILABLE' && e.retriable ? 2 : 1;
  }
}

/** All of standard input (a token is one short line; a terminal ends it with Ctrl-D, or Ctrl-Z Enter on Windows). */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) {
    chunks.push(c as Buffer);
    if (chunks.reduce((n, b) => n + b.length, 0) > 4096) break;
    if (String(c).includes('\n')) break;
  }
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
}

export { ENROLL_HELP };
