import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseAgentConfig } from '../agent/config/load.ts';
import { parseHubConfig } from '../central-hub/config/load.ts';
import { isPlantBridgeError } from '../contracts/errors.ts';
import { parseYaml } from '../contracts/config-kit.ts';

/** Config messages as an operator reads them: what is wrong, where, and what was found. */

const sources = { env: { T: 'x' } as Record<string, string>, readFile: () => 'x' };
const agentYaml = (extra: string) => `agent: { id: a1, plant: "1010" }\nhub: { url: "https://hub", token: "\${T}" }\ndrivers: [{ type: simulator, name: sim }]\n${extra}`;

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(isPlantBridgeError(err, 'CONFIG_INVALID'), String(err));
    return err.message;
  }
  assert.fail('no config error');
}

test('a wrong type says what was expected and what was found, not "is required"', () => {
  const cases: [yaml: string, line: string][] = [
    ['status: { port: five }', 'status.port: expected a number, got the string "five"'],
    ['status: { port: "5" }', 'status.port: expected a number, got the string "5"'],
    ['hub: { url: "https://hub", token: "${T}", gzip: yes please }', 'hub.gzip: expected true or false, got the string "yes please"'],
    ['hub: { url: "https://hub", token: "${T}", batchSize: [1] }', 'hub.batchSize: expected a number, got a list (1 item)'],
    ['log:', 'log: expected a mapping (key: value), got nothing (the key has no value)'],
  ];
  for (const [extra, line] of cases) {
    const text = agentYaml(extra).replace(/^hub: .*\n(?=[\s\S]*^hub:)/m, '');
    const m = messageOf(() => parseAgentConfig(text, 'agent.yaml', sources));
    assert.ok(m.split('\n').includes(`  ${line}`), `${extra}\n${m}`);
    assert.doesNotMatch(m, /is required/);
  }
  const plant = messageOf(() => parseAgentConfig('agent: { id: a1, plant: 1010 }\nhub: { url: "https://hub", token: "${T}" }\ndrivers: []\n', 'agent.yaml', sources));
  assert.match(plant, /agent\.plant: expected a string, got the number 1010 \(in quotes it is one: "1010"\)/);
  // a key that is really missing still says so
  const missing = messageOf(() => parseAgentConfig('agent: { plant: "1010" }\nhub: { url: "https://hub", token: "${T}" }\ndrivers: []\n', 'agent.yaml', sources));
  assert.match(missing, /agent\.id: is required \(a string\)/);
});

test('a missing secret names the file in the header', () => {
  const m = messageOf(() => parseAgentConfig(agentYaml('').replace('${T}', '${NOT_SET_4711}'), '/etc/plantbridge-agent/agent.yaml', sources));
  assert.equal(m.split('\n')[0], '/etc/plantbridge-agent/agent.yaml: invalid configuration');
  assert.match(m, /hub\.token: environment variable NOT_SET_4711 is not set/);
  const hub = messageOf(() => parseHubConfig('erp: { type: sap-odata, url: "https://s4", auth: { type: basic, username: U, password: "${NOT_SET_4712}" } }\n', 'hub.yaml', sources));
  assert.equal(hub.split('\n')[0], 'hub.yaml: invalid configuration');
});

