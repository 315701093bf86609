import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig, resolveSecrets } from '../../../contracts/index.ts';
import { mqttConfigSchema, type MqttConfig } from './config.ts';
import { create } from './mqtt-driver.ts';
import { countEvents, outboxHarness, publishAll, publisher, startBroker, uniq, waitFor, type TestBroker } from './test-kit.ts';

/** TLS against a Mosquitto started with certificates generated here (openssl, temp dir). */

let dir: string;
let broker: TestBroker;
let plain: TestBroker;

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pb-mqtt-tls-'));
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=PlantBridge Test CA', '-keyout', 'ca.key', '-out', 'ca.crt');
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=Other CA', '-keyout', 'other-ca.key', '-out', 'other-ca.crt');
  for (const who of ['server', 'client']) {
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${who === 'server' ? 'localhost' : 'edge-p1-01'}`, '-keyout', `${who}.key`, '-out', `${who}.csr`);
    openssl('x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-out', `${who}.crt`, ...(who === 'server' ? ['-extfile', 'server.ext'] : []));
  }
  // Mosquitto started as root reads its files as the mosquitto user
  for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o644);
  broker = await startBroker({
    listenerConf: [`cafile ${join(dir, 'ca.crt')}`, `certfile ${join(dir, 'server.crt')}`, `keyfile ${join(dir, 'server.key')}`, 'require_certificate true', 'use_identity_as_username true'].join('\n'),
  });
  plain = await startBroker();
});
after(async () => {
  await broker?.stop();
  await plain?.stop();
});

function tlsConfig(url: string, ca = 'ca.crt', overrides: Record<string, unknown> = {}): MqttConfig {
  const parsed = parseConfig(mqttConfigSchema, {
    type: 'mqtt',
    name: 'secure',
    url,
    clientId: uniq('tls-agent'),
    reconnectMaxDelay: '1s',
    tls: { ca: join(dir, ca), cert: join(dir, 'client.crt'), key: `file:${join(dir, 'client.key')}` },
    subscriptions: [{ filter: 'tls/+machine/events', ref: '{machine}', fields: { id: { json: '$.id' } } }],
    ...overrides,
  });
  return resolveSecrets(parsed, { env: {}, readFile: (p) => readFileSync(p, 'utf8') }) as MqttConfig;
}

void describe('mqtt driver over TLS', () => {
  void it('connects with CA, client certificate and key from a secret reference, and ingests', async (t) => {
    const h = outboxHarness('secure');
    t.after(() => h.close());
    const d = create(tlsConfig(`mqtts://127.0.0.1:${broker.port}`), h.ctx);
    t.after(() => d.stop());
    await d.start();
    await waitFor(() => d.health().state === 'up', 10_000, 'TLS driver up');
    const pub = await publisher(`mqtts://127.0.0.1:${broker.port}`, {
      ca: readFileSync(join(dir, 'ca.crt')),
      cert: readFileSync(join(dir, 'client.crt')),
      key: readFileSync(join(dir, 'client.key')),
    });
    t.after(() => pub.end(true));
    await publishAll(pub, Array.from({ length: 300 }, (_, i) => ({ topic: 'tls/M1/events', payload: JSON.stringify({ id: i }) })));
    await waitFor(() => countEvents(h.outbox) >= 300, 10_000, '300 events over TLS');
    assert.equal(countEvents(h.outbox), 300);
  });

  void it('refuses a broker certificate from another CA and stays down, saying why', async (t) => {
    const h = outboxHarness('secure');
    t.after(() => h.close());
    const d = create(tlsConfig(`mqtts://127.0.0.1:${broker.port}`, 'other-ca.crt'), h.ctx);
    t.after(() => d.stop());
    await d.start();
    await waitFor(() => d.health().state === 'down', 10_000, 'driver down');
    await new Promise((r) => setTimeout(r, 800));
    assert.notEqual(d.health().state, 'up');
    assert.match(d.health().message ?? '', /certificate|self.signed|UNABLE|verify/i);
  });

  void it('never speaks plain MQTT when TLS is configured, even to a plain listener', async (t) => {
    const firstBytes: Buffer[] = [];
    const sockets: Socket[] = [];
    const sniffer = createServer((s) => {
      sockets.push(s);
      s.once('data', (b) => {
        firstBytes.push(b);
        s.destroy();
      });
    });
    await new Promise<void>((r) => sniffer.listen(0, '127.0.0.1', () => r()));
    t.after(() => {
      sockets.forEach((s) => s.destroy());
      sniffer.close();
    });
    const port = (sniffer.address() as { port: number }).port;
    const h = outboxHarness('secure');
    t.after(() => h.close());
    const d = create(tlsConfig(`mqtts://127.0.0.1:${port}`), h.ctx);
    t.after(() => d.stop());
    await d.start();
    await waitFor(() => firstBytes.length >= 2, 10_000, 'two connection attempts');
    for (const b of firstBytes) {
      assert.equal(b[0], 0x16, 'a TLS handshake record (0x16), never an MQTT CONNECT (0x10)');
    }
    // and against a real plain Mosquitto listener it never comes up
    const d2 = create(tlsConfig(`mqtts://127.0.0.1:${plain.port}`), h.ctx);
    t.after(() => d2.stop());
    await d2.start();
    await new Promise((r) => setTimeout(r, 1500));
    assert.notEqual(d2.health().state, 'up');
    assert.throws(() => parseConfig(mqttConfigSchema, { type: 'mqtt', name: 'x', url: `mqtt://127.0.0.1:${plain.port}`, clientId: 'c', tls: {}, subscriptions: [{ filter: 'a', ref: 'a', fields: { id: { json: '$.id' } } }] }), /tls is configured but the url uses mqtt:\/\//);
  });
});
