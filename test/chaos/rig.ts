import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, closeSync, existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import mqtt, { type MqttClient } from 'mqtt';
import { uuidv5 } from '../../contracts/index.ts';
import { startSapSimulator, SAP_SIM_USER, type SapSimulator } from '../../central-hub/erp/sap-odata/sap-simulator.ts';
import { SqliteHubStore } from '../../central-hub/store/sqlite/sqlite-store.ts';
import { freePort, startMosquitto, type Broker } from '../helpers/services.ts';
import { startLineServer, type LineServer } from '../plant-sim/opcua-line-server.ts';
import type { LineParams } from '../../agent/drivers/simulator/line-model.ts';
import { startProxy, type Proxy } from './tcp-proxy.ts';
import { checkLedger, type AgentRow, type HubRow, type LedgerSummary, type ProducedFact } from './ledger.ts';

/**
 * The whole path as real processes: a private Mosquitto (unbounded queues, persistence), the hub as a child
 * process on SQLite, the agent as a child process with an MQTT driver and the count-production rule, and
 * the SAP simulator in this process (its documents are the ERP side of the ledger). The publisher is a
 * machine cell: QoS 1 cycle events with an event id, an order and good/scrap parts; its log (only what
 * the broker acknowledged) is the "produced" side of the ledger.
 *
 * Processes run from the checkout exactly as `npm run agent -- run` / `npm run hub -- serve` do.
 */

const ROOT = join(import.meta.dirname, '..', '..');
const AGENT_BIN = join(ROOT, 'agent', 'bin', 'plantbridge-agent.js');
const HUB_BIN = join(ROOT, 'central-hub', 'bin', 'plantbridge-hub.js');
export const TOKEN = 'chaos-agent-token-0123456789abcdef';
export const PLANT = '1010';
export const WORK_CENTER = 'WC-CH';
const OPERATION = '0010';

export interface RigOptions {
  dir: string;
  /** SAP simulator latency per call */
  erpLatencyMs?: number;
  /** extra YAML lines under the agent's outbox: key */
  agentOutbox?: string;
  /** orders the ERP holds closed: their confirmations are business errors */
  closedOrders?: string[];
  /** wrap the child's command (e.g. ['faketime', '-f', '+1d']) */
  hubWrap?: string[];
  agentWrap?: string[];
  /** extra environment for a child (LD_PRELOAD, FAKETIME, ...) */
  hubEnv?: Record<string, string>;
  agentEnv?: Record<string, string>;
  /** put a TCP proxy (tcp-proxy.ts) between agent and hub: rig.hubProxy */
  proxyAgentToHub?: boolean;
  /** put a TCP proxy between hub and ERP: rig.erpProxy */
  proxyHubToErp?: boolean;
  /** the agent's hub.requestTimeout (default 10s) */
  agentRequestTimeout?: string;
  /** also an OPC UA line (test/plant-sim): rig.line, driver "line", rule "line-yield" on work center WC-LINE */
  opcua?: boolean;
}

/** the OPC UA line's model: 5 parts every 100 ms, a new order every 2,000 parts */
export const LINE_PARAMS: LineParams = { intervalMs: 100, partsPerTick: 5, scrapEvery: 40, orderSize: 2000, firstOrder: 9_000_000, operation: '0010', counterBits: 32 };

