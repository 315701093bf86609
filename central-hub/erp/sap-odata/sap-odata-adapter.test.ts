import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { parseConfig, resolveSecrets, uuidv5, PlantBridgeError, type GoodsReceipt, type MaterialConsumption, type ProductionConfirmation } from '../../../contracts/index.ts';
import { erpConfigSchema } from '../config.ts';
import { ErpError, type ErpAdapter } from '../erp-adapter.ts';
import { createAdapter } from '../registry.ts';
import { sampleTransaction } from '../contract-suite.ts';
import { sapOdataConfigSchema } from './config.ts';
import { createSapOdataAdapter, sapConfirmationText, sapDate, sapHeaderText, sapOperation } from './sap-odata-adapter.ts';
import { SAP_SIM_CLIENT, SAP_SIM_USER, SAP_TOKEN_PATH, startSapSimulator, type SapSimulator } from './sap-simulator.ts';
import { sendJson, startSimServer } from '../sim-kit.ts';

const ctx = { attempt: 1 };
const env = { SAP_PASSWORD: SAP_SIM_USER.password, SAP_CLIENT_SECRET: SAP_SIM_CLIENT.clientSecret, WRONG: 'wrong' };

function basicAdapter(url: string, extra: Record<string, unknown> = {}, password = '${SAP_PASSWORD}'): ErpAdapter {
  const config = resolveSecrets(
    parseConfig(sapOdataConfigSchema, {
      type: 'sap-odata',
      url,
      client: '100',
      auth: { type: 'basic', username: SAP_SIM_USER.username, password },
      timeout: '2s',
      ...extra,
    }),
    { env, readFile: () => '' },
  );
  return createSapOdataAdapter(config);
}

function oauthAdapter(url: string, secret = '${SAP_CLIENT_SECRET}'): ErpAdapter {
  const config = resolveSecrets(
    parseConfig(erpConfigSchema, {
      type: 'sap-odata',
      url,
      auth: { type: 'oauth-client-credentials', tokenUrl: `${url}${SAP_TOKEN_PATH}`, clientId: SAP_SIM_CLIENT.clientId, clientSecret: secret },
    }),
    { env, readFile: () => '' },
  );
  return createAdapter(config);
}

async function erpError(p: Promise<unknown>): Promise<ErpError> {
  try {
    assert.fail(`expected an ErpError, got ${JSON.stringify(await p)}`);
  } catch (err) {
    if (!(err instanceof ErpError)) throw err;
    return err;
  }
}

void describe('sap-odata mapping', () => {
  void it('ExternalSystemConfirmation is UUIDv5 of the key; ConfirmationText fits 40 characters; header text fits 25', () => {
    const long = 'plant-01:WC-07:1000009:0010:ns=3;s=Line7.GoodCount:184200-184300';
    assert.equal(sapConfirmationText('short:key'), 'short:key');
    assert.equal(sapConfirmationText(long).length, 40);
    assert.notEqual(sapConfirmationText(long), sapConfirmationText(`${long}x`));
    assert.match(sapHeaderText(long), /^PB[0-9A-Z]{23}$/);
    assert.equal(sapHeaderText(long), sapHeaderText(long));
    assert.notEqual(sapHeaderText(long), sapHeaderText(`${long}x`));
    assert.equal(sapDate('2025-01-01'), '/Date(1735689600000)/');
    assert.equal(sapOperation('10'), '0010');
    assert.equal(sapOperation('0020'), '0020');
  });
});

