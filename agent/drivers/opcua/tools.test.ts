import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { startLineServer } from '../../../test/plant-sim/opcua-line-server.ts';
import { browse, checkLive, emitConfig, formatBrowse } from './index.ts';
import { opcuaConfigSchema } from './config.ts';
import { fastLine, opcuaConfig } from './test-kit.ts';

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

void describe('opcua browse, emit-config and check-config --live', async () => {
  const srv = await startLineServer({ params: fastLine });
  cleanups.push(() => srv.stop());
  const stateDir = mkdtempSync(join(tmpdir(), 'pb-opcua-tools-'));

  void test('browse shows the line with data types and access levels; emit-config gives a valid driver config', async () => {
    const nodes = await browse(srv.endpoint, { stateDir, depth: 3 });
    const line = nodes.find((n) => n.browseName === '1:Line1');
    assert.ok(line, 'Line1 under Objects');
    assert.equal(line.browsePath, '/Objects/1:Line1');
    const good = line.children?.find((n) => n.browseName === '1:GoodCount');
    assert.deepEqual(
      { nodeId: good?.nodeId, dataType: good?.dataType, nodeClass: good?.nodeClass, browsePath: good?.browsePath },
      { nodeId: 'ns=1;s=Line1.GoodCount', dataType: 'UInt32', nodeClass: 'Variable', browsePath: '/Objects/1:Line1/1:GoodCount' },
    );
    assert.ok(good?.access?.includes('CurrentRead'));
    const text = formatBrowse(nodes, false);
    assert.match(text, /^ {2}GoodCount {2}ns=1;s=Line1\.GoodCount {2}Variable {2}UInt32 {2}read/m);
    assert.deepEqual(JSON.parse(formatBrowse(nodes, true)), JSON.parse(JSON.stringify(nodes)));

    const yaml = emitConfig([line], { endpoint: srv.endpoint, name: 'line1-plc' });
    const drivers = parse(yaml);
    const cfg = opcuaConfigSchema.parse({ ...drivers[0], securityMode: 'None', securityPolicy: 'None', allowInsecure: true });
    assert.deepEqual(
      cfg.nodes.map((n) => [n.ref, n.nodeId, n.dataType]),
      [
        ['GoodCount', 'ns=1;s=Line1.GoodCount', 'UInt32'],
        ['ScrapCount', 'ns=1;s=Line1.ScrapCount', 'UInt32'],
        ['OrderNumber', 'ns=1;s=Line1.OrderNumber', 'String'],
      ],
    );
  });

  void test('check-config --live: verifies nodes exist with the expected type, and names the ones that do not', async () => {
    const good = await checkLive(
      opcuaConfig({
        endpoint: srv.endpoint,
        nodes: [
          { ref: 'good', nodeId: srv.nodeIds.good, dataType: 'UInt32' },
          { ref: 'order', browsePath: '/Objects/1:Line1/1:OrderNumber', dataType: 'String' },
        ],
      }),
      stateDir,
    );
    assert.equal(good.ok, true, good.lines.join('\n'));
    assert.equal(good.lines.length, 3);
    assert.match(good.lines[1], /^✓ line1-plc\/good \(ns=1;s=Line1.GoodCount\): UInt32 = \d+$/);

    const bad = await checkLive(
      opcuaConfig({
        endpoint: srv.endpoint,
        nodes: [
          { ref: 'good', nodeId: srv.nodeIds.good, dataType: 'Double' },
          { ref: 'gone', nodeId: 'ns=1;s=Line1.Nope' },
          { ref: 'lost', browsePath: '/Objects/1:Line1/1:Nope' },
        ],
      }),
      stateDir,
    );
    assert.equal(bad.ok, false);
    assert.match(bad.lines[1], /✗ line1-plc\/good .*data type is UInt32, config says Double/);
    assert.match(bad.lines[2], /✗ line1-plc\/gone .*BadNodeIdUnknown/);
    assert.match(bad.lines[3], /✗ line1-plc\/lost: browse path \/Objects\/1:Line1\/1:Nope not found/);
  });

  void test('check-config --live: an unreachable endpoint is a failed check, not a hang', async () => {
    const r = await checkLive(opcuaConfig({ endpoint: 'opc.tcp://127.0.0.1:1', nodes: [{ ref: 'a', nodeId: 'ns=1;s=A' }] }), stateDir);
    assert.equal(r.ok, false);
    assert.match(r.lines[0], /✗ line1-plc: cannot connect/);
  });
});