export interface Child {
  proc: ChildProcess;
  name: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(sig?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** every child process a rig started and that is still running: run.ts kills them if the harness is interrupted */
export const liveChildren = new Set<ChildProcess>();

export class Rig {
  readonly dir: string;
  readonly opts: RigOptions;
  sap!: SapSimulator;
  broker!: Broker;
  hubPort = 0;
  statusPort = 0;
  hub?: Child;
  agent?: Child;
  hubProxy?: Proxy;
  erpProxy?: Proxy;
  line?: LineServer;
  linePort = 0;
  readonly produced: ProducedFact[] = [];
  readonly topic: string;
  #pub?: MqttClient;
  #seq = 0;
  #starts = { hub: 0, agent: 0 };

  constructor(opts: RigOptions) {
    this.opts = opts;
    this.dir = opts.dir;
    this.topic = `chaos/${process.pid}-${Date.now().toString(36)}`;
  }

  get hubUrl(): string {
    return `http://127.0.0.1:${this.hubPort}`;
  }

  get agentDb(): string {
    return join(this.dir, 'agent', 'outbox.db');
  }

  get hubDb(): string {
    return join(this.dir, 'hub', 'hub.db');
  }

  async start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    this.sap = await startSapSimulator({ latencyMs: this.opts.erpLatencyMs ?? 2, closedOrders: this.opts.closedOrders });
    this.broker = await startMosquitto();
    if (this.broker.process) {
      const b = this.broker.process;
      liveChildren.add(b);
      b.once('exit', () => liveChildren.delete(b));
    }
    this.hubPort = await freePort();
    this.statusPort = await freePort();
    if (this.opts.opcua) await this.startLine();
    if (this.opts.proxyAgentToHub) this.hubProxy = await startProxy(this.hubPort);
    if (this.opts.proxyHubToErp) this.erpProxy = await startProxy(Number(new URL(this.sap.url).port));
    await this.writeConfigs();
    this.#pub = await mqtt.connectAsync(this.broker.url, { clientId: `chaos-publisher-${process.pid}`, reconnectPeriod: 200 });
  }

  async writeConfigs(): Promise<void> {
    const erpUrl = this.erpProxy ? this.erpProxy.url : this.sap.url;
    await writeFile(
      join(this.dir, 'hub.yaml'),
      `hub: { port: ${this.hubPort}, dataDir: ${join(this.dir, 'hub')} }
log: { level: info }
agents: [{ id: chaos-edge, plants: ["${PLANT}"], token: "\${CHAOS_TOKEN}" }]
erp: { type: sap-odata, url: "${erpUrl}", auth: { type: basic, username: ${SAP_SIM_USER.username}, password: "\${CHAOS_SAP_PASSWORD}" }, timeout: 5s }
posting: { concurrency: 4, retryMaxDelay: 2s, lease: 15s, inDoubtWait: 1s, maxAttempts: 1000 }
`,
    );
    const hubUrl = this.hubProxy ? this.hubProxy.url : this.hubUrl;
    const yaml = `agent: { id: chaos-edge, plant: "${PLANT}", timeZone: Europe/Berlin, stateDir: ${join(this.dir, 'agent')} }
log: { level: info }
status: { port: ${this.statusPort} }
hub: { url: "${hubUrl}", token: "\${CHAOS_TOKEN}", allowPlainHttp: true, heartbeatInterval: 1s, outcomesInterval: 1s, retryMaxDelay: 2s, requestTimeout: ${this.opts.agentRequestTimeout ?? '10s'} }
${this.opts.agentOutbox ? `outbox: { ${this.opts.agentOutbox} }` : 'outbox: { minFreeDiskBytes: 0 }'}
drivers:
  - name: cell
    type: mqtt
    url: ${this.broker.url}
    clientId: chaos-agent-${process.pid}
    reconnectMaxDelay: 1s
    subscriptions:
      - filter: ${this.topic}/+machine/cycle
        qos: 1
        ref: "{machine}/cycle"
        fields:
          id: { json: $.eventId }
          time: { json: $.ts }
rules:
  - id: cell-yield
    type: count-production
    workCenter: ${WORK_CENTER}
    counter: { source: cell, ref: m1/cycle, counts: increment, field: $.good, maxJump: 1000 }
    scrapCounter: { source: cell, ref: m1/cycle, counts: increment, field: $.scrap, maxJump: 1000 }
    activeOrder: { fromCounter: true, orderPath: $.order, operationPath: $.op, operation: "${OPERATION}" }
    uom: EA
    emitEvery: { parts: 50, maxInterval: 2s }
`;
    await writeFile(join(this.dir, 'agent.yaml'), this.line ? this.#withLine(yaml, this.line) : yaml);
  }

  /** the OPC UA line's driver goes at the end of drivers:, its rule at the end of rules: */
  #withLine(yaml: string, line: LineServer): string {
    const driver = `  - name: line
    type: opcua
    endpoint: ${line.endpoint}
    securityMode: None
    securityPolicy: None
    allowInsecure: true
    publishingInterval: 200ms
    reconnectMaxDelay: 1s
    nodes:
      - { ref: good, nodeId: "${line.nodeIds.good}", samplingInterval: 100ms }
      - { ref: scrap, nodeId: "${line.nodeIds.scrap}", samplingInterval: 100ms }
      - { ref: order, nodeId: "${line.nodeIds.order}" }
`;
    const rule = `  - id: line-yield
    type: count-production
    workCenter: WC-LINE
    counter: { source: line, ref: good, counts: total, wrap: uint32, maxJump: 100000 }
    scrapCounter: { source: line, ref: scrap, counts: total, wrap: uint32, maxJump: 100000 }
    activeOrder: { source: line, ref: order, operation: "0010" }
    uom: EA
    emitEvery: { parts: 500, maxInterval: 2s }
`;
    return yaml.replace('rules:\n', `${driver}rules:\n`) + rule;
  }

  /** starts the OPC UA line server (again: same port and certificate, as a PLC that rebooted) */
  async startLine(): Promise<LineServer> {
    this.linePort ||= await freePort();
    this.line = await startLineServer({ port: this.linePort, params: LINE_PARAMS, pkiDir: this.line?.pkiDir });
    return this.line;
  }

  #spawn(name: 'hub' | 'agent', args: string[], wrap: string[] = [], extraEnv: Record<string, string> = {}): Child {
    const n = ++this.#starts[name];
    const log = openSync(join(this.dir, `${name}.log`), 'a');
    const env = {
      ...process.env,
      CHAOS_TOKEN: TOKEN,
      CHAOS_SAP_PASSWORD: SAP_SIM_USER.password,
      NODE_COMPILE_CACHE: join(this.dir, 'compile-cache'),
      ...extraEnv,
    };
    const cmd = [...wrap, process.execPath, ...args];
    const proc = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', log, log], env, cwd: this.dir });
    closeSync(log);
    liveChildren.add(proc);
    proc.once('exit', () => liveChildren.delete(proc));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    return {
      proc,
      name: `${name}#${n}`,
      exited,
      kill: (sig: NodeJS.Signals = 'SIGTERM') => {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
        return exited;
      },
    };
  }

