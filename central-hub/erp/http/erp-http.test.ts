import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { ErpError } from '../erp-adapter.ts';
import { CookieJar, ErpHttpClient, excerpt, jsonBody, retryAfterMs } from './erp-http.ts';

async function erpError(p: Promise<unknown>): Promise<ErpError> {
  try {
    assert.fail(`expected an ErpError, got ${JSON.stringify(await p)}`);
  } catch (err) {
    if (!(err instanceof ErpError)) throw err;
    return err;
  }
}

void describe('ErpHttpClient: was anything sent?', () => {
  let server: Server;
  let url: string;
  before(async () => {
    // /hang never answers; /ok answers at once
    server = createServer((req, res) => {
      req.resume();
      if (req.url === '/ok') res.end('{}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });

  void it('a POST that timed out after sending is ERP_IN_DOUBT; a GET is UPSTREAM_UNAVAILABLE', async () => {
    const http = new ErpHttpClient({ maxSockets: 4 });
    try {
      const post = await erpError(http.request({ method: 'POST', url: `${url}/hang`, body: '{}', timeoutMs: 150, maxResponseBytes: 1000, mutating: true }));
      assert.equal(post.code, 'ERP_IN_DOUBT');
      const get = await erpError(http.request({ method: 'GET', url: `${url}/hang`, timeoutMs: 150, maxResponseBytes: 1000, mutating: false }));
      assert.equal(get.code, 'UPSTREAM_UNAVAILABLE');
    } finally {
      http.close();
    }
  });

  void it('a POST that timed out while queued for a connection was never sent: UPSTREAM_UNAVAILABLE', async () => {
    const http = new ErpHttpClient({ maxSockets: 1 });
    try {
      const first = http.request({ method: 'POST', url: `${url}/hang`, body: '{}', timeoutMs: 400, maxResponseBytes: 1000, mutating: true });
      const queued = await erpError(http.request({ method: 'POST', url: `${url}/ok`, body: '{}', timeoutMs: 150, maxResponseBytes: 1000, mutating: true }));
      assert.equal(queued.code, 'UPSTREAM_UNAVAILABLE');
      assert.equal((await erpError(first)).code, 'ERP_IN_DOUBT');
    } finally {
      http.close();
    }
  });

  void it('an aborted signal before the call is UPSTREAM_UNAVAILABLE', async () => {
    const http = new ErpHttpClient({ maxSockets: 1 });
    try {
      const e = await erpError(http.request({ method: 'POST', url: `${url}/ok`, body: '{}', timeoutMs: 1000, maxResponseBytes: 1000, mutating: true, signal: AbortSignal.abort() }));
      assert.equal(e.code, 'UPSTREAM_UNAVAILABLE');
    } finally {
      http.close();
    }
  });
});

void describe('erp-http helpers', () => {
  void it('Retry-After: seconds, an HTTP date, or nothing usable', () => {
    assert.equal(retryAfterMs({ 'retry-after': '7' }), 7000);
    assert.equal(retryAfterMs({ 'retry-after': new Date(10_000).toUTCString() }, 4000), 6000);
    assert.equal(retryAfterMs({ 'retry-after': 'soon' }), undefined);
    assert.equal(retryAfterMs({}), undefined);
  });

  void it('the cookie jar keeps name=value pairs and drops expired ones', () => {
    const jar = new CookieJar();
    jar.store({ 'set-cookie': ['SAP_SESSIONID_X_100=abc; path=/; HttpOnly', 'sap-usercontext=sap-client=100; path=/'] });
    assert.equal(jar.header(), 'SAP_SESSIONID_X_100=abc; sap-usercontext=sap-client=100');
    jar.store({ 'set-cookie': ['SAP_SESSIONID_X_100=; Max-Age=0'] });
    assert.equal(jar.header(), 'sap-usercontext=sap-client=100');
  });

  void it('JSON only when labelled JSON, complete and not truncated; excerpts are short and single-line', () => {
    const res = (ct: string, body: string, truncated = false) => ({ status: 200, headers: { 'content-type': ct }, body: Buffer.from(body), truncated });
    assert.deepEqual(jsonBody(res('application/json; charset=utf-8', '{"a":1}')), { a: 1 });
    assert.equal(jsonBody(res('text/plain', '{"a":1}')), undefined);
    assert.equal(jsonBody(res('application/json', '{"a":')), undefined);
    assert.equal(jsonBody(res('application/json', '{"a":1}', true)), undefined);
    assert.equal(excerpt(`<html>\n${'x'.repeat(500)}</html>`, 20), '<html> xxxxxxxxxxxxx…');
  });
});
