import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { parseConfig, signalSchema } from '../../../contracts/index.ts';
import { opcuaConfigSchema } from './config.ts';
import { overflowOf, qualityOf, staleSignal, toSignal, variantToValue } from './values.ts';

const sc = (value: number, name = 'X') => ({ value, name, toString: () => name });

void describe('opcua value conversion', () => {
  void test('quality from the status code severity, overflow from the info bits', () => {
    assert.equal(qualityOf(sc(0)), 'good');
    assert.equal(qualityOf(sc(0x40920000)), 'uncertain');
    assert.equal(qualityOf(sc(0x80340000)), 'bad');
    assert.equal(qualityOf(undefined), 'good');
    assert.equal(overflowOf(sc(0x00000480)), true);
    assert.equal(overflowOf(sc(0x00000400)), false);
  });

  void test('values: numbers, 64-bit integers as numbers when safe else strings, strings, booleans, arrays', () => {
    assert.equal(variantToValue({ dataType: 7, value: 4294967295 }), 4294967295);
    assert.equal(variantToValue({ dataType: 11, value: 1.5 }), 1.5);
    assert.equal(variantToValue({ dataType: 9, value: [0, 42] }), 42);
    assert.equal(variantToValue({ dataType: 9, value: [0xffffffff, 0xffffffff] }), '18446744073709551615');
    assert.equal(variantToValue({ dataType: 8, value: [0xffffffff, 0xfffffffe] }), -2);
    assert.equal(variantToValue({ dataType: 8, value: [0x80000000, 0] }), '-9223372036854775808');
    assert.equal(variantToValue({ dataType: 12, value: '1000123/0010' }), '1000123/0010');
    assert.equal(variantToValue({ dataType: 1, value: true }), true);
    assert.equal(variantToValue({ dataType: 13, value: new Date('2026-01-01T00:00:00Z') }), '2026-01-01T00:00:00.000Z');
    assert.equal(variantToValue({ dataType: 21, value: { text: 'Running' } }), 'Running');
    assert.equal(variantToValue({ dataType: 0, value: null }), null);
    assert.deepEqual(variantToValue({ dataType: 6, arrayType: 1, value: new Int32Array([1, 2]) }), { array: [1, 2] });
    // a null array (length -1 on the wire) is no value, not a crash
    assert.equal(variantToValue({ dataType: 7, arrayType: 1, value: null }), null);
    assert.equal(variantToValue({ dataType: 11, value: Number.NaN }), 'NaN');
  });

  void test('a signal: sourceTimestamp first, then serverTimestamp, then receive time; a valid Signal with a time-ordered sourceId', () => {
    const receivedAt = new Date('2026-11-27T10:00:01.000Z');
    const s = toSignal({
      source: 'line1-plc',
      ref: 'good',
      receivedAt,
      dataValue: {
        value: { dataType: 7, value: 120 },
        statusCode: sc(0, 'Good'),
        sourceTimestamp: new Date('2026-11-27T10:00:00.500Z'),
        serverTimestamp: new Date('2026-11-27T10:00:00.600Z'),
      },
    });
    assert.deepEqual(signalSchema.parse(s), s);
    assert.equal(s.sourceTime, '2026-11-27T10:00:00.500Z');
    assert.equal(s.sourceId, 'line1-plc/good/2026-11-27T10:00:00.500Z/120');
    assert.deepEqual(s.meta, { statusCode: 'Good', serverTimestamp: '2026-11-27T10:00:00.600Z', overflow: false });
    const noSource = toSignal({ source: 'p', ref: 'r', receivedAt, dataValue: { value: { dataType: 7, value: 1 }, serverTimestamp: new Date('2026-11-27T10:00:00.600Z'), sourceTimestamp: new Date(Date.UTC(1601, 0, 1)) } });
    assert.equal(noSource.sourceTime, '2026-11-27T10:00:00.600Z');
    const none = toSignal({ source: 'p', ref: 'r', receivedAt, dataValue: { value: { dataType: 7, value: 1 } } });
    assert.equal(none.sourceTime, receivedAt.toISOString());
    const bad = toSignal({ source: 'p', ref: 'r', receivedAt, dataValue: { value: null, statusCode: sc(0x80340000, 'BadNodeIdUnknown') } });
    assert.equal(bad.quality, 'bad');
    assert.equal(bad.sourceId, `p/r/${receivedAt.toISOString()}/BadNodeIdUnknown:null`);
    const long = toSignal({ source: 'p', ref: 'r', receivedAt, dataValue: { value: { dataType: 12, value: 'x'.repeat(5000) } } });
    assert.ok(long.sourceId.length < 200);
    assert.deepEqual(signalSchema.parse(staleSignal('p', 'r', receivedAt, 'BadNoCommunication')).meta?.stale, true);
  });
});

void describe('opcua config', () => {
  const base = { type: 'opcua', name: 'line1-plc', endpoint: 'opc.tcp://plc:4840', nodes: [{ ref: 'good', nodeId: 'ns=1;s=A' }] };
  void test('secure by default; insecure only with allowInsecure', () => {
    const c = opcuaConfigSchema.parse(base);
    assert.equal(c.securityMode, 'SignAndEncrypt');
    assert.equal(c.securityPolicy, 'Basic256Sha256');
    assert.equal(c.reconnectMaxDelay, 2000);
    assert.throws(() => opcuaConfigSchema.parse({ ...base, securityMode: 'None', securityPolicy: 'None' }), /allowInsecure/);
    assert.throws(() => opcuaConfigSchema.parse({ ...base, securityPolicy: 'Basic256' }), /allowInsecure/);
    opcuaConfigSchema.parse({ ...base, securityMode: 'None', securityPolicy: 'None', allowInsecure: true });
  });
  void test('each node has exactly one of nodeId or browsePath, unique refs', () => {
    assert.throws(() => opcuaConfigSchema.parse({ ...base, nodes: [{ ref: 'a' }] }), /exactly one of nodeId or browsePath/);
    assert.throws(() => opcuaConfigSchema.parse({ ...base, nodes: [{ ref: 'a', nodeId: 'ns=1;s=A' }, { ref: 'a', nodeId: 'ns=1;s=B' }] }), /duplicate ref/);
  });

  void test('a percent deadband is 0..100; an absolute one any non-negative number', () => {
    const node = (deadband: object) => ({ ...base, nodes: [{ ref: 'a', nodeId: 'ns=1;s=A', deadband }] });
    assert.throws(() => opcuaConfigSchema.parse(node({ type: 'percent', value: 150 })), /percent deadband is a share of the EURange: 0 to 100/);
    assert.doesNotThrow(() => opcuaConfigSchema.parse(node({ type: 'percent', value: 100 })));
    assert.doesNotThrow(() => opcuaConfigSchema.parse(node({ type: 'absolute', value: 150 })));
  });

  void test('example.yaml is a valid driver entry', () => {
    const c = parseConfig(opcuaConfigSchema, parse(readFileSync(join(import.meta.dirname, 'example.yaml'), 'utf8')));
    assert.equal(c.nodes.length, 4);
    assert.equal(c.user.type, 'username');
  });
});
