import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAgentConfig } from '../agent/config/load.ts';
import { parseHubConfig } from '../central-hub/config/load.ts';
import { PlantBridgeError, Secret } from '../contracts/index.ts';
import { generatedContractSchemas, generatedSchemas } from './generate-schema.ts';

const here = import.meta.dirname;
const env = { PLANTBRIDGE_AGENT_TOKEN: 'tok-agent-0123456789', LINE7_OPCUA_PASSWORD: 'pw1', CELL3_MQTT_PASSWORD: 'pw2', PLANTBRIDGE_TOKEN_EDGE_P1010_01: 'tok', SAP_PASSWORD: 'sap' };
const sources = { env, readFile: (p: string) => readFileSync(p, 'utf8') };

const minimalAgent = `
agent: { id: edge-1, plant: "1010" }
hub: { url: "https://hub.example.com", token: "\${PLANTBRIDGE_AGENT_TOKEN}" }
drivers:
  - name: line7-plc
    type: opcua
    endpoint: opc.tcp://plc7:4840
    nodes: [{ ref: good, nodeId: "ns=3;s=Good" }, { ref: order, nodeId: "ns=3;s=Order" }]
rules:
  - id: r1
    type: count-production
    workCenter: WC-07
    counter: { source: line7-plc, ref: good }
    activeOrder: { source: line7-plc, ref: order }
`;

function agentErrors(yaml: string, env2: Record<string, string> = env): string {
  try {
    parseAgentConfig(yaml, 'agent.yaml', { env: env2, readFile: sources.readFile });
  } catch (err) {
    assert.ok(err instanceof PlantBridgeError, String(err));
    assert.equal(err.code, 'CONFIG_INVALID');
    return err.message;
  }
  assert.fail('expected the config to be rejected');
}

test('the example configs are valid, with defaults applied and secrets resolved', () => {
  const agent = parseAgentConfig(readFileSync(join(here, 'agent.example.yaml'), 'utf8'), join(here, 'agent.example.yaml'), sources).config;
  assert.equal(agent.agent.plant, '1010');
  assert.equal(agent.outbox.synchronous, 'full');
  assert.equal(agent.outbox.maxBytes, 10 * 1024 ** 3);
  assert.ok(agent.hub.token instanceof Secret);
  assert.equal(agent.hub.token.reveal(), env.PLANTBRIDGE_AGENT_TOKEN);
  const hub = parseHubConfig(readFileSync(join(here, 'hub.example.yaml'), 'utf8'), join(here, 'hub.example.yaml'), sources).config;
  assert.equal(hub.erp.type, 'sap-odata');
  assert.equal(hub.store.type, 'sqlite');
});

test('a minimal agent config gets documented defaults', () => {
  const c = parseAgentConfig(minimalAgent, 'agent.yaml', sources).config;
  assert.equal(c.agent.timeZone, 'UTC');
  assert.equal(c.agent.mode, 'live');
  assert.equal(c.status.port, 9464);
  assert.equal(c.hub.heartbeatInterval, 15_000);
  assert.equal(c.rules[0].type === 'count-production' && c.rules[0].emitEvery.parts, 100);
});

test('each kind of broken config names its path and gives a hint', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['unknown key with a near miss', minimalAgent.replace('plant: "1010"', 'plnt: "1010"'), /agent\.plnt: unknown key \(did you mean "plant"\?\)/],
    ['wrong type', `${minimalAgent}status: { port: "eighty" }\n`, /status\.port: .*number/i],
    ['bad URL scheme', minimalAgent.replace('opc.tcp://plc7:4840', 'http://plc7'), /drivers\[0\]\.endpoint: expected opc\.tcp:\/\/host:port, got "http:\/\/plc7"/],
    ['missing secret', minimalAgent, /hub\.token: environment variable PLANTBRIDGE_AGENT_TOKEN is not set/],
    ['literal secret', minimalAgent.replace('"${PLANTBRIDGE_AGENT_TOKEN}"', 's3cr3t-in-clear'), /hub\.token: a secret must be a reference/],
    ['rule names a missing driver', minimalAgent.replace('counter: { source: line7-plc', 'counter: { source: line8-plc'), /rules\[0\]\.counter\.source: no driver named "line8-plc"/],
    ['rule names a missing tag', minimalAgent.replace('counter: { source: line7-plc, ref: good }', 'counter: { source: line7-plc, ref: goood }'), /rules\[0\]\.counter\.ref: driver "line7-plc" has no node with ref "goood"/],
    ['insecure OPC UA without opt-in', minimalAgent.replace('endpoint: opc.tcp://plc7:4840', 'endpoint: opc.tcp://plc7:4840\n    securityMode: None\n    securityPolicy: None'), /allowInsecure: .*insecure/],
    ['unknown time zone', minimalAgent.replace('plant: "1010" }', 'plant: "1010", timeZone: Mars/Olympus }'), /agent\.timeZone: expected an IANA time zone/],
    ['bad size', `${minimalAgent}outbox: { maxBytes: 10 jiggabytes }\n`, /outbox\.maxBytes: expected a size such as 500MB/],
    ['bad duration', minimalAgent.replace('token: "${PLANTBRIDGE_AGENT_TOKEN}" }', 'token: "${PLANTBRIDGE_AGENT_TOKEN}", heartbeatInterval: soon }'), /hub\.heartbeatInterval: expected a duration/],
    ['unknown driver type', minimalAgent.replace('type: opcua', 'type: modbus'), /drivers\[0\]\.type/],
    ['YAML syntax error', 'agent: { id: [unclosed\n', /line \d+, column \d+/],
    ['duplicate YAML keys', 'agent: {}\nagent: {}\n', /line \d+/],
  ];
  for (const [name, yaml, expected] of cases) {
    const msg = agentErrors(yaml, name === 'missing secret' ? {} : env);
    assert.match(msg, expected, `${name}: got\n${msg}`);
  }
});

