/**
 * `npm start`: the whole flow on one machine — a simulated line (a real node-opcua server), the agent
 * reading it over OPC UA, the hub on SQLite, and the SAP S/4HANA simulator as the ERP. Prints the
 * dashboard URL and one line per confirmation posted. Ctrl-C stops everything; running it again resumes
 * from ./data without double postings.
 */
import { mkdirSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { parseAgentConfig } from '../../agent/config/load.ts';
import { buildAgent } from '../../agent/build-agent.ts';
import { parseHubConfig } from '../../central-hub/config/load.ts';
import { buildHub } from '../../central-hub/build-hub.ts';
import { startSapSimulator, SAP_SIM_USER } from '../../central-hub/erp/sap-odata/sap-simulator.ts';
import { startLineServer } from '../plant-sim/opcua-line-server.ts';
import type { ProductionConfirmation } from '../../contracts/index.ts';

const dataDir = resolve(process.env.PLANTBRIDGE_DATA_DIR ?? 'data');
const hubPort = Number(process.env.PLANTBRIDGE_HUB_PORT ?? 8080);
const quiet = process.env.PLANTBRIDGE_DEMO_QUIET === '1';
mkdirSync(join(dataDir, 'logs'), { recursive: true });

const say = (line: string) => process.stdout.write(`${line}\n`);

// one token per data directory, so a second run talks to the same hub database
const tokenFile = join(dataDir, 'demo-agent-token');
if (!existsSync(tokenFile)) writeFileSync(tokenFile, randomBytes(24).toString('hex'), { mode: 0o600 });
process.env.PLANTBRIDGE_DEMO_AGENT_TOKEN = readFileSync(tokenFile, 'utf8').trim();
process.env.PLANTBRIDGE_DEMO_SAP_PASSWORD = SAP_SIM_USER.password;

const line = { intervalMs: 1000, partsPerTick: 5, scrapEvery: 20, orderSize: 300, firstOrder: 1000100, operation: '0010', counterBits: 32 as const };

async function main(): Promise<void> {
  say('PlantBridge demo: starting the SAP simulator, the hub, a simulated OPC UA line and the agent…');
  // the ERP keeps its documents: a restarted demo continues the number ranges, so numbers never repeat
  const sap = await startSapSimulator({ latencyMs: 40, stateFile: join(dataDir, 'sap-simulator.json') });
  const plc = await startLineServer({ params: line });

  const hubYaml = `# written by npm start (test/demo/run-demo.ts)
hub:
  host: 127.0.0.1
  port: ${hubPort}
  dataDir: ${join(dataDir, 'hub')}
log:
  level: info
agents:
  - id: demo-edge-01
    plants: ["1010"]
    token: \${PLANTBRIDGE_DEMO_AGENT_TOKEN}
erp:
  type: sap-odata
  url: ${sap.url}
  auth:
    type: basic
    username: ${SAP_SIM_USER.username}
    password: \${PLANTBRIDGE_DEMO_SAP_PASSWORD}
  timeout: 5s
posting:
  concurrency: 4
  retryMaxDelay: 10s
`;
  const agentYaml = `# written by npm start (test/demo/run-demo.ts)
agent:
  id: demo-edge-01
  plant: "1010"
  timeZone: Europe/Berlin
  stateDir: ${join(dataDir, 'agent')}
log:
  level: info
status:
  port: 0
hub:
  url: http://127.0.0.1:${hubPort}
  token: \${PLANTBRIDGE_DEMO_AGENT_TOKEN}
  heartbeatInterval: 5s
drivers:
  - name: line1-plc
    type: opcua
    endpoint: ${plc.endpoint}
    securityMode: None
    securityPolicy: None
    allowInsecure: true
    publishingInterval: 250ms
    reconnectMaxDelay: 2s
    nodes:
      - { ref: good, nodeId: "${plc.nodeIds.good}", samplingInterval: 250ms }
      - { ref: scrap, nodeId: "${plc.nodeIds.scrap}", samplingInterval: 250ms }
      - { ref: order, nodeId: "${plc.nodeIds.order}", samplingInterval: 250ms }
rules:
  - id: line1-yield
    type: count-production
    workCenter: WC-01
    counter: { source: line1-plc, ref: good }
    scrapCounter: { source: line1-plc, ref: scrap }
    activeOrder: { source: line1-plc, ref: order }
    uom: EA
    emitEvery: { parts: 50, maxInterval: 30s }
`;
  writeFileSync(join(dataDir, 'demo-hub.yaml'), hubYaml);
  writeFileSync(join(dataDir, 'demo-agent.yaml'), agentYaml);

  const hubLog = pino({ level: 'info' }, pino.destination({ dest: join(dataDir, 'logs', 'hub.log'), mkdir: true, sync: false }));
  const agentLog = pino({ level: 'info', base: { agentId: 'demo-edge-01' } }, pino.destination({ dest: join(dataDir, 'logs', 'agent.log'), mkdir: true, sync: false }));

  const hub = buildHub({
    config: parseHubConfig(hubYaml, join(dataDir, 'demo-hub.yaml')).config,
    log: hubLog,
    onOutcome: (tx, outcome) => {
      if (quiet) return;
      const d = (tx as ProductionConfirmation).data;
      const qty = d.yield ? `${d.yield.qty} ${d.yield.uom} good${d.scrap ? `, ${d.scrap.qty} ${d.scrap.uom} scrap` : ''}` : '';
      if (outcome.kind === 'posted') say(`posted   order ${d.order}/${d.operation ?? ''}  ${qty}  ->  SAP confirmation ${outcome.erpRef}`);
      else if (outcome.kind === 'failed') say(`FAILED   order ${d.order}  ${qty}  ->  ${outcome.erpCode ?? outcome.code}: ${outcome.message}`);
    },
  });
  await hub.start();
  const loaded = parseAgentConfig(agentYaml, join(dataDir, 'demo-agent.yaml'));
  const agent = buildAgent({ config: loaded.config, configVersion: loaded.version, log: agentLog });
  await agent.start();

  say('');
  say(`Dashboard:    ${hub.url}`);
  say(`Hub metrics:  ${hub.url}/metrics`);
  say(`Agent status: ${agent.statusUrl}/healthz   (metrics: ${agent.statusUrl}/metrics)`);
  say(`OPC UA line:  ${plc.endpoint}   SAP simulator: ${sap.url}`);
  say(`Data and logs: ${dataDir}   Configs used: ${join(dataDir, 'demo-agent.yaml')}, ${join(dataDir, 'demo-hub.yaml')}`);
  say('A confirmation is posted every 50 parts (about every 10 s). Ctrl-C stops everything.');
  say('');

  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) process.exit(2);
    stopping = true;
    say(`\n${sig}: stopping the agent (finishing the in-flight commit), the hub, the simulators…`);
    await agent.stop();
    await hub.stop();
    await plc.stop();
    await sap.stop();
    hubLog.flush();
    agentLog.flush();
    say('Stopped. Run `npm start` again to resume: nothing is posted twice.');
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  const runFor = Number(process.env.PLANTBRIDGE_DEMO_SECONDS ?? 0);
  if (runFor > 0) setTimeout(() => void stop(`ran ${runFor} s`), runFor * 1000);
}

main().catch((err) => {
  process.stderr.write(`demo failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(2);
});