void describe('sap-odata simulator with a state file (the demo keeps ./data/sap-simulator.json)', () => {
  void it('a restarted simulator keeps its documents and continues its number ranges', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'pb-sap-state-'));
    const stateFile = join(dir, 'sap-simulator.json');
    try {
      const refs: string[] = [];
      for (let run = 0; run < 2; run++) {
        const sim = await startSapSimulator({ stateFile });
        const adapter = basicAdapter(sim.url);
        try {
          assert.equal(sim.confirmations().length, run, 'the confirmation of the previous run is there');
          assert.equal(sim.materialDocuments().length, run, 'and its material document');
          for (const kind of ['ProductionConfirmation', 'MaterialConsumption'] as const) {
            const r = await adapter.post(sampleTransaction(kind), ctx);
            assert.equal(r.status, 'posted');
            refs.push((r as { erpRef: string }).erpRef);
          }
        } finally {
          await adapter.close?.();
          await sim.stop();
        }
      }
      const posted = refs;
      assert.equal(new Set(posted).size, 4, `no document number handed out twice: ${posted.join(', ')}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

void describe('sap-odata adapter against the simulator', () => {
  let sim: SapSimulator;
  let adapter: ErpAdapter;
  before(async () => {
    sim = await startSapSimulator();
    adapter = basicAdapter(sim.url);
  });
  after(async () => {
    await adapter.close?.();
    await sim.stop();
  });
  beforeEach(() => sim.clearFaults());

  void it('writes a confirmation as SAP expects and returns ConfirmationGroup/ConfirmationCount', async () => {
    const tx = sampleTransaction('ProductionConfirmation') as ProductionConfirmation;
    tx.data.operation = '10';
    tx.data.final = 'final';
    tx.data.postingDate = '2025-01-01';
    const r = await adapter.post(tx, ctx);
    assert.equal(r.status, 'posted');
    const c = sim.confirmations().at(-1)!;
    assert.equal((r as { erpRef: string }).erpRef, `${c.ConfirmationGroup}/${c.ConfirmationCount}`);
    assert.match((r as { erpRef: string }).erpRef, /^\d+\/\d+$/);
    assert.equal(c.ExternalSystemConfirmation, uuidv5(tx.idempotencyKey));
    assert.equal(c.ConfirmationText, sapConfirmationText(tx.idempotencyKey));
    assert.equal(c.OrderID, '1000009');
    assert.equal(c.OrderOperation, '0010');
    assert.equal(c.ConfirmationYieldQuantity, '100');
    assert.equal(c.ConfirmationScrapQuantity, '2');
    assert.equal(c.ConfirmationUnit, 'EA');
    assert.equal(c.FinalConfirmationType, 'X');
    assert.equal(c.PostingDate, '/Date(1735689600000)/');
    // a second confirmation on the same operation counts up in the same group
    const r2 = await adapter.post(sampleTransaction('ProductionConfirmation'), ctx);
    assert.equal((r2 as { erpRef: string }).erpRef, `${c.ConfirmationGroup}/${Number(c.ConfirmationCount) + 1}`);
  });

  void it('writes consumption as 261/code 03, a reversal as 262, a receipt as 101/code 02; erpRef is document/year', async () => {
    const mc = sampleTransaction('MaterialConsumption') as MaterialConsumption;
    const rev = sampleTransaction('MaterialConsumption') as MaterialConsumption;
    rev.data.movement = 'reversal';
    const gr = sampleTransaction('GoodsReceipt') as GoodsReceipt;
    const refs = [];
    for (const tx of [mc, rev, gr]) {
      const r = await adapter.post(tx, ctx);
      assert.equal(r.status, 'posted');
      refs.push((r as { erpRef: string }).erpRef);
    }
    const docs = sim.materialDocuments().slice(-3);
    assert.deepEqual(
      docs.map((d) => [d.GoodsMovementCode, d.items[0].GoodsMovementType, d.items[0].ManufacturingOrder, d.MaterialDocumentHeaderText]),
      [
        ['03', '261', '1000009', sapHeaderText(mc.idempotencyKey)],
        ['03', '262', '1000009', sapHeaderText(rev.idempotencyKey)],
        ['02', '101', '1000009', sapHeaderText(gr.idempotencyKey)],
      ],
    );
    assert.deepEqual(refs, docs.map((d) => `${d.MaterialDocument}/${d.MaterialDocumentYear}`));
    assert.equal(docs[0].items[0].QuantityInEntryUnit, '12.5');
    assert.equal(docs[0].items[0].Batch, 'B42');
  });

  void it('fetches the CSRF token once, and again only after it expired (the posting is not lost or doubled)', async () => {
    const before = sim.stats().csrfFetches;
    for (let i = 0; i < 5; i++) assert.equal((await adapter.post(sampleTransaction('ProductionConfirmation'), ctx)).status, 'posted');
    assert.ok(sim.stats().csrfFetches - before <= 1);
    sim.expireCsrfTokens();
    const tx = sampleTransaction('ProductionConfirmation');
    const rejections = sim.stats().csrfRejections;
    assert.equal((await adapter.post(tx, ctx)).status, 'posted');
    assert.equal(sim.stats().csrfRejections, rejections + 1);
    assert.equal(sim.confirmations().filter((c) => c.ExternalSystemConfirmation === uuidv5(tx.idempotencyKey)).length, 1);
  });

  void it('a token refused even after a refetch is UPSTREAM_UNAVAILABLE with erpCode CSRF', async () => {
    // a proxy that strips cookies: every token is refused
    const stripped = basicAdapter(sim.url);
    sim.expireCsrfTokens();
    const orig = sim.stats().csrfRejections;
    const expireAll = setInterval(() => sim.expireCsrfTokens(), 1);
    try {
      sim.setLatency(5);
      const e = await erpError(stripped.post(sampleTransaction('ProductionConfirmation'), ctx));
      assert.equal(e.code, 'UPSTREAM_UNAVAILABLE');
      assert.equal(e.erpCode, 'CSRF');
      assert.ok(sim.stats().csrfRejections >= orig + 2);
    } finally {
      clearInterval(expireAll);
      sim.setLatency(0);
      await stripped.close?.();
    }
  });

  void it('a lock reported as a 400 with M3/897 is transient; a Gateway framework 400 is not dead-lettered', async () => {
    sim.setFault({ kind: 'lock', status: 400 });
    const e = await erpError(adapter.post(sampleTransaction('MaterialConsumption'), ctx));
    assert.equal(e.code, 'UPSTREAM_UNAVAILABLE');
    assert.equal(e.erpCode, 'M3/897');
    // a Gateway framework error (/IWFND/, /IWBEP/) means the request never reached the application
    await adapter.healthcheck();
    sim.setFault({ kind: 'status', status: 400, on: 'post' });
    const f = await erpError(adapter.post(sampleTransaction('GoodsReceipt'), ctx));
    assert.equal(f.code, 'UPSTREAM_UNAVAILABLE');
    assert.match(f.erpCode ?? '', /^\/IWFND\//);
  });

  void it('a field SAP cannot hold is rejected locally, without a call', async () => {
    const tx = sampleTransaction('MaterialConsumption') as MaterialConsumption;
    tx.plant = 'plant-berlin';
    const posts = sim.stats().posts;
    const r = await adapter.post(tx, ctx);
    assert.equal(r.status, 'rejected');
    assert.equal((r as { code: string }).code, 'PLANTBRIDGE/MAPPING');
    assert.match((r as { reason: string }).reason, /plant/);
    assert.equal(sim.stats().posts, posts);
  });

  void it('504 from a gateway on a POST is ERP_IN_DOUBT; 503 is UPSTREAM_UNAVAILABLE', async () => {
    await adapter.healthcheck(); // CSRF token cached, so the fault hits the POST
    sim.setFault({ kind: 'status', status: 504 });
    assert.equal((await erpError(adapter.post(sampleTransaction('ProductionConfirmation'), ctx))).code, 'ERP_IN_DOUBT');
    sim.setFault({ kind: 'status', status: 503, retryAfterS: 3 });
    const e = await erpError(adapter.post(sampleTransaction('ProductionConfirmation'), ctx));
    assert.equal(e.code, 'UPSTREAM_UNAVAILABLE');
    assert.equal(e.retryAfterMs, 3000);
  });

  void it('wrong credentials and a missing role are UPSTREAM_UNAVAILABLE (erpCode AUTH) and fail the healthcheck', async () => {
    const wrong = basicAdapter(sim.url, {}, '${WRONG}');
    try {
      const e = await erpError(wrong.post(sampleTransaction('ProductionConfirmation'), ctx));
      assert.equal(e.code, 'UPSTREAM_UNAVAILABLE');
      assert.equal(e.erpCode, 'AUTH');
      assert.equal((await wrong.healthcheck()).ok, false);
    } finally {
      await wrong.close?.();
    }
    await adapter.healthcheck();
    sim.setFault({ kind: 'status', status: 403, on: 'post' });
    const e = await erpError(adapter.post(sampleTransaction('ProductionConfirmation'), ctx));
    assert.equal(e.code, 'UPSTREAM_UNAVAILABLE');
    assert.equal(e.erpCode, 'AUTH');
  });

  void it('OAuth client credentials: token fetched once, renewed after revocation, bad secret fails the healthcheck', async () => {
    const oauth = oauthAdapter(sim.url);
    const bad = oauthAdapter(sim.url, '${WRONG}');
    try {
      const t0 = sim.stats().tokenFetches;
      assert.deepEqual(await oauth.healthcheck(), { ok: true });
      for (let i = 0; i < 3; i++) assert.equal((await oauth.post(sampleTransaction('GoodsReceipt'), ctx)).status, 'posted');
      assert.equal(sim.stats().tokenFetches - t0, 1);
      sim.revokeTokens();
      assert.equal((await oauth.post(sampleTransaction('GoodsReceipt'), ctx)).status, 'posted');
      assert.equal(sim.stats().tokenFetches - t0, 2);
      const hc = await bad.healthcheck();
      assert.equal(hc.ok, false);
      assert.match(hc.message ?? '', /clientSecret/);
      const e = await erpError(bad.post(sampleTransaction('GoodsReceipt'), ctx));
      assert.equal(e.erpCode, 'AUTH');
    } finally {
      await oauth.close?.();
      await bad.close?.();
    }
  });

  void it('the config schema reports unknown keys and raw secrets with their path', () => {
    assert.throws(
      () => parseConfig(erpConfigSchema, { type: 'sap-odata', url: 'https://s4:44300', auth: { type: 'basic', username: 'u', password: 'plain' }, timout: '5s' }),
      (err: unknown) => err instanceof PlantBridgeError && /timout: unknown key \(did you mean "timeout"\?\)/.test(err.message) && /auth\.password/.test(err.message),
    );
  });

  void it('example.yaml is a valid erp: section', () => {
    const doc = parseYaml(readFileSync(new URL('./example.yaml', import.meta.url), 'utf8')) as { erp: unknown };
    const config = parseConfig(erpConfigSchema, doc.erp);
    assert.equal(config.type, 'sap-odata');
  });
});

void describe('sap-odata lookup when SAP refuses $filter on ExternalSystemConfirmation', () => {
  void it('falls back to listing the order operation and matching client-side', async () => {
    const sim = await startSapSimulator({ externalSystemConfirmationFilterable: false });
    const adapter = basicAdapter(sim.url);
    try {
      const others = Array.from({ length: 3 }, () => sampleTransaction('ProductionConfirmation'));
      for (const tx of others) assert.equal((await adapter.post(tx, ctx)).status, 'posted');
      const tx = sampleTransaction('ProductionConfirmation');
      sim.setFault({ kind: 'timeout-after-commit', mode: 'destroy' });
      assert.equal((await erpError(adapter.post(tx, ctx))).code, 'ERP_IN_DOUBT');
      const found = await adapter.lookup(tx, ctx);
      const c = sim.confirmations().find((x) => x.ExternalSystemConfirmation === uuidv5(tx.idempotencyKey))!;
      assert.deepEqual(found, { found: true, erpRef: `${c.ConfirmationGroup}/${c.ConfirmationCount}` });
      assert.deepEqual(await adapter.lookup(sampleTransaction('ProductionConfirmation'), ctx), { found: false });
    } finally {
      await adapter.close?.();
      await sim.stop();
    }
  });
});

void describe('sap-odata material document lookup', () => {
  void it('only a row that shows this key\'s header text is this posting: rows without it are not evidence', async () => {
    // a service (or a proxy) that ignores $filter and answers rows of other documents, without the text
    let rows: unknown[] = [];
    const odd = await startSimServer(async (_req, res) => sendJson(res, 200, { d: { results: rows } }));
    const adapter = basicAdapter(odd.url);
    try {
      const tx = sampleTransaction('GoodsReceipt');
      rows = [{ MaterialDocument: '4900000001', MaterialDocumentYear: '2026' }];
      assert.deepEqual(await adapter.lookup(tx, ctx), { found: false });
      rows = [{ MaterialDocument: '4900000001', MaterialDocumentYear: '2026', MaterialDocumentHeaderText: 'someone else' }, { MaterialDocument: '4900000002', MaterialDocumentYear: '2026', MaterialDocumentHeaderText: sapHeaderText(tx.idempotencyKey) }];
      assert.deepEqual(await adapter.lookup(tx, ctx), { found: true, erpRef: '4900000002/2026' });
    } finally {
      await adapter.close?.();
      await odd.stop();
    }
  });
});
