import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { parseAgentConfig } from '../../agent/config/load.ts';
import { buildAgent } from '../../agent/build-agent.ts';
import { parseHubConfig } from '../../central-hub/config/load.ts';
import { buildHub } from '../../central-hub/build-hub.ts';
import { startSapSimulator, SAP_SIM_USER } from '../../central-hub/erp/sap-odata/sap-simulator.ts';
import { testLogger } from '../helpers/log.ts';
import { missing } from '../helpers/services.ts';

const CHROMIUM = process.env.PLANTBRIDGE_CHROMIUM ?? '/usr/bin/chromium';

test('the fleet page in a real browser: agent health, posting counts, ERP documents, escaped values', async (t) => {
  if (!existsSync(CHROMIUM)) return t.skip(missing('Chromium', `not found at ${CHROMIUM}: apt-get install chromium, or set PLANTBRIDGE_CHROMIUM`));
  const dir = mkdtempSync(join(tmpdir(), 'pb-dash-'));
  const sap = await startSapSimulator();
  t.after(() => sap.stop());
  const sources = { env: { TOK: 'dashboard-token-0123456789', SAPPW: SAP_SIM_USER.password }, readFile: () => '' };
  const hub = buildHub({
    config: parseHubConfig(
      `hub: { port: 0, dataDir: ${join(dir, 'hub')} }
agents:
  - { id: line-7, plants: ["<i>P1</i>"], token: "\${TOK}" }
erp: { type: sap-odata, url: "${sap.url}", auth: { type: basic, username: ${SAP_SIM_USER.username}, password: "\${SAPPW}" } }
fleet: { backlogSla: 1h }
`,
      join(dir, 'hub.yaml'),
      sources,
    ).config,
    log: testLogger(),
  });
  await hub.start();
  t.after(() => hub.stop());
  const agent = buildAgent({
    config: parseAgentConfig(
      `agent: { id: line-7, plant: "<i>P1</i>", stateDir: ${join(dir, 'agent')} }
status: { port: 0 }
hub: { url: "${hub.url}", token: "\${TOK}", heartbeatInterval: 200ms }
drivers: [{ type: simulator, name: sim, interval: 40ms, partsPerTick: 5, orderSize: 400 }]
rules: [{ id: r, type: count-production, workCenter: "WC-<script>", counter: { source: sim, ref: good }, activeOrder: { source: sim, ref: order }, emitEvery: { parts: 20 } }]
`,
      join(dir, 'agent.yaml'),
      sources,
    ).config,
    log: testLogger(),
  });
  await agent.start();
  t.after(() => agent.stop());
  for (let i = 0; i < 300 && (await hub.store.counts()).posted < 5; i++) await new Promise((r) => setTimeout(r, 50));
  // close the order the line is working on: its next confirmations become dead letters. An order lasts
  // ~3 s here, so the line may have moved on by the time it is closed: close the newest order until one fails
  for (let i = 0; i < 600 && (await hub.store.counts()).failed < 1; i++) {
    sap.closeOrder((await hub.store.listTransactions({ limit: 1 }))[0].order);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok((await hub.store.counts()).failed >= 1, 'a confirmation for a closed order became a dead letter');

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.after(() => browser.close());
  const page = await browser.newPage();
  const dialogs: string[] = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  const res = await page.goto(hub.url);
  assert.equal(res?.status(), 200);
  assert.equal(await page.title(), 'PlantBridge hub');

  const agentRow = page.locator('#agents tbody tr').first();
  assert.equal(await agentRow.locator('td').first().innerText(), 'line-7');
  assert.equal(await agentRow.locator('td').nth(1).innerText(), '<i>P1</i>', 'the plant is shown as text, not markup');
  assert.equal(await page.locator('#agents i').count(), 0);
  assert.match(await agentRow.locator('.badge').innerText(), /online|degraded/);
  const posted = Number(await page.locator('#count-posted b').innerText());
  assert.ok(posted >= 5, `posted tile shows ${posted}`);
  const erpCells = await page.locator('#transactions tbody tr.posted td.erp').allInnerTexts();
  assert.ok(erpCells.length >= 5, 'posted transactions are listed');
  const docs = new Set(sap.confirmations().map((c) => `${c.ConfirmationGroup}/${c.ConfirmationCount}`));
  for (const cell of erpCells) assert.ok(docs.has(cell.trim()), `${cell} is a document the ERP really has`);
  assert.equal(await page.locator('#transactions script').count(), 0, 'work center "WC-<script>" did not become markup');
  assert.deepEqual(dialogs, []);

  const dead = page.locator('#dead-letters tbody tr[data-key]');
  assert.ok((await dead.count()) >= 1, 'the dead letter is listed');
  assert.match(await dead.first().innerText(), /ERP_BUSINESS/);
  assert.match(await dead.first().innerText(), /RU\/494/);

  // lineage: from the transaction list to the machine events and the ERP document
  await page.locator('#transactions tbody tr.posted td a').first().click();
  await page.waitForSelector('#lineage');
  const lineage = await page.locator('#lineage').innerText();
  assert.match(lineage, /machine events\s+\d+ event\(s\)/);
  assert.match(lineage, /sim\/good\//, 'the source event ids are shown');
  const doc = (await page.locator('#lineage b.erp').innerText()).trim();
  assert.ok(docs.has(doc) || sap.confirmations().some((c) => `${c.ConfirmationGroup}/${c.ConfirmationCount}` === doc), 'the ERP document is real');
  await page.goto(hub.url);

  const shots = resolve(import.meta.dirname, '..', '..', '.tmp');
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, 'dashboard.png'), fullPage: true });
});
