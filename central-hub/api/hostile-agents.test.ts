import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { Agent as HttpsAgent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { schemaId, ulid, type Transaction } from '../../contracts/index.ts';
import { parseHubConfig } from '../config/load.ts';
import { deadLettersCommand } from '../dead-letters-cli.ts';
import type { ErpAdapter } from '../erp/erp-adapter.ts';
import { confirmation } from '../erp/test-kit/transactions.ts';
import type { HubStore } from '../store/hub-store.ts';
import { pgSchemaForTest } from '../store/postgres/pg-test-kit.ts';
import { heartbeatOf, makeTestPki, removeDir, startTestHub, type TestHub, type TestPki } from './test-hub.ts';

/**
 * Issue #22, each finding reproduced against a TLS hub with two agents, of plants 1010 and 2020, on both
 * stores: the status, the code, the audit row, and that nothing of the other plant changed.
 */

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

/** one HTTPS request trusting the test CA (and presenting a client certificate when given) */
function call(url: string, init: { method?: string; headers?: Record<string, string>; body?: string | Buffer; agent: HttpsAgent }): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: init.method ?? 'GET', headers: init.headers ?? {}, agent: init.agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

const batchOf = (agentId: string, items: unknown[]) => ({ schema: schemaId('ingest-batch', 1, 0), batchId: ulid(), agentId, sentAt: new Date().toISOString(), items });

/** an ERP that posts everything, except orders starting EVIL: refused with a reason full of terminal controls */
function hostileErp(): ErpAdapter & { posted: Transaction[] } {
  const posted: Transaction[] = [];
  return {
    name: 'test',
    posted,
    post: async (tx) => {
      if (tx.data.order.startsWith('EVIL')) return { status: 'rejected', code: 'ERP_BUSINESS', reason: 'order closed\r\nX-Injected: 1\x1b[2J\x1b[31mRED\u202eevil\u009b' };
      posted.push(tx);
      return { status: 'posted', erpRef: `DOC-${posted.length}` };
    },
    lookup: async () => ({ found: false }),
    healthcheck: async () => ({ ok: true }),
  };
}

async function until<T>(what: string, f: () => Promise<T | undefined | false>): Promise<T> {
  // a condition, not a clock: polled until it holds (the suite's timeout bounds it)
  for (;;) {
    const v = await f();
    if (v) return v;
    await new Promise((r) => setImmediate(r));
  }
}

const OPERATOR = 'operator-token-0123456789abcdef';
let pki: TestPki;

before(() => {
  pki = makeTestPki();
});
after(() => removeDir(pki.dir));

for (const kind of ['sqlite', 'postgres'] as const) {
  void describe(`hostile agents on a TLS hub (${kind} store, plants 1010 and 2020)`, () => {
    let t: TestHub | undefined;
    let skip: string | undefined;
    let drop: (() => Promise<void>) | undefined;
    let erp: ReturnType<typeof hostileErp>;
    let agent: HttpsAgent;
    let stateDir: string;
    const tok: Record<string, string> = {};
    const hub = () => t!;
    const send = (path: string, body: unknown, token: string | undefined, headers: Record<string, string> = {}) =>
      call(`${hub().url}${path}`, {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
        body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
      });
    const get = (path: string, token?: string) => call(`${hub().url}${path}`, { agent, headers: token ? { authorization: `Bearer ${token}` } : {} });
    const lastAudit = async (action: string) => (await hub().hub.store.listAudit(50)).find((e) => e.action === action);
    /** plant 2020's transactions as they stand: no case may change them */
    const plant2020 = async () => (await hub().hub.store.listTransactions({ limit: 1000, plant: '2020' })).map((r) => ({ key: r.idempotencyKey, agent: r.agentId, state: r.state, qty: r.quantity }));

    before(async () => {
      let store: HubStore | undefined;
      if (kind === 'postgres') {
        const pg = await pgSchemaForTest();
        if ('skip' in pg) {
          skip = pg.skip;
          return;
        }
        store = pg.open();
        drop = pg.drop;
      }
      erp = hostileErp();
      // the state folder does not exist yet: the store creates it (0700, files 0600)
      stateDir = join(mkdtempSync(join(tmpdir(), 'pb-hostile-agents-')), 'state');
      t = await startTestHub({ dir: stateDir, tls: { cert: pki.serverCert, key: pki.serverKey }, adapter: erp, operatorToken: OPERATOR, ...(store ? { store } : {}) });
      agent = new HttpsAgent({ ca: readFileSync(pki.caCert, 'utf8'), keepAlive: true });
      tok.a = await t.addAgent('agent-a', ['1010']);
      tok.b = await t.addAgent('agent-b', ['2020']);
      tok.c = await t.addAgent('agent-c', ['1010']);
    });
    after(async () => {
      agent?.destroy();
      await t?.stop();
      await drop?.();
      if (t) removeDir(join(stateDir, '..'));
    });

    void it("1. key squatting: A's items carrying B's future keys are refused and A is audited; B's real ones are stored and posted for 2020", async (c) => {
      if (skip) return c.skip(skip);
      const bReal = Array.from({ length: 12 }, (_, i) => confirmation('1071173', i, { plant: '2020', agentId: 'agent-b', qty: 50 }));
      const squat = bReal.map((b, i) => ({ ...confirmation('1071173', i, { plant: '1010', agentId: 'agent-a', qty: 50 }), idempotencyKey: b.idempotencyKey }));
      const r = await send('/v1/ingest', batchOf('agent-a', squat), tok.a);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(new Set(r.json.results.map((x: any) => `${x.status}/${x.code}`)), new Set(['rejected/PLANT_MISMATCH']));
      assert.match(r.json.results[0].reason, /must start with the item's plant "1010:"/);
      const row = await lastAudit('ingest.key_outside_plant');
      assert.equal(row?.actor, 'agent:agent-a', 'the sender of the clash is audited');
      assert.equal((row!.detail as { items: number }).items, 12);
      for (const b of bReal) assert.equal(await hub().hub.store.getTransaction(b.idempotencyKey), undefined, 'nothing stored under 1010');

      const rb = await send('/v1/ingest', batchOf('agent-b', bReal), tok.b);
      assert.equal(rb.status, 200, rb.text);
      assert.deepEqual(rb.json.results.map((x: any) => x.status), Array(12).fill('accepted'));
      await until('B posted', async () => (await plant2020()).filter((x) => x.state === 'posted').length === 12);
      for (const b of bReal) {
        const tx = await hub().hub.store.getTransaction(b.idempotencyKey);
        assert.deepEqual([tx?.plant, tx?.agentId, tx?.state], ['2020', 'agent-b', 'posted']);
      }
      assert.ok(!(await hub().hub.store.listAudit(100)).some((e) => e.actor === 'agent:agent-b'), 'B is not blamed');
    });

    void it('2. poison input: NUL, CR/LF, ESC, C1, bidi overrides and lone surrogates are refused per item naming the field; never a 500; the good item is stored', async (c) => {
      if (skip) return c.skip(skip);
      const before2020 = await plant2020();
      const good = confirmation('2000001', 1, { agentId: 'agent-a' });
      const poison: Array<[string, (tx: any) => void, RegExp]> = [
        ['NUL in the order', (tx) => (tx.data.order = '4711\u0000'), /data\.order: contains U\+0000 at position 4/],
        ['CR/LF in the work center', (tx) => (tx.workCenter = 'WC\r\nX: 1'), /workCenter: contains U\+000D/],
        ['ESC in the material', (tx) => (tx.data.material = 'M\x1b[31m'), /data\.material: contains U\+001B/],
        ['C1 CSI in the unit', (tx) => (tx.data.yield.uom = 'E\u009bA'), /data\.yield\.uom: contains U\+009B/],
        ['bidi override in the source ref', (tx) => (tx.source.ref = 'good\u202eevil'), /source\.ref: contains U\+202E/],
        ['lone surrogate in the correlation id', (tx) => (tx.correlationId = 'order:\ud800'), /correlationId: contains U\+D800/],
        ['NUL in the idempotency key', (tx) => (tx.idempotencyKey = `${tx.idempotencyKey}\u0000`), /idempotencyKey: contains U\+0000/],
      ];
      const items = poison.map(([, edit], i) => {
        const tx = confirmation('2000001', 10 + i, { agentId: 'agent-a' }) as any;
        edit(tx);
        return tx;
      });
      const r = await send('/v1/ingest', batchOf('agent-a', [good, ...items]), tok.a);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.results[0].status, 'accepted');
      poison.forEach(([name, , reason], i) => {
        const res = r.json.results[i + 1];
        assert.equal(`${res.status}/${res.code}`, 'rejected/SCHEMA_INVALID', name);
        assert.match(res.reason, reason, name);
      });
      // (a NUL key cannot even be looked up on PostgreSQL: the rows of these orders are counted instead)
      const stored = (await hub().hub.store.listTransactions({ limit: 1000, plant: '1010' })).filter((x) => x.order === '2000001' || x.order.startsWith('4711'));
      assert.deepEqual(stored.map((x) => x.idempotencyKey), [good.idempotencyKey], 'only the good item is stored');

      // the same rule in heartbeats: a 400 naming the field, not a 500 from PostgreSQL
      const hb = await send('/v1/heartbeat', heartbeatOf('agent-a', '1010', { configVersion: 'v1\u0000' }), tok.a);
      assert.equal(hb.status, 400, hb.text);
      assert.equal(hb.json.error.code, 'SCHEMA_INVALID');
      assert.match(hb.json.error.message, /configVersion: contains U\+0000/);
      const hbMsg = await send('/v1/heartbeat', heartbeatOf('agent-a', '1010', { drivers: [{ name: 'plc', type: 'opcua', state: 'down', since: new Date().toISOString(), message: 'x\x1b[2J' }] }), tok.a);
      assert.equal(hbMsg.status, 400);
      assert.match(hbMsg.json.error.message, /drivers\[0\]\.message: contains U\+001B/);
      assert.deepEqual(await plant2020(), before2020, 'plant 2020 unchanged');
    });

    void it("2b. an ERP refusal full of terminal controls: stored as given, and the CLI prints it escaped", async (c) => {
      if (skip) return c.skip(skip);
      const evil = confirmation('EVIL-1', 1, { agentId: 'agent-a' });
      assert.equal((await send('/v1/ingest', batchOf('agent-a', [evil]), tok.a)).json.results[0].status, 'accepted');
      const row = await until('dead-lettered', async () => {
        const tx = await hub().hub.store.getTransaction(evil.idempotencyKey);
        return tx?.state === 'failed' ? tx : undefined;
      });
      assert.ok((row.errorMessage ?? '').includes('\x1b[2J'), 'the store keeps what the ERP said');
      if (kind !== 'sqlite') return; // the CLI opens the configured store; the PostgreSQL one here lives in a test schema
      const { config } = parseHubConfig(`hub: { dataDir: ${stateDir} }\nerp: { type: sap-odata, url: "http://127.0.0.1:9", auth: { type: basic, username: u, password: "\${PW}" } }\n`, join(stateDir, 'hub.yaml'), { env: { PW: 'x' }, readFile: () => '' });
      const printed: string[] = [];
      const write = process.stdout.write;
      process.stdout.write = ((s: string) => printed.push(String(s)) > 0) as typeof process.stdout.write;
      try {
        assert.equal(await deadLettersCommand(config, 'list', undefined, {}), 0);
        assert.equal(await deadLettersCommand(config, 'list', undefined, { json: true }), 0);
        assert.equal(await deadLettersCommand(config, 'show', evil.idempotencyKey, {}), 0);
      } finally {
        process.stdout.write = write;
      }
      const out = printed.join('');
      assert.match(out, /EVIL-1/);
      assert.match(out, /\\x1b\[2J/, 'ESC shown as \\x1b');
      // eslint-disable-next-line no-control-regex -- the point: none of these reaches the terminal raw
      assert.doesNotMatch(out, /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]/, 'no raw control characters');
      assert.doesNotMatch(out.split('\n').find((l) => l.includes('EVIL-1')) ?? '', /\r/);
    });

    void it('5. loose parsing: repeated, hex and oversized parameters, invalid UTF-8 and "__proto__" bodies are 400s naming the field; an agent naming another agent is audited', async (c) => {
      if (skip) return c.skip(skip);
      const before2020 = await plant2020();
      const expect400 = (r: Res, re: RegExp, what: string) => {
        assert.equal(r.status, 400, `${what}: ${r.status} ${r.text.slice(0, 200)}`);
        assert.equal(r.json.error.code, 'SCHEMA_INVALID', what);
        assert.match(r.json.error.message, re, what);
        assert.ok(r.json.error.correlationId, what);
      };
      expect400(await get('/v1/fleet/transactions?plant=1010&plant=2020'), /plant: given more than once/, 'repeated plant');
      expect400(await get('/v1/fleet/transactions?limit=1e3'), /limit: expected a whole number/, 'exponent limit');
      expect400(await get('/v1/fleet/transactions?colour=red'), /colour: unknown field/, 'unknown parameter');
      expect400(await get('/v1/agents/me/outcomes?since=999999999999999999', tok.a), /since: expected a cursor/, 'cursor past 2^53');
      const replay = await call(`${hub().url}/v1/admin/dead-letters/0x4e/replay`, { method: 'POST', agent, headers: { authorization: `Bearer ${OPERATOR}` } });
      expect400(replay, /seq: expected a positive whole number/, 'hex seq');
      // configVersion "\xff(": not UTF-8 (decoding it would store U+FFFD)
      const utf8 = Buffer.from(JSON.stringify(heartbeatOf('agent-a', '1010')).replace('"cfg-1"', '"@("'));
      utf8[utf8.indexOf('@(')] = 0xff;
      expect400(await send('/v1/heartbeat', utf8, tok.a), /not valid UTF-8/, 'heartbeat invalid UTF-8');
      expect400(await send('/v1/heartbeat', JSON.stringify(heartbeatOf('agent-a', '1010')).replace(/^\{/, '{"__proto__":{"x":1},'), tok.a), /__proto__: unknown field/, 'heartbeat __proto__');
      expect400(await send('/v1/enroll', `{"__proto__":{"x":1},"schema":"plantbridge.enroll-request/1.0","token":"${'t'.repeat(20)}"}`, undefined), /__proto__: unknown field/, 'enroll __proto__');

      expect400(await send('/v1/heartbeat', heartbeatOf('agent-b', '1010'), tok.a), /is not the sender/, 'heartbeat for another agent');
      assert.equal((await lastAudit('heartbeat.agent_mismatch'))?.actor, 'agent:agent-a');
      expect400(await send('/v1/ingest', batchOf('agent-b', [confirmation('3000001', 1, { agentId: 'agent-b' })]), tok.a), /does not match/, 'batch for another agent');
      assert.equal((await lastAudit('ingest.agent_mismatch'))?.actor, 'agent:agent-a');
      assert.deepEqual(await plant2020(), before2020, 'plant 2020 unchanged');
    });

    void it('3. (last: it spends the address budgets) rate limits on every route: heartbeats, outcomes, /metrics and fleet answer 429 with Retry-After; other agents are not affected; enroll refuses a big body before parsing it', async (c) => {
      if (skip) return c.skip(skip);
      const before2020 = await plant2020();
      const statuses = async (n: number, f: () => Promise<Res>) => {
        const out: Res[] = [];
        for (let i = 0; i < n; i++) out.push(await f());
        return out;
      };
      const limited = (rs: Res[], what: string, ok = [200]) => {
        const l = rs.filter((r) => r.status === 429);
        assert.ok(l.length > 0, `${what}: expected 429s, got ${[...new Set(rs.map((r) => r.status))].join(',')}`);
        assert.equal(l[0].json.error.code, 'RATE_LIMITED', what);
        assert.ok(Number(l[0].headers['retry-after']) >= 1, `${what}: Retry-After`);
        assert.ok(rs.every((r) => ok.includes(r.status) || r.status === 429), `${what}: only ${ok.join(', ')} or 429`);
        return l.length;
      };
      // per agent: C floods its heartbeats (5/s, burst 10); B's still pass
      const t0 = performance.now();
      const hb = await statuses(40, () => send('/v1/heartbeat', heartbeatOf('agent-c', '1010'), tok.c));
      const elapsedS = (performance.now() - t0) / 1000;
      limited(hb, 'heartbeat');
      assert.ok(hb.filter((r) => r.status === 200).length <= 10 + Math.ceil(elapsedS * 5) + 1, 'at most the burst and the rate got through');
      assert.equal((await send('/v1/heartbeat', heartbeatOf('agent-b', '2020'), tok.b)).status, 200, 'another agent is not limited');
      limited(await statuses(60, () => get('/v1/agents/me/outcomes?since=0', tok.c)), 'outcomes');
      limited(await statuses(15, () => get('/metrics')), '/metrics');
      limited(await statuses(300, () => get('/v1/fleet/agents')), 'fleet (default limit)');
      const m = await get('/v1/agents/me/outcomes?since=0', tok.b);
      assert.equal(m.status, 200, 'B still gets its outcomes');

      const big = await send('/v1/enroll', JSON.stringify({ schema: 'plantbridge.enroll-request/1.0', token: 'x'.repeat(100_000) }), undefined);
      assert.equal(big.status, 413);
      assert.equal(big.json.error.code, 'PAYLOAD_TOO_LARGE');
      assert.match(big.json.error.message, /4096 bytes/);
      limited(await statuses(15, () => send('/v1/enroll', { schema: 'plantbridge.enroll-request/1.0', token: `unknown-token-${ulid()}` }, undefined)), 'enroll', [401]);
      assert.deepEqual(await plant2020(), before2020, 'plant 2020 unchanged');
    });

    void it('6. file modes: the state folder the store created is 0700, hub.db and its -wal and -shm 0600', async (c) => {
      if (skip) return c.skip(skip);
      if (kind !== 'sqlite' || process.platform === 'win32') return c.skip('SQLite files on POSIX only');
      assert.equal(statSync(stateDir).mode & 0o777, 0o700);
      const files = readdirSync(stateDir).filter((f) => f.startsWith('hub.db'));
      assert.deepEqual(files.sort(), ['hub.db', 'hub.db-shm', 'hub.db-wal']);
      for (const f of files) assert.equal(statSync(join(stateDir, f)).mode & 0o777, 0o600, f);
    });
  });
}
