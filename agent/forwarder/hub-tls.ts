import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent, type AgentOptions, type RequestOptions } from 'node:https';
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';

/**
 * How the agent trusts the hub (issue 6). Verification is never switched off:
 * - `ca`: the hub's chain must lead to this CA (and its name must match the URL's host);
 * - `fingerprint`: only the certificate with this SHA-256 fingerprint is accepted (a self-signed hub
 *   certificate works; the name is not checked, the pin is stronger). With both, both must hold;
 * - neither: the system's trusted CAs.
 * A pinned connection is handed to the HTTP client only after the check, so nothing (not the
 * credential) is written to a hub that fails it.
 */
export interface HubTrust {
  ca?: string;
  fingerprint?: string;
  /** PEM text of the agent's client certificate and key, for a hub with mutual TLS (hub.tls.clientCa) */
  clientCert?: string;
  clientKey?: string;
}

export function normaliseFingerprint(fp: string): string {
  return fp.replace(/:/g, '').toUpperCase();
}

export class TlsPinError extends Error {
  readonly code = 'PB_TLS_PIN_MISMATCH';
}

class PinnedHttpsAgent extends HttpsAgent {
  private readonly pin: string;
  private readonly requireChain: boolean;
  constructor(opts: AgentOptions, pin: string, requireChain: boolean) {
    super(opts);
    this.pin = normaliseFingerprint(pin);
    this.requireChain = requireChain;
  }

  override createConnection(options: RequestOptions, cb?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    let done = false;
    const finish = (err: Error | null, s?: Duplex) => {
      if (done) return;
      done = true;
      cb?.(err, s as Duplex);
    };
    const sock: TLSSocket = connect({ ...(options as ConnectionOptions), rejectUnauthorized: false });
    sock.once('secureConnect', () => {
      const got = sock.getPeerCertificate()?.fingerprint256;
      if (!got || normaliseFingerprint(got) !== this.pin) {
        sock.destroy();
        return finish(new TlsPinError(`the hub's certificate (SHA-256 ${got ?? 'none'}) is not the pinned one (hub.fingerprint); refusing to send anything to it`));
      }
      if (this.requireChain && !sock.authorized) {
        sock.destroy();
        const e = new Error(`the hub's certificate matches the pin but is not signed by hub.ca: ${String(sock.authorizationError)}`) as Error & { code?: string };
        e.code = String(sock.authorizationError);
        return finish(e);
      }
      finish(null, sock);
    });
    sock.once('error', (err) => finish(err));
    // the Agent waits for the callback (Node's http Agent supports an asynchronous createConnection)
    return undefined;
  }
}

export function hubAgents(trust: HubTrust, opts: { maxSockets?: number } = {}): { http: HttpAgent; https: HttpsAgent } {
  const base = { keepAlive: true, maxSockets: opts.maxSockets ?? 8 };
  const client = trust.clientCert && trust.clientKey ? { cert: trust.clientCert, key: trust.clientKey } : {};
  const https = trust.fingerprint
    ? new PinnedHttpsAgent({ ...base, ...client, ...(trust.ca ? { ca: trust.ca } : {}) }, trust.fingerprint, trust.ca !== undefined)
    : new HttpsAgent({ ...base, ...client, ...(trust.ca ? { ca: trust.ca } : {}) });
  return { http: new HttpAgent(base), https };
}

const CHAIN = new Set(['SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_SIGNATURE_FAILURE']);

/** Says, for an operator, why the agent refused the hub; undefined when the error is not about TLS trust. */
export function explainTlsError(err: unknown, trust: HubTrust): string | undefined {
  const code = String((err as { code?: unknown })?.code ?? '');
  const msg = err instanceof Error ? err.message : String(err);
  if (code === 'PB_TLS_PIN_MISMATCH') return msg;
  if (CHAIN.has(code)) {
    return trust.ca
      ? `the hub's certificate is not signed by the CA in hub.ca (${code}: ${msg}); refusing to connect. Check hub.ca, or pin the certificate with hub.fingerprint`
      : `the hub's certificate is not trusted by this system (${code}: ${msg}); refusing to connect. Set hub.ca to the CA that signed it, or pin it with hub.fingerprint`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `the hub's certificate is not valid for the host in hub.url (${msg}); refusing to connect`;
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return `the hub's certificate is ${code === 'CERT_HAS_EXPIRED' ? 'expired' : 'not yet valid'} (check the clocks, renew it); refusing to connect`;
  if (/^ERR_SSL_|^EPROTO$/.test(code)) return `TLS handshake with the hub failed (${code}: ${msg}); is hub.url https:// to a TLS port?`;
  return undefined;
}
