import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import {
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
  UserTokenType,
  type UserIdentityInfo,
} from 'node-opcua';
import { PlantBridgeError, Secret } from '../../../contracts/index.ts';
import type { OpcuaConfig } from './config.ts';
import { listRejected, pkiDir, setTofuPin, thumbprintOf, tofuPin, trustCertificate, isTrusted } from './pki.ts';

/**
 * Building node-opcua clients the PlantBridge way: our PKI folder, no automatic reconnection (the
 * driver owns its reconnect state machine), single-attempt connects, and trust decisions that the
 * operator can see and act on. Shared by the driver, `opcua browse` and `check-config --live`.
 */

export type SecurityModeName = OpcuaConfig['securityMode'];
export type SecurityPolicyName = OpcuaConfig['securityPolicy'];

export interface ClientOptions {
  endpoint: string;
  securityMode: SecurityModeName;
  securityPolicy: SecurityPolicyName;
  stateDir: string;
  trustOnFirstUse?: boolean;
  log: Logger;
  /** per-request timeout (ms) */
  requestTimeoutMs?: number;
  /** session timeout requested from the server (ms) */
  sessionTimeoutMs?: number;
  /** aborts a connect in progress (the driver's stop()): a server that does not answer would hold it for the transport timeout */
  signal?: AbortSignal;
}

export const APPLICATION_NAME = 'PlantBridge Agent';

const modes: Record<SecurityModeName, MessageSecurityMode> = {
  None: MessageSecurityMode.None,
  Sign: MessageSecurityMode.Sign,
  SignAndEncrypt: MessageSecurityMode.SignAndEncrypt,
};

const policies: Record<SecurityPolicyName, SecurityPolicy> = {
  None: SecurityPolicy.None,
  Basic256Sha256: SecurityPolicy.Basic256Sha256,
  Aes128_Sha256_RsaOaep: SecurityPolicy.Aes128_Sha256_RsaOaep,
  Aes256_Sha256_RsaPss: SecurityPolicy.Aes256_Sha256_RsaPss,
  Basic128Rsa15: SecurityPolicy.Basic128Rsa15,
  Basic256: SecurityPolicy.Basic256,
};

export interface OpenClient {
  client: OPCUAClient;
  certificateManager: OPCUACertificateManager;
  /** disconnects without closing sessions on the server (they may be reactivated on the next channel) */
  dispose(): Promise<void>;
}

/**
 * A connected client (secure channel open, no session yet). One attempt: a failure throws, and the
 * caller decides when to try again. A new certificate manager per attempt means a certificate the
 * operator trusted in the meantime (`pki trust`) counts on the very next attempt.
 */
export async function connectClient(o: ClientOptions): Promise<OpenClient> {
  // before the certificate manager reads trusted/
  if (o.trustOnFirstUse && o.securityMode !== 'None') await trustOnFirstUse(o);
  const certificateManager = new OPCUACertificateManager({
    rootFolder: pkiDir(o.stateDir),
    automaticallyAcceptUnknownCertificate: false,
    disableFileWatchers: true,
    name: 'plantbridge-agent',
  });
  await certificateManager.initialize();
  const timeout = o.requestTimeoutMs ?? 10_000;
  const client = OPCUAClient.create({
    applicationName: APPLICATION_NAME,
    clientName: 'plantbridge',
    endpointMustExist: false,
    securityMode: modes[o.securityMode],
    securityPolicy: policies[o.securityPolicy],
    clientCertificateManager: certificateManager,
    // our state machine reconnects; node-opcua's own repair would fight it (and flood sessions)
    connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
    keepSessionAlive: false,
    keepPendingSessionsOnDisconnect: true,
    requestedSessionTimeout: o.sessionTimeoutMs ?? 60_000,
    defaultTransactionTimeout: timeout,
    transportTimeout: timeout,
  } as any);
  const abort = () => void client.disconnect().catch(() => {});
  o.signal?.addEventListener('abort', abort, { once: true });
  try {
    if (o.signal?.aborted) throw new Error('connect aborted');
    await client.connect(o.endpoint);
    if (o.signal?.aborted) throw new Error('connect aborted');
  } catch (err) {
    await client.disconnect().catch(() => {});
    await certificateManager.dispose().catch(() => {});
    throw classifyConnectError(err, o);
  } finally {
    o.signal?.removeEventListener('abort', abort);
  }
  return {
    client,
    certificateManager,
    async dispose() {
      await client.disconnect().catch(() => {});
      await certificateManager.dispose().catch(() => {});
    },
  };
}

export interface UntrustedServer {
  thumbprint: string;
  subject?: string;
  file: string;
}

/** A connect error, and when it is about the server certificate, which one and how to trust it. */
export class ConnectError extends Error {
  readonly untrusted: UntrustedServer | undefined;
  constructor(message: string, untrusted: UntrustedServer | undefined, cause: unknown) {
    super(message, { cause });
    this.name = 'ConnectError';
    this.untrusted = untrusted;
  }
}

function classifyConnectError(err: unknown, o: ClientOptions): Error {
  const msg = err instanceof Error ? err.message : String(err);
  if (/certificate/i.test(msg) && /verif|untrusted|BadCertificate|BadSecurityChecksFailed/i.test(msg)) {
    const newest = listRejected(o.stateDir)[0];
    if (newest) {
      return new ConnectError(
        `the server certificate of ${o.endpoint} is not trusted (thumbprint ${newest.thumbprint}); it was put in ${newest.file}. ` +
          `If it is the right server, trust it with: plantbridge-agent pki trust ${newest.thumbprint}`,
        { thumbprint: newest.thumbprint, subject: newest.subject, file: newest.file },
        err,
      );
    }
  }
  return new ConnectError(`cannot connect to ${o.endpoint}: ${msg.split('\n')[0]}`, undefined, err);
}

