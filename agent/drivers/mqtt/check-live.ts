import { randomBytes } from 'node:crypto';
import { connect, type MqttClient } from 'mqtt';
import type { MqttConfig, MqttConnectionConfig } from './config.ts';
import { checkFiles, clientOptions } from './connect-options.ts';
import { Mapper } from './mapping.ts';
import { describeError } from './mqtt-session.ts';

/**
 * `check-config --live` for MQTT: connects with the configured credentials and TLS, subscribes to every
 * filter and reports, after a few seconds, what each one matched and whether the payloads map cleanly.
 * It uses its own clean, expiring session (clientId + "-check-<random>", QoS 0): the agent's persistent
 * session and its queued messages are not touched, and nothing is acknowledged on its behalf.
 */

export interface LiveFilterReport {
  filter: string;
  granted: boolean;
  matched: number;
  retained: number;
  /** messages that would become signals */
  valid: number;
  /** messages that would be dead-lettered */
  invalid: number;
  /** up to 5 distinct topics seen */
  topics: string[];
  firstProblem?: string;
}

export interface LiveReport {
  driver: string;
  url: string;
  ok: boolean;
  connected: boolean;
  error?: string;
  durationMs: number;
  filters: LiveFilterReport[];
}

export interface CheckLiveOptions {
  /** how long to listen after subscribing (default 3 s) */
  durationMs?: number;
  /** how long to wait for the connection (default: the config's connectTimeout, at most 10 s) */
  connectTimeoutMs?: number;
}

/** Connects once (no retries) with a throwaway session. Shared by the mqtt and sparkplug drivers. */
export async function probe<T>(
  config: MqttConnectionConfig,
  filters: string[],
  opts: CheckLiveOptions,
  onMessage: (topic: string, payload: Buffer, retained: boolean) => void,
  report: (client: MqttClient) => T,
): Promise<{ connected: boolean; error?: string; granted: boolean[]; result?: T }> {
  checkFiles(config);
  const timeout = opts.connectTimeoutMs ?? Math.min(config.connectTimeout, 10_000);
  const client = connect(
    clientOptions(config, {
      clientId: `${config.clientId}-check-${randomBytes(4).toString('hex')}`.slice(0, 128),
      clean: true,
      connectTimeout: timeout,
      properties: config.protocolVersion === 5 ? { sessionExpiryInterval: 0 } : undefined,
    }),
  );
  let error: string | undefined;
  client.on('error', (err) => (error ??= describeError(err)));
  try {
    const connected = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), timeout + 500);
      client.once('connect', () => {
        clearTimeout(t);
        resolve(true);
      });
      client.once('close', () => {
        clearTimeout(t);
        resolve(false);
      });
    });
    if (!connected) return { connected: false, error: error ?? `no connection within ${timeout} ms`, granted: filters.map(() => false) };
    client.on('message', (topic, payload, packet) => onMessage(topic, payload, packet.retain));
    const grants = await client.subscribeAsync(Object.fromEntries(filters.map((f) => [f, { qos: 0 as const }])));
    const granted = filters.map((f) => grants.some((g) => g.topic === f && g.qos !== 128));
    await new Promise((r) => setTimeout(r, opts.durationMs ?? 3000));
    return { connected: true, granted, ...(error ? { error } : {}), result: report(client) };
  } catch (err) {
    return { connected: client.connected, error: describeError(err), granted: filters.map(() => false) };
  } finally {
    await client.endAsync(true).catch(() => undefined);
  }
}

export async function checkLive(config: MqttConfig, opts: CheckLiveOptions = {}): Promise<LiveReport> {
  const started = Date.now();
  const mapper = new Mapper(config);
  const filters: LiveFilterReport[] = mapper.subs.map((s) => ({ filter: s.sub.filter, granted: false, matched: 0, retained: 0, valid: 0, invalid: 0, topics: [] }));
  const r = await probe(
    config,
    mapper.subs.map((s) => s.filter.mqtt),
    opts,
    (topic, payload, retained) => {
      const routed = mapper.route(topic);
      if (!routed) return;
      const f = filters[mapper.subs.indexOf(routed.sub)];
      f.matched++;
      if (retained) f.retained++;
      if (f.topics.length < 5 && !f.topics.includes(topic)) f.topics.push(topic);
      const m = mapper.map(topic, payload, retained, Date.now());
      if (m.kind === 'signal') f.valid++;
      else if (m.kind === 'dead') {
        f.invalid++;
        f.firstProblem ??= `${m.code}: ${m.reason}`;
      }
    },
    () => undefined,
  );
  r.granted.forEach((g, i) => (filters[i].granted = g));
  return {
    driver: config.name,
    url: config.url,
    ok: r.connected && r.granted.every(Boolean),
    connected: r.connected,
    ...(r.error ? { error: r.error } : {}),
    durationMs: Date.now() - started,
    filters,
  };
}