  startHub(): Child {
    this.hub = this.#spawn('hub', [HUB_BIN, 'serve', '--config', join(this.dir, 'hub.yaml')], this.opts.hubWrap, this.opts.hubEnv);
    return this.hub;
  }

  startAgent(): Child {
    this.agent = this.#spawn('agent', [AGENT_BIN, 'run', '--config', join(this.dir, 'agent.yaml')], this.opts.agentWrap, this.opts.agentEnv);
    return this.agent;
  }

  /** the hub answers /healthz */
  async hubUp(timeoutMs = 60_000): Promise<void> {
    await until('the hub to answer /healthz', async () => (await fetch(`${this.hubUrl}/healthz`).catch(() => undefined))?.ok === true, timeoutMs);
  }

  /**
   * The agent's /healthz answers 200: every driver is up, i.e. subscribed (the status port listens before
   * the drivers connect, with 503). With `answering` any answer will do (an outbox that is full says 503).
   */
  async agentUp(timeoutMs = 60_000, answering = false): Promise<void> {
    await until(
      answering ? 'the agent to answer /healthz' : 'the agent to be healthy (/healthz 200)',
      async () => {
        const r = await fetch(`http://127.0.0.1:${this.statusPort}/healthz`).catch(() => undefined);
        return r !== undefined && (answering || r.ok);
      },
      timeoutMs,
    );
  }

