import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PlantBridgeError } from '../../../contracts/index.ts';

/**
 * The agent's OPC UA PKI folder, `<stateDir>/pki`, laid out the way node-opcua's certificate manager
 * expects: own/ (the agent's application certificate and key, created on first start), trusted/certs/,
 * rejected/ (server certificates we refused, named `<CN>[<sha1 thumbprint>].pem`), issuers/. No
 * node-opcua import here: `pki trust` must answer at once.
 */

export function pkiDir(stateDir: string): string {
  return join(stateDir, 'pki');
}

export function rejectedDir(stateDir: string): string {
  return join(pkiDir(stateDir), 'rejected');
}

export function trustedDir(stateDir: string): string {
  return join(pkiDir(stateDir), 'trusted', 'certs');
}

/** SHA-1 thumbprint (lowercase hex) of a DER certificate, as OPC UA and node-opcua name it. */
export function thumbprintOf(der: Buffer): string {
  return createHash('sha1').update(der).digest('hex');
}

function normalise(thumbprint: string): string {
  return thumbprint.replace(/[:\s]/g, '').toLowerCase();
}

function listPem(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => /\.(pem|der)$/i.test(f));
}

function thumbprintFromName(file: string): string | undefined {
  return /\[([0-9a-f]{40})\]\.(pem|der)$/i.exec(file)?.[1]?.toLowerCase();
}

export interface RejectedCert {
  file: string;
  thumbprint: string;
  subject?: string;
  rejectedAt: string;
}

/** Certificates in rejected/, newest first. */
export function listRejected(stateDir: string): RejectedCert[] {
  const dir = rejectedDir(stateDir);
  return listPem(dir)
    .map((file) => {
      const full = join(dir, file);
      let subject: string | undefined;
      let thumbprint = thumbprintFromName(file);
      try {
        const cert = new X509Certificate(readFileSync(full));
        subject = cert.subject.replace(/\n/g, ', ');
        thumbprint ??= thumbprintOf(cert.raw);
      } catch {
        // an unreadable file still shows with the thumbprint from its name
      }
      return { file: full, thumbprint: thumbprint ?? '', subject, rejectedAt: statSync(full).mtime.toISOString() };
    })
    .filter((c) => c.thumbprint !== '')
    .sort((a, b) => b.rejectedAt.localeCompare(a.rejectedAt));
}

export function isTrusted(stateDir: string, thumbprint: string): boolean {
  const t = normalise(thumbprint);
  return listPem(trustedDir(stateDir)).some((f) => thumbprintFromName(f) === t);
}

/**
 * Moves a refused server certificate from rejected/ to trusted/certs/ (`plantbridge-agent pki trust
 * <thumbprint>`). A unique prefix of at least 8 hex digits is enough. Returns a sentence for the operator.
 */
export async function pkiTrust(stateDir: string, thumbprint: string): Promise<string> {
  const t = normalise(thumbprint);
  if (!/^[0-9a-f]{8,40}$/.test(t)) {
    throw new PlantBridgeError('CONFIG_INVALID', `expected a certificate thumbprint (40 hex digits, or a unique prefix of at least 8), got ${JSON.stringify(thumbprint)}`);
  }
  const matches = listRejected(stateDir).filter((c) => c.thumbprint.startsWith(t));
  if (matches.length === 0) {
    if (isTrusted(stateDir, t)) return `certificate ${t} is already trusted`;
    throw new PlantBridgeError('NOT_FOUND', `no rejected certificate with thumbprint ${t} in ${rejectedDir(stateDir)}`);
  }
  const unique = new Set(matches.map((m) => m.thumbprint));
  if (unique.size > 1) {
    throw new PlantBridgeError('CONFIG_INVALID', `thumbprint prefix ${t} matches ${unique.size} certificates: give more digits`);
  }
  const dest = trustedDir(stateDir);
  mkdirSync(dest, { recursive: true });
  const first = matches[0];
  const target = join(dest, first.file.split(/[\\/]/).pop()!);
  renameSync(first.file, target);
  for (const other of matches.slice(1)) renameSync(other.file, join(dest, other.file.split(/[\\/]/).pop()!));
  return `trusted ${first.subject ?? 'certificate'} (${first.thumbprint}); the driver uses it on its next connection attempt`;
}

/** Writes a DER certificate into trusted/certs/ (trust on first use). */
export function trustCertificate(stateDir: string, der: Buffer, label: string): string {
  const dest = trustedDir(stateDir);
  mkdirSync(dest, { recursive: true });
  const t = thumbprintOf(der);
  const pem = `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;
  const file = join(dest, `${label.replace(/[^A-Za-z0-9._ -]/g, '_').slice(0, 64) || 'certificate'}[${t}].pem`);
  writeFileSync(file, pem);
  return t;
}

interface TofuPins {
  [endpoint: string]: string;
}

function tofuFile(stateDir: string): string {
  return join(pkiDir(stateDir), 'trust-on-first-use.json');
}

/** The thumbprint pinned for an endpoint by trust-on-first-use, if any. */
export function tofuPin(stateDir: string, endpoint: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(tofuFile(stateDir), 'utf8')) as TofuPins)[endpoint];
  } catch {
    return undefined;
  }
}

export function setTofuPin(stateDir: string, endpoint: string, thumbprint: string): void {
  let pins: TofuPins = {};
  try {
    pins = JSON.parse(readFileSync(tofuFile(stateDir), 'utf8')) as TofuPins;
  } catch {
    // first pin
  }
  pins[endpoint] = thumbprint;
  mkdirSync(pkiDir(stateDir), { recursive: true });
  writeFileSync(tofuFile(stateDir), `${JSON.stringify(pins, null, 2)}\n`);
}