/** [what, yaml, line and column, message, the excerpt's source line] */
const YAML_CASES: [string, string, string, RegExp, string][] = [
  ['a key indented deeper than the one above', 'agent:\n  id: a1\n   plant: "1010"\nhub:\n  url: x\n', 'line 3, column 4', /indented deeper than line 2 above it/, '   plant: "1010"'],
  ['several deeper lines: still one message', 'agent:\n  id: a1\n    plant: x\n    mode: live\n  timeZone: x\n', 'line 3, column 5', /indented deeper than line 2/, '    plant: x'],
  ['a key less indented than its siblings', 'agent:\n  id: a1\n plant: x\nhub:\n  url: y\n', 'line 3, column 2', /the keys of one mapping start in the same column/, ' plant: x'],
  ['a list item key out of line', 'drivers:\n  - type: simulator\n   name: sim\n', 'line 3, column 4', /the keys of one item start in the same column/, '   name: sim'],
  ['an unclosed double quote (noticed at the end of the file)', 'agent:\n  id: a1\n  plant: "1010\nhub:\n  url: x\n', 'line 3, column 10', /this double quote is never closed/, '  plant: "1010'],
  ['an unclosed single quote', "agent:\n  id: 'a1\n  plant: x\n", 'line 2, column 7', /this single quote is never closed/, "  id: 'a1"],
  ['an unclosed flow list', 'agent:\n  id: [a1\nhub: {url: x}\n', 'line 2, column 7', /this \[ is never closed with \]/, '  id: [a1'],
  ['a duplicate key', 'agent:\n  id: a1\n  id: a2\n', 'line 3, column 3', /duplicate key "id"/, '  id: a2'],
  ['a tab for indentation', 'agent:\n\tid: a1\n', 'line 2, column 1', /a tab is used for indentation/, ' id: a1'],
  ['a key without its colon', 'agent\n  id: a1\n', 'line 1, column 1', /"agent" needs a colon after it/, 'agent'],
  ['a list item among keys', 'agent:\n  id: a1\nhub:\n  url: y\n- x\n', 'line 5, column 1', /a list item \(- …\) where the lines around it are key: value/, '- x'],
];

test('YAML syntax errors: one message at the line to change, with that line and a caret', () => {
  for (const [what, yaml, where, message, source] of YAML_CASES) {
    const m = messageOf(() => parseYaml(yaml, 'agent.yaml'));
    const lines = m.split('\n');
    assert.equal(lines[0], 'agent.yaml: invalid configuration', what);
    assert.equal(lines.length, 4, `${what}: header, message, source line, caret\n${m}`);
    assert.ok(lines[1].startsWith(`  ${where}: `), `${what}: ${lines[1]}`);
    assert.match(lines[1], message, what);
    assert.doesNotMatch(lines[1], /at line \d+|:\s*$/, `${what}: no second location, no dangling colon`);
    const lineNo = Number(/line (\d+)/.exec(where)![1]);
    const col = Number(/column (\d+)/.exec(where)![1]);
    assert.equal(lines[2], `    ${lineNo} | ${source}`, what);
    // the caret sits under the column named
    assert.equal(lines[3].indexOf('^') - lines[2].indexOf('| ') - 2, col - 1, `${what}: caret\n${lines[2]}\n${lines[3]}`);
  }
});

test('each example config names the secrets to set, and validates once they are set', async () => {
  const { readFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const here = import.meta.dirname;
  for (const f of ['agent.example.yaml', 'hub.example.yaml', 'examples/mqtt-event-cell.yaml', 'examples/opcua-counter-line.yaml', 'examples/sparkplug-press.yaml']) {
    const file = join(here, f);
    const text = readFileSync(file, 'utf8');
    const named = /^# Secrets to set first \(check-config resolves them; any value passes offline\): (.+)$/m.exec(text)?.[1].split(', ');
    assert.ok(named, `${f} names its secrets`);
    const used = [...new Set([...text.replace(/#.*$/gm, '').matchAll(/\$\{([A-Za-z_]\w*)\}/g)].map((m) => m[1]))];
    assert.deepEqual([...named].sort(), used.sort(), `${f}: the list is the secrets the file references`);
    const parse = f.startsWith('hub') ? parseHubConfig : parseAgentConfig;
    const env = Object.fromEntries(named.map((n) => [n, 'any']));
    assert.doesNotThrow(() => parse(text, file, { env, readFile: () => 'x' }), f);
    const unset = messageOf(() => parse(text, file, { env: {}, readFile: () => 'x' }));
    for (const n of named) assert.match(unset, new RegExp(`environment variable ${n} is not set`), f);
  }
});