  /** Publishes `count` cycle events (QoS 1), `perOrder` events per order; logs each once the broker acknowledged it. */
  async publish(count: number, opts: { perOrder: number; ratePerS: number; firstOrder?: number; shouldStop?: () => boolean }): Promise<number> {
    const pub = this.#pub!;
    const started = Date.now();
    let sent = 0;
    const inflight = new Set<Promise<void>>();
    for (let i = 0; i < count && !opts.shouldStop?.(); i++) {
      const n = this.#seq++;
      const order = String((opts.firstOrder ?? 4_000_000) + Math.floor(n / opts.perOrder));
      const fact: ProducedFact = { id: `e-${n}`, order, good: 1 + (n % 3), scrap: n % 17 === 0 ? 1 : 0 };
      const payload = JSON.stringify({ eventId: fact.id, ts: new Date().toISOString(), order, op: OPERATION, good: fact.good, scrap: fact.scrap });
      const p = pub.publishAsync(`${this.topic}/m1/cycle`, payload, { qos: 1 }).then(() => {
        this.produced.push(fact);
      });
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
      sent++;
      if (inflight.size >= 200) await Promise.race(inflight);
      // paced by the clock's schedule, not by sleeps per message: the rate holds on a loaded machine
      const due = started + (sent * 1000) / opts.ratePerS;
      const wait = due - Date.now();
      if (wait > 2) await sleep(wait);
    }
    await Promise.all(inflight);
    return sent;
  }

