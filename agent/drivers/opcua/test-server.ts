import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAServer,
  SecurityPolicy,
  UserTokenType,
  type AddressSpace,
  type Namespace,
} from 'node-opcua';
import { freePort } from '../../../test/helpers/services.ts';

/**
 * A bare in-process node-opcua server for the driver tests that need what the plant simulator
 * (test/plant-sim/opcua-line-server.ts) does not offer: a user PKI for X.509 logins, analog items with
 * an EURange. The test fills the address space itself (`populate`).
 */

export interface TestServerOptions {
  securityModes?: Array<'None' | 'Sign' | 'SignAndEncrypt'>;
  allowAnonymous?: boolean;
  /** the user token types the endpoints offer (default: node-opcua's, Anonymous/UserName/Certificate) */
  userTokenTypes?: Array<'Anonymous' | 'UserName' | 'Certificate'>;
  /** the PKI the server checks X.509 user certificates against (its trusted/ decides) */
  userCertificateManager?: OPCUACertificateManager;
  /**
   * 0: every change of a variable with MinimumSamplingInterval 0 goes through the monitored items at
   * once (requested samplingInterval 0), none coalesced: what a test of filters needs to be exact
   */
  minSupportedSampleRate?: number;
  populate?: (ns: Namespace, addressSpace: AddressSpace) => void;
}

export interface TestServer {
  endpoint: string;
  server: OPCUAServer;
  ns: Namespace;
  sessionCount(): number;
  stop(): Promise<void>;
}

const modeMap = { None: MessageSecurityMode.None, Sign: MessageSecurityMode.Sign, SignAndEncrypt: MessageSecurityMode.SignAndEncrypt } as const;

export async function startTestServer(opts: TestServerOptions = {}): Promise<TestServer> {
  const port = await freePort();
  const pkiDir = mkdtempSync(join(tmpdir(), 'pb-opcua-srv-'));
  const certificateManager = new OPCUACertificateManager({ rootFolder: pkiDir, automaticallyAcceptUnknownCertificate: true, disableFileWatchers: true });
  await certificateManager.initialize();
  const server = new OPCUAServer({
    port,
    hostname: '127.0.0.1',
    host: '127.0.0.1',
    serverCertificateManager: certificateManager,
    userCertificateManager: opts.userCertificateManager,
    securityModes: (opts.securityModes ?? ['None']).map((m) => modeMap[m]),
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    allowAnonymous: opts.allowAnonymous ?? true,
    userTokenTypes: opts.userTokenTypes?.map((t) => UserTokenType[t]),
    isAuditing: false,
    ...(opts.minSupportedSampleRate !== undefined ? { serverCapabilities: { minSupportedSampleRate: opts.minSupportedSampleRate } } : {}),
  } as any);
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  const ns = addressSpace.getOwnNamespace();
  opts.populate?.(ns, addressSpace);
  await server.start();
  let stopped = false;
  return {
    endpoint: `opc.tcp://127.0.0.1:${port}`,
    server,
    ns,
    sessionCount: () => server.engine.currentSessionCount,
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.shutdown(0);
      await certificateManager.dispose();
      rmSync(pkiDir, { recursive: true, force: true });
    },
  };
}

export interface UserCertificate {
  /** PEM certificate file (what `user.certificate` points at) */
  certificateFile: string;
  /** PEM private key file (what `user.privateKey: file:…` points at) */
  privateKeyFile: string;
  der: Buffer;
}

/** A self-signed X.509 user certificate and its key, made with node-opcua-pki in a folder of its own. */
export async function makeUserCertificate(dir: string, commonName: string, validFrom = new Date(Date.now() - 60_000), validityDays = 30): Promise<UserCertificate> {
  const cm = new OPCUACertificateManager({ rootFolder: dir, automaticallyAcceptUnknownCertificate: false, disableFileWatchers: true });
  await cm.initialize();
  const certificateFile = join(dir, 'own', 'certs', 'user.pem');
  await cm.createSelfSignedCertificate({
    subject: `/CN=${commonName}/O=PlantBridge test`,
    applicationUri: `urn:plantbridge:test:user:${commonName}`,
    dns: [],
    startDate: validFrom,
    validity: validityDays,
    outputFile: certificateFile,
  } as any);
  await cm.dispose();
  const pem = readFileSync(certificateFile, 'utf8');
  const b64 = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(pem)![1];
  return { certificateFile, privateKeyFile: join(dir, 'own', 'private', 'private_key.pem'), der: Buffer.from(b64.replace(/\s+/g, ''), 'base64') };
}
