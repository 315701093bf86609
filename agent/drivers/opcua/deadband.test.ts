import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { DataType, StatusCodes, Variant, type UAVariable } from 'node-opcua';
import { create } from './opcua-driver.ts';
import { opcuaConfig, testCtx, waitFor } from './test-kit.ts';
import { startTestServer } from './test-server.ts';

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/**
 * An AnalogItemType variable with EURange 0..1000 (10 % = 100, so a percent deadband sent as absolute
 * would show), a plain Double without EURange, and a UInt32 marker without deadband. All three have
 * MinimumSamplingInterval 0 and the server advertises MinSupportedSampleRate 0, so every write passes
 * the server's filter at once and in order: when the marker written after a value has arrived, that
 * value was judged by the filter.
 */
async function deadbandServer() {
  const vars: Record<'oven' | 'plain' | 'marker', UAVariable> = {} as never;
  const srv = await startTestServer({
    minSupportedSampleRate: 0,
    populate(ns, addressSpace) {
      const objects = addressSpace.rootFolder.objects;
      vars.oven = ns.addAnalogDataItem({
        organizedBy: objects,
        browseName: 'OvenTemp',
        nodeId: 's=OvenTemp',
        dataType: 'Double',
        engineeringUnitsRange: { low: 0, high: 1000 },
        minimumSamplingInterval: 0,
        value: new Variant({ dataType: DataType.Double, value: 500 }),
      } as any);
      vars.plain = ns.addVariable({ organizedBy: objects, browseName: 'Plain', nodeId: 's=Plain', dataType: 'Double', minimumSamplingInterval: 0 });
      vars.marker = ns.addVariable({ organizedBy: objects, browseName: 'Marker', nodeId: 's=Marker', dataType: 'UInt32', minimumSamplingInterval: 0 });
    },
  });
  cleanups.push(() => srv.stop());
  const set = (v: UAVariable, dataType: DataType, value: number) => v.setValueFromSource(new Variant({ dataType, value }), StatusCodes.Good, new Date());
  set(vars.plain, DataType.Double, 1);
  set(vars.marker, DataType.UInt32, 0);
  return { srv, vars, set };
}

void describe('opcua driver deadband', () => {
  void test('percent deadband on an AnalogItem with EURange: changes within 10 % of the range are not reported, larger ones are', async () => {
    const { srv, vars, set } = await deadbandServer();
    const t = testCtx();
    cleanups.push(() => t.close());
    const driver = create(
      opcuaConfig({
        endpoint: srv.endpoint,
        nodes: [
          { ref: 'oven', nodeId: 'ns=1;s=OvenTemp', samplingInterval: 0, deadband: { type: 'percent', value: 10 } },
          { ref: 'marker', nodeId: 'ns=1;s=Marker', samplingInterval: 0 },
        ],
      }),
      t.ctx,
    );
    await driver.start();
    cleanups.push(() => driver.stop());
    const oven = () => t.committed.filter((s) => s.ref === 'oven').map((s) => s.value);
    let mark = 0;
    /** writes the values, then the marker, and waits until the marker is committed: the values were judged */
    const step = async (values: number[]) => {
      for (const v of values) set(vars.oven, DataType.Double, v);
      set(vars.marker, DataType.UInt32, ++mark);
      await waitFor(`marker ${mark}`, () => t.committed.some((s) => s.ref === 'marker' && s.value === mark));
    };
    await waitFor('initial value', () => oven().length === 1);
    assert.equal(driver.health().state, 'up');

    await step([560, 440, 590, 410.5]); // all within 100 of 500 (but beyond an absolute 10)
    assert.deepEqual(oven(), [500], 'changes under 10 % of the EURange are not reported');
    await step([610]); // 110 from 500
    assert.deepEqual(oven(), [500, 610]);
    await step([650, 700, 520, 690]); // within 100 of the last reported 610
    assert.deepEqual(oven(), [500, 610]);
    await step([720, 600]); // 110 from 610, then 120 from 720
    assert.deepEqual(oven(), [500, 610, 720, 600]);
    assert.ok(t.committed.filter((s) => s.ref === 'oven').every((s) => s.quality === 'good'));
  });

  void test('percent deadband on a node without EURange: that item is reported bad by name, the others flow', async () => {
    const { srv, vars, set } = await deadbandServer();
    const t = testCtx();
    cleanups.push(() => t.close());
    const driver = create(
      opcuaConfig({
        endpoint: srv.endpoint,
        nodes: [
          { ref: 'plain', nodeId: 'ns=1;s=Plain', samplingInterval: 0, deadband: { type: 'percent', value: 10 } },
          { ref: 'oven', nodeId: 'ns=1;s=OvenTemp', samplingInterval: 0, deadband: { type: 'percent', value: 10 } },
          { ref: 'marker', nodeId: 'ns=1;s=Marker', samplingInterval: 0 },
        ],
      }),
      t.ctx,
    );
    await driver.start();
    cleanups.push(() => driver.stop());
    await waitFor('degraded', () => driver.health().state === 'degraded');
    // health turns degraded when the server refuses the item; its unmonitored mark commits a moment later
    await waitFor('the mark of the refused item', () => t.committed.some((s) => s.ref === 'plain'));
    const h = driver.health();
    assert.equal(
      h.message,
      '1 of 3 nodes bad: plain (BadMonitoredItemFilterUnsupported for ns=1;s=Plain: the server refused deadband percent 10 (a percent deadband needs an AnalogItem with an EURange))',
    );
    const bad = t.committed.filter((s) => s.ref === 'plain');
    assert.equal(bad.length, 1, 'one unmonitored mark for the refused item');
    assert.equal(bad[0].quality, 'bad');
    assert.match(String(bad[0].meta?.problem), /BadMonitoredItemFilterUnsupported/);
    assert.equal(driver.stats().itemsBad, 1);

    // the other items flow
    set(vars.oven, DataType.Double, 900);
    set(vars.marker, DataType.UInt32, 7);
    await waitFor('oven and marker flow', () => t.committed.some((s) => s.ref === 'oven' && s.value === 900) && t.committed.some((s) => s.ref === 'marker' && s.value === 7));
    set(vars.plain, DataType.Double, 2);
    set(vars.marker, DataType.UInt32, 8);
    await waitFor('marker 8', () => t.committed.some((s) => s.ref === 'marker' && s.value === 8));
    assert.equal(t.committed.filter((s) => s.ref === 'plain').length, 1, 'nothing from the refused item');
    assert.equal(driver.health().state, 'degraded');
  });
});