  /** Waits until the agent has nothing pending and the hub nothing queued, reading both stores from outside. */
  async drained(timeoutMs: number): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const a = this.agentCounts();
      const h = this.hubCounts();
      // every produced part has left the rule's windows (the last window closes after maxInterval)
      if (a && h && a.open === 0 && a.pending === 0 && h.queued === 0 && a.events >= this.produced.length && a.total > 0) return true;
      await sleep(500);
    }
    return false;
  }

  /** the agent's outbox, read from outside: pending transactions, all transactions, cycle events, parts in open windows */
  agentCounts(): { pending: number; total: number; events: number; open: number } | undefined {
    if (!existsSync(this.agentDb)) return undefined;
    let db: Database.Database | undefined;
    try {
      db = new Database(this.agentDb, { readonly: true, fileMustExist: true });
      db.pragma('busy_timeout = 2000');
      const t = db.prepare("SELECT SUM(status IN ('pending','leased')) AS pending, COUNT(*) AS total FROM transactions").get() as { pending: number | null; total: number };
      const e = db.prepare("SELECT COUNT(*) AS n FROM events WHERE ref = 'm1/cycle'").get() as { n: number };
      const s = db.prepare("SELECT state FROM rule_state WHERE rule_id = 'cell-yield'").get() as { state: string } | undefined;
      const windows = s ? (JSON.parse(s.state).windows ?? {}) : {};
      const open = Object.values(windows as Record<string, { good: number; scrap: number }>).reduce((n, w) => n + w.good + w.scrap, 0);
      return { pending: t.pending ?? 0, total: t.total, events: e.n, open };
    } catch {
      return undefined;
    } finally {
      db?.close();
    }
  }

  /** the hub's store, read from outside: rows still queued for the ERP, all rows */
  hubCounts(): { queued: number; total: number } | undefined {
    if (!existsSync(this.hubDb)) return undefined;
    let db: Database.Database | undefined;
    try {
      db = new Database(this.hubDb, { readonly: true, fileMustExist: true });
      db.pragma('busy_timeout = 2000');
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>;
      const table = tables.find((t) => t.name === 'transactions') ? 'transactions' : undefined;
      if (!table) return undefined;
      // rows of orders the ERP rejects by design wait behind their order's failed row: not work left to do
      const closed = JSON.stringify(this.opts.closedOrders ?? []);
      const r = db
        .prepare("SELECT SUM(state = 'queued' AND order_no NOT IN (SELECT value FROM json_each(?))) AS q, COUNT(*) AS n FROM transactions")
        .get(closed) as { q: number | null; n: number };
      return { queued: r.q ?? 0, total: r.n };
    } catch {
      return undefined;
    } finally {
      db?.close();
    }
  }

  /** Stops both children (SIGTERM) and checks the ledger from the stores on disk and the ERP's documents. */
  async ledger(): Promise<LedgerSummary> {
    await this.agent?.kill('SIGTERM');
    await this.hub?.kill('SIGTERM');
    const store = new SqliteHubStore(this.hubDb);
    let hub: HubRow[];
    try {
      const rows = await store.listTransactions({ limit: 10_000_000 });
      hub = rows.filter((r) => r.workCenter === WORK_CENTER).map((r) => ({ key: r.idempotencyKey, order: r.order, state: r.state, erpRef: r.erpRef, quantity: r.quantity, errorCode: r.errorCode }));
    } finally {
      await store.close();
    }
    const db = new Database(this.agentDb, { readonly: true });
    let agent: AgentRow[];
    try {
      // the ledger is the MQTT cell's: its work center's rows (an OPC UA line, when there is one, has its own checks)
      agent = db.prepare('SELECT idempotency_key AS key, status, erp_ref AS erpRef FROM transactions WHERE idempotency_key LIKE ?').all(`%:${WORK_CENTER}:%`) as AgentRow[];
    } finally {
      db.close();
    }
    const erp = this.sap.confirmations().filter((c) => c.WorkCenter === WORK_CENTER).map((c) => ({
      ref: `${c.ConfirmationGroup}/${c.ConfirmationCount}`,
      keyRef: c.ExternalSystemConfirmation.toLowerCase(),
      order: c.OrderID,
      good: Number(c.ConfirmationYieldQuantity),
      scrap: Number(c.ConfirmationScrapQuantity),
    }));
    return checkLedger({
      produced: this.produced,
      erp,
      hub,
      agent,
      keyRef: (k) => uuidv5(k).toLowerCase(),
      orderOfKey: (k) => k.split(':')[2],
      rejectedOrders: new Set(this.opts.closedOrders ?? []),
    });
  }

  async stop(): Promise<void> {
    await this.agent?.kill('SIGKILL');
    await this.hub?.kill('SIGKILL');
    await this.#pub?.endAsync(true).catch(() => {});
    await this.hubProxy?.close();
    await this.erpProxy?.close();
    await this.broker?.stop();
    await this.sap?.stop();
    await this.line?.stop();
  }

  /** a child's log (stdout and stderr of every start) */
  log(name: 'hub' | 'agent'): string {
    try {
      return readFileSync(join(this.dir, `${name}.log`), 'utf8');
    } catch {
      return '';
    }
  }

  /** how often each child was started */
  starts(): { hub: number; agent: number } {
    return { ...this.#starts };
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function until(what: string, fn: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** a seeded generator: a scenario's kill points repeat from run to run */
export function seeded(seed: number): (n: number) => number {
  let s = seed;
  return (n) => (s = (s * 1103515245 + 12345) & 0x7fffffff) % n;
}

/** resident set size of a process in MB (Linux /proc), undefined once it is gone */
export function rssMB(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** samples the agent's RSS every second (following restarts) until stopped; returns the maximum seen */
export function rssSampler(rig: Rig): { stop(): number; max(): number; samples: number[] } {
  const samples: number[] = [];
  const t = setInterval(() => {
    const v = rssMB(rig.agent?.proc.pid);
    if (v !== undefined) samples.push(v);
  }, 1000);
  return {
    samples,
    max: () => Math.max(0, ...samples),
    stop() {
      clearInterval(t);
      return Math.max(0, ...samples);
    },
  };
}