test('several problems are reported at once', () => {
  const msg = agentErrors(minimalAgent.replace('plant: "1010"', 'plnt: "1010"').replace('opc.tcp://plc7:4840', 'http://plc7'), {});
  assert.match(msg, /agent\.plnt/);
  assert.match(msg, /drivers\[0\]\.endpoint/);
});

test('file: secret references read the file, and a missing file names the path', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pb-secret-'));
  writeFileSync(join(dir, 'token'), '  tok-from-file-0123456789\n');
  const c = parseAgentConfig(minimalAgent.replace('"${PLANTBRIDGE_AGENT_TOKEN}"', `"file:${join(dir, 'token')}"`), join(dir, 'agent.yaml')).config;
  assert.equal(c.hub.token.reveal(), 'tok-from-file-0123456789');
  assert.equal(JSON.stringify(c.hub.token), '"[secret]"');
  assert.equal(String(c.hub.token), '[secret]');
  const msg = agentErrors(minimalAgent.replace('"${PLANTBRIDGE_AGENT_TOKEN}"', `"file:${join(dir, 'nope')}"`));
  assert.match(msg, /hub\.token: cannot read secret file .*nope: ENOENT/);
});

test('the hub refuses plain HTTP on a public address unless asked, and checks its ERP section', () => {
  const hubYaml = (extra: string) => `hub: { host: 0.0.0.0${extra} }\nerp: { type: sap-odata, url: "https://s4.example.com", auth: { type: basic, username: U, password: "\${SAP_PASSWORD}" } }\n`;
  assert.throws(() => parseHubConfig(hubYaml(''), 'hub.yaml', sources), /hub\.tls: the hub listens on 0\.0\.0\.0 without TLS/);
  assert.equal(parseHubConfig(hubYaml(', allowPlainHttp: true'), 'hub.yaml', sources).config.hub.allowPlainHttp, true);
  assert.throws(
    () => parseHubConfig('hub: {}\nerp: { type: sap-odata, url: "ftp://s4", auth: { type: basic, username: U, password: "${SAP_PASSWORD}" } }\n', 'hub.yaml', sources),
    /erp\.url: expected https:\/\/s4\.example\.com:44300, got "ftp:\/\/s4"/,
  );
  assert.throws(() => parseHubConfig('hub: {}\nerp: { type: oracle }\n', 'hub.yaml', sources), /erp\.type/);
});

test('hostile input: huge and deeply nested YAML is rejected cleanly', () => {
  const deep = `agent: ${'['.repeat(2000)}${']'.repeat(2000)}\n`;
  assert.throws(() => parseAgentConfig(deep, 'agent.yaml', sources), PlantBridgeError);
  assert.throws(() => parseAgentConfig('x'.repeat(5 * 1024 * 1024), 'agent.yaml', sources), /far too large/);
  const bomb = `a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n`;
  assert.throws(() => parseAgentConfig(bomb, 'agent.yaml', sources), PlantBridgeError);
});

test('generated JSON Schemas in config/schema are up to date (npm run gen:schema)', () => {
  for (const [name, text] of Object.entries(generatedSchemas())) {
    assert.equal(readFileSync(join(here, 'schema', name), 'utf8'), text, `config/schema/${name} is stale: run npm run gen:schema`);
  }
  for (const [name, text] of Object.entries(generatedContractSchemas())) {
    assert.equal(readFileSync(join(here, '..', 'contracts', 'schema', name), 'utf8'), text, `contracts/schema/${name} is stale: run npm run gen:schema`);
  }
});
