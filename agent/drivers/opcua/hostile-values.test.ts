import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { DataType, StatusCodes, Variant, VariantArrayType, type UAVariable } from 'node-opcua';
import { create } from './opcua-driver.ts';
import { opcuaConfig, testCtx, waitFor } from './test-kit.ts';
import { startTestServer } from './test-server.ts';

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

void test('a null array from the server (legal OPC UA) neither crashes the agent nor stops the other values', async () => {
  let arr!: UAVariable;
  let marker!: UAVariable;
  const srv = await startTestServer({
    minSupportedSampleRate: 0,
    populate(ns, addressSpace) {
      arr = ns.addVariable({ organizedBy: addressSpace.rootFolder.objects, browseName: 'Arr', nodeId: 's=Arr', dataType: 'UInt32', valueRank: 1, minimumSamplingInterval: 0 });
      marker = ns.addVariable({ organizedBy: addressSpace.rootFolder.objects, browseName: 'Marker', nodeId: 's=Marker', dataType: 'UInt32', minimumSamplingInterval: 0 });
    },
  });
  cleanups.push(() => srv.stop());
  arr.setValueFromSource(new Variant({ dataType: DataType.UInt32, arrayType: VariantArrayType.Array, value: [1, 2] }), StatusCodes.Good, new Date());
  const mark = (value: number) => marker.setValueFromSource(new Variant({ dataType: DataType.UInt32, value }), StatusCodes.Good, new Date());
  mark(0);
  const t = testCtx();
  cleanups.push(() => t.close());
  const driver = create(
    opcuaConfig({ endpoint: srv.endpoint, nodes: [{ ref: 'arr', nodeId: 'ns=1;s=Arr', samplingInterval: 0 }, { ref: 'marker', nodeId: 'ns=1;s=Marker', samplingInterval: 0 }] }),
    t.ctx,
  );
  await driver.start();
  cleanups.push(() => driver.stop());
  const values = (ref: string) => t.committed.filter((s) => s.ref === ref).map((s) => s.value);
  await waitFor('initial values', () => values('arr').length === 1 && values('marker').length === 1);
  // the array becomes a null array, and the marker changes in the same moment
  arr.setValueFromSource(new Variant({ dataType: DataType.UInt32, arrayType: VariantArrayType.Array, value: null as never }), StatusCodes.Good, new Date());
  mark(1);
  await waitFor('the null array and the marker', () => values('arr').length === 2 && values('marker').includes(1));
  assert.deepEqual(values('arr'), [{ array: [1, 2] }, null]);
  mark(2);
  await waitFor('values go on', () => values('marker').includes(2));
  assert.equal(driver.health().state, 'up');
});
