import { readFileSync } from 'node:fs';
import type { AgentConfig } from '../config/schema.ts';
import type { ForwarderOptions } from './forwarder.ts';

/**
 * The forwarder's options from agent.yaml's `hub:` section (everything except the outbox, the logger and
 * the callbacks). `hub.ca` is read here, at start, so a missing file is reported once.
 */
export function forwarderOptionsFromConfig(config: AgentConfig): Omit<ForwarderOptions, 'outbox' | 'log'> {
  const h = config.hub;
  return {
    hubUrl: h.url,
    token: h.token,
    agentId: config.agent.id,
    batchSize: h.batchSize,
    maxBatchBytes: h.maxBatchBytes,
    inFlight: h.inFlight,
    gzip: h.gzip,
    requestTimeoutMs: h.requestTimeout,
    retryMaxDelayMs: h.retryMaxDelay,
    outcomesIntervalMs: h.outcomesInterval,
    allowPlainHttp: h.allowPlainHttp,
    ...(h.ca ? { ca: readFileSync(h.ca, 'utf8') } : {}),
    ...(h.fingerprint ? { fingerprint: h.fingerprint } : {}),
    ...(h.clientCert && h.clientKey ? { clientCert: readFileSync(h.clientCert, 'utf8'), clientKey: readFileSync(h.clientKey, 'utf8') } : {}),
  };
}