/**
 * Trust on first use: the first certificate an endpoint shows is pinned and trusted; a different one
 * later is refused like any unknown certificate (a changed server certificate needs `pki trust`).
 */
async function trustOnFirstUse(o: ClientOptions): Promise<void> {
  if (tofuPin(o.stateDir, o.endpoint) !== undefined) return;
  const discovery = OPCUAClient.create({ endpointMustExist: false, connectionStrategy: { maxRetry: 0 } } as any);
  try {
    await discovery.connect(o.endpoint);
    const endpoints = await discovery.getEndpoints();
    const cert = endpoints.find((e) => e.serverCertificate && e.serverCertificate.length > 0)?.serverCertificate;
    if (!cert) return;
    // the endpoint may send a chain: the leaf comes first; its length is in its DER header
    const der = leafOf(cert);
    const t = thumbprintOf(der);
    if (!isTrusted(o.stateDir, t)) trustCertificate(o.stateDir, der, 'server');
    setTofuPin(o.stateDir, o.endpoint, t);
    o.log.warn({ endpoint: o.endpoint, thumbprint: t }, 'Trusted the server certificate on first use (trustOnFirstUse); later changes are refused');
  } finally {
    await discovery.disconnect().catch(() => {});
  }
}

function leafOf(chain: Buffer): Buffer {
  if (chain[0] !== 0x30) return chain;
  const lenByte = chain[1];
  if (lenByte < 0x80) return chain.subarray(0, 2 + lenByte);
  const n = lenByte & 0x7f;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + chain[2 + i];
  return chain.subarray(0, 2 + n + len);
}

/** ActivateSession refused our user identity: someone must act (trust the user certificate, fix the password). */
export class LoginError extends Error {
  /** the OPC UA status name, e.g. BadIdentityTokenRejected */
  readonly status: string;
  constructor(message: string, status: string, cause: unknown) {
    super(message, { cause });
    this.name = 'LoginError';
    this.status = status;
  }
}

const loginRefusals = /BadIdentityToken(Rejected|Invalid)|BadUserAccessDenied|BadUserSignatureInvalid|BadCertificate[A-Za-z]*|BadSecurityPolicyRejected/;

/**
 * A CreateSession/ActivateSession failure, reworded when the server refused who we are: which identity
 * (for a certificate: subject, thumbprint, file, and whether it is out of its validity period) and what
 * would fix it. Anything else is returned as it was.
 */
export function classifyLoginError(err: unknown, user: OpcuaConfig['user'], endpoint: string): unknown {
  const msg = err instanceof Error ? err.message : String(err);
  const status = loginRefusals.exec(msg)?.[0];
  if (!status) return err;
  switch (user.type) {
    case 'certificate': {
      const c = describeUserCertificate(user.certificate);
      return new LoginError(
        `${endpoint} refused our X.509 user certificate ${c.subject} (thumbprint ${c.thumbprint}, ${user.certificate}): ${status}.` +
          `${c.validity ? ` The certificate ${c.validity}.` : ''} The server must trust it for user logins (its user certificate trust list)`,
        status,
        err,
      );
    }
    case 'username':
      return new LoginError(`${endpoint} refused the login of user "${user.username}": ${status}. Check the user name and the password (${secretName(user.password)})`, status, err);
    case 'anonymous':
      return new LoginError(`${endpoint} refused an anonymous session: ${status}. Configure user: username or certificate`, status, err);
  }
}

function describeUserCertificate(file: string): { subject: string; thumbprint: string; validity?: string } {
  try {
    const cert = new X509Certificate(readFileSync(file));
    const now = Date.now();
    const from = new Date(cert.validFrom);
    const to = new Date(cert.validTo);
    const validity = now > to.getTime() ? `expired on ${to.toISOString()}` : now < from.getTime() ? `is not valid before ${from.toISOString()}` : undefined;
    return { subject: cert.subject.replace(/\n/g, ', '), thumbprint: thumbprintOf(cert.raw), validity };
  } catch {
    return { subject: '(unreadable)', thumbprint: '?' };
  }
}

function secretName(s: unknown): string {
  return s instanceof Secret ? `secret ${s.ref}` : 'password';
}

/** The user identity for ActivateSession; secrets are revealed here and nowhere else. */
export function userIdentity(user: OpcuaConfig['user']): UserIdentityInfo {
  switch (user.type) {
    case 'anonymous':
      return { type: UserTokenType.Anonymous };
    case 'username':
      return { type: UserTokenType.UserName, userName: user.username, password: reveal(user.password, 'user.password') };
    case 'certificate': {
      const pem = readFileSync(user.certificate, 'utf8');
      const b64 = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(pem)?.[1];
      const der = b64 ? Buffer.from(b64.replace(/\s+/g, ''), 'base64') : readFileSync(user.certificate);
      return { type: UserTokenType.Certificate, certificateData: der, privateKey: reveal(user.privateKey, 'user.privateKey') } as UserIdentityInfo;
    }
  }
}

function reveal(s: unknown, path: string): string {
  if (s instanceof Secret) return s.reveal();
  if (typeof s === 'string') return s;
  throw new PlantBridgeError('CONFIG_INVALID', `${path}: the secret reference was not resolved (is the environment variable or file there?)`);
}
