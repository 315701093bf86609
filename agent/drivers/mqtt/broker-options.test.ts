import assert from 'node:assert/strict';
import url from 'node:url';
import { test } from 'node:test';
import { parseAgentConfig } from '../../config/load.ts';
import { mqttBroker } from '../../../test/helpers/services.ts';
import { brokerOptions } from './connect-options.ts';
import { checkLive } from './check-live.ts';
import type { MqttConfig } from './config.ts';

test('brokerOptions: the URL as mqtt.js options (scheme, host, port; path for WebSocket only; credentials)', () => {
  assert.deepEqual(brokerOptions('mqtt://broker.plant.local'), { protocol: 'mqtt', host: 'broker.plant.local' });
  assert.deepEqual(brokerOptions('mqtts://10.1.2.3:8883'), { protocol: 'mqtts', host: '10.1.2.3', port: 8883 });
  assert.deepEqual(brokerOptions('mqtt://[::1]:1884'), { protocol: 'mqtt', host: '::1', port: 1884 });
  assert.deepEqual(brokerOptions('wss://broker:8443/mqtt?x=1'), { protocol: 'wss', host: 'broker', port: 8443, path: '/mqtt?x=1' });
  assert.deepEqual(brokerOptions('mqtt://u%40plant:p%3Aw@broker'), { protocol: 'mqtt', host: 'broker', username: 'u@plant', password: 'p:w' });
});

test('connecting never calls the deprecated url.parse() (DEP0169: the single executable warned on every connect)', async () => {
  const broker = await mqttBroker();
  const original = url.parse;
  const calls: string[] = [];
  (url as { parse: typeof url.parse }).parse = ((u: string, ...rest: unknown[]) => {
    calls.push(u);
    return (original as (...a: unknown[]) => unknown)(u, ...rest);
  }) as typeof url.parse;
  try {
    const { config } = parseAgentConfig(
      `agent: { id: a1, plant: "1010" }\nhub: { url: "https://hub", token: x-not-used }\ndrivers:\n  - { name: cell, type: mqtt, url: "${broker.url}", clientId: url-parse-test-${process.pid}, subscriptions: [{ filter: url-parse-test/+m/events, ref: "{m}/events", fields: { id: { json: $.id } } }] }\n`.replace('x-not-used', '"${T}"'),
      'agent.yaml',
      { env: { T: 't' }, readFile: () => '' },
    );
    const report = await checkLive(config.drivers[0] as MqttConfig, { durationMs: 100 });
    assert.equal(report.ok, true, JSON.stringify(report));
    assert.deepEqual(calls, [], 'mqtt.js parsed no URL string');
  } finally {
    (url as { parse: typeof url.parse }).parse = original;
    await broker.stop();
  }
});
