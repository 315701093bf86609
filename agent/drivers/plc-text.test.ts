import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DataType } from 'node-opcua';
import { trimPlcPadding } from './plc-text.ts';
import { variantToValue } from './opcua/values.ts';
import { toValue } from './sparkplug/codec.ts';

test('NUL-padded PLC strings lose their padding in the OPC UA and Sparkplug B drivers; other NULs stay (the hub refuses them)', () => {
  assert.equal(trimPlcPadding('4711\0\0\0\0'), '4711');
  assert.equal(trimPlcPadding('\0\0'), '');
  assert.equal(trimPlcPadding('47\x0011'), '47\x0011', 'a NUL inside is not padding');
  assert.equal(trimPlcPadding('4711'), '4711');
  assert.equal(variantToValue({ dataType: DataType.String, value: `ORDER-4711${'\0'.repeat(30)}` } as never), 'ORDER-4711');
  assert.equal(toValue('String', `ORDER-4711${'\0'.repeat(30)}`), 'ORDER-4711');
  assert.equal(toValue('Text', 'A\0\0'), 'A');
});
