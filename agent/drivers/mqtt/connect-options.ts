import { existsSync, readFileSync } from 'node:fs';
import type { IClientOptions } from 'mqtt';
import { PlantBridgeError } from '../../../contracts/index.ts';
import type { MqttConnectionConfig } from './config.ts';

const noop = (): void => undefined;

/**
 * Receive Maximum in effect: configured, else 3000 for MQTT 5 (three batches: the broker keeps sending while a
 * commit blocks the event loop; README.md, receiveMaximum) or Mosquitto's
 * max_inflight_messages default 20 for 3.1.1.
 */
export function inflightLimit(c: Pick<MqttConnectionConfig, 'receiveMaximum' | 'protocolVersion'>): number {
  return c.receiveMaximum ?? (c.protocolVersion === 5 ? 3000 : 20);
}

export function usesTls(c: Pick<MqttConnectionConfig, 'url'>): boolean {
  const scheme = c.url.split(':')[0];
  return scheme === 'mqtts' || scheme === 'wss';
}

/** Validation that needs the file system (certificate files exist): done in create(), never a retry loop. */
export function checkFiles(c: MqttConnectionConfig): void {
  for (const key of ['ca', 'cert'] as const) {
    const file = c.tls?.[key];
    if (file && !existsSync(file)) {
      throw new PlantBridgeError('CONFIG_INVALID', `drivers.${c.name}.tls.${key}: file ${file} does not exist`);
    }
  }
  if (c.tls?.cert && !c.tls.key) throw new PlantBridgeError('CONFIG_INVALID', `drivers.${c.name}.tls.key: a client certificate needs its key`);
  const scheme = c.url.split(':')[0];
  if (c.tls && !usesTls(c)) {
    throw new PlantBridgeError('CONFIG_INVALID', `drivers.${c.name}.url: tls is configured but the url uses ${scheme}://`);
  }
}

/**
 * The broker's address as mqtt.js options, from the config's URL. mqtt.js would parse a URL string with
 * the legacy url.parse(), which Node 24 deprecates (DEP0169) with a warning on stderr wherever the call is
 * not inside node_modules: in the single executable, mqtt.js is bundled, so every connect warned. Given
 * these options instead of a string, mqtt.js parses nothing.
 */
export function brokerOptions(url: string): Pick<IClientOptions, 'protocol' | 'host' | 'port' | 'path' | 'username' | 'password'> {
  const u = new URL(url);
  const protocol = u.protocol.replace(/:$/, '') as IClientOptions['protocol'];
  return {
    protocol,
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    ...(u.port ? { port: Number(u.port) } : {}),
    // the path matters for WebSocket brokers only (mqtt.js drops it for the others)
    ...(protocol?.startsWith('ws') ? { path: `${u.pathname}${u.search}` } : {}),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
  };
}

/**
 * mqtt.js options for one connection attempt, the broker's address included (connect(options), no URL). Certificates are read on every attempt so that a renewed
 * certificate is picked up at the next reconnect. Reconnects are ours (jittered backoff), not mqtt.js's.
 */
export function clientOptions(c: MqttConnectionConfig, overrides: Partial<IClientOptions> = {}): IClientOptions {
  const opts: IClientOptions = {
    ...brokerOptions(c.url),
    clientId: c.clientId,
    protocolVersion: c.protocolVersion,
    clean: false,
    keepalive: Math.round(c.keepalive / 1000),
    connectTimeout: c.connectTimeout,
    reconnectPeriod: 0,
    resubscribe: false,
    // mqtt.js calls its debug logger several times per packet (~6% of CPU at 10k msgs/s even when disabled);
    // DEBUG=mqttjs* still turns it on
    ...(/mqttjs/.test(process.env.DEBUG ?? '') ? {} : { log: noop }),
    ...(c.username ? { username: c.username } : {}),
    ...(c.password ? { password: c.password.reveal() } : {}),
    ...(c.protocolVersion === 5
      ? {
          properties: {
            sessionExpiryInterval: Math.min(0xffffffff, Math.round(c.sessionExpiry / 1000)),
            receiveMaximum: inflightLimit(c),
          },
        }
      : {}),
    ...overrides,
  };
  if (usesTls(c)) {
    const t = c.tls;
    Object.assign(opts, {
      rejectUnauthorized: true,
      ...(t?.ca ? { ca: readFileSync(t.ca) } : {}),
      ...(t?.cert ? { cert: readFileSync(t.cert) } : {}),
      ...(t?.key ? { key: t.key.reveal() } : {}),
      ...(t?.passphrase ? { passphrase: t.passphrase.reveal() } : {}),
      ...(t?.servername ? { servername: t.servername } : {}),
    });
  }
  return opts;
}
