import assert from 'node:assert/strict';
import { test } from 'node:test';
import { monitorHub } from '../monitor/test-kit.ts';

/**
 * /v1/monitor/* against broken, hostile and oversized query strings: a 400 SCHEMA_INVALID with the
 * correlation id, never a 500, never the input echoed as markup (the table grows with each route).
 */
test('monitor APIs answer hostile query strings with a 400 and a stable code', async (t) => {
  const { hub, stop } = await monitorHub();
  t.after(stop);
  const bad: Array<[string, string]> = [
    ['unknown parameter', '/v1/monitor/sla?admin=1'],
    ['unknown kind', '/v1/monitor/sla?kind=%3Cscript%3Ealert(1)%3C%2Fscript%3E'],
    ['repeated plant', '/v1/monitor/sla?plant=A&plant=B'],
    ['empty plant', '/v1/monitor/sla?plant='],
    ['oversized plant', `/v1/monitor/sla?plant=${'p'.repeat(5000)}`],
    ['negative limit', '/v1/monitor/sla?limit=-1'],
    ['zero limit', '/v1/monitor/sla?limit=0'],
    ['limit too large', '/v1/monitor/sla?limit=100000'],
    ['limit in exponent form', '/v1/monitor/sla?limit=1e3'],
    ['limit in hex', '/v1/monitor/sla?limit=0x10'],
    ['limit not a number', '/v1/monitor/sla?limit=abc'],
    ['fractional offset', '/v1/monitor/sla?offset=1.5'],
    ['huge offset', '/v1/monitor/sla?offset=99999999999999999999'],
    ['__proto__ parameter', '/v1/monitor/sla?__proto__=x'],
    ['constructor parameter', '/v1/monitor/sla?constructor[prototype][x]=1'],
    ['released: unknown state', '/v1/monitor/released-not-started?state=%3Cscript%3E'],
    ['released: unknown parameter', '/v1/monitor/released-not-started?order=1'],
    ['released: oversized plant', `/v1/monitor/released-not-started?plant=${'p'.repeat(100)}`],
    ['released: limit not a number', '/v1/monitor/released-not-started?limit=NaN'],
    ['reconciliation: unknown parameter', '/v1/monitor/reconciliation?status=drift'],
    ['reconciliation: oversized order', `/v1/monitor/reconciliation?order=${'o'.repeat(65)}`],
    ['reconciliation: empty order', '/v1/monitor/reconciliation?order='],
    ['reconciliation: offset too large', '/v1/monitor/reconciliation?offset=1000001'],
    ['released: repeated state', '/v1/monitor/released-not-started?state=late&state=started'],
  ];
  for (const [name, url] of bad) {
    const res = await hub.app.inject({ method: 'GET', url });
    assert.equal(res.statusCode, 400, `${name}: ${res.statusCode} ${res.body.slice(0, 200)}`);
    const e = (res.json() as { error: { code: string; correlationId?: string } }).error;
    assert.equal(e.code, 'SCHEMA_INVALID', name);
    assert.ok(e.correlationId, `${name}: carries a correlation id`);
    assert.ok(!res.body.includes('<script>'), `${name}: input is not echoed as markup`);
  }
  const ok = await hub.app.inject({ method: 'GET', url: '/v1/monitor/sla?plant=%F0%9F%8F%AD&kind=latency&limit=1000&offset=0' });
  assert.equal(ok.statusCode, 200, ok.body);
  assert.deepEqual((ok.json() as { breaches: unknown[] }).breaches, []);
  assert.equal(({} as Record<string, unknown>).x, undefined, 'no prototype pollution');
});
