import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import type { HubConfig } from '../config/schema.ts';

export type ClientCertificate = { ok: true; agentId: string } | { ok: false; reason: string };

/**
 * Mutual TLS for agents (hub.tls.clientCa): the listener asks every client for a certificate and checks it
 * against that CA, but lets a connection without one through (the console's browsers have none). The
 * agents' routes then insist: a certificate signed by hub.tls.clientCa whose subject CN is the agent id the
 * credential (or the enrollment token) belongs to. undefined when mutual TLS is off.
 */
export function clientCertificateOf(req: FastifyRequest, config: Pick<HubConfig, 'hub'>): ClientCertificate | undefined {
  if (!config.hub.tls?.clientCa) return undefined;
  const sock = req.raw.socket as TLSSocket;
  if (typeof sock.getPeerCertificate !== 'function') return { ok: false, reason: 'mutual TLS is on: connect over TLS with a client certificate' };
  const cert = sock.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return { ok: false, reason: 'mutual TLS is on: this hub needs the agent\'s client certificate (agent.yaml hub.clientCert, hub.clientKey)' };
  if (!sock.authorized) return { ok: false, reason: `the client certificate is not signed by the hub's hub.tls.clientCa (${String(sock.authorizationError)})` };
  const cn = cert.subject?.CN;
  const agentId = Array.isArray(cn) ? cn[0] : cn;
  if (!agentId) return { ok: false, reason: 'the client certificate has no subject CN: it must be the agent id' };
  return { ok: true, agentId };
}
