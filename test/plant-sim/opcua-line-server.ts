import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DataType,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAServer,
  SecurityPolicy,
  StatusCodes,
  Variant,
  type UAVariable,
} from 'node-opcua';
import { lineAt, tickAt, type LineParams } from '../../agent/drivers/simulator/line-model.ts';
import { freePort } from '../helpers/services.ts';

/**
 * A simulated plant line as an OPC UA server: Objects/Line1 with GoodCount (UInt32), ScrapCount (UInt32)
 * and OrderNumber (String), following the deterministic line model of the simulator driver. Because the
 * model is a function of the wall clock, a restarted server continues where a real PLC would be, so a
 * counter that moved while the server was down shows its full total on the first value after restart.
 */

export interface LineServerOptions {
  /** 0 / undefined: a free port */
  port?: number;
  params: LineParams;
  /** how often the variables are recomputed from the model (default: params.intervalMs, at least 10 ms) */
  updateMs?: number;
  /** the server's PKI folder (own/, trusted/, rejected/); default: one temp folder shared by this process's servers */
  pkiDir?: string;
  /** accept any client certificate (default true: tests about the *client's* trust decisions) */
  acceptAnyClientCertificate?: boolean;
  securityModes?: Array<'None' | 'Sign' | 'SignAndEncrypt'>;
  securityPolicies?: string[];
  /** username/password logins; anonymous stays allowed unless allowAnonymous is false */
  users?: Array<{ username: string; password: string }>;
  allowAnonymous?: boolean;
  /** OperationLimits.MaxMonitoredItemsPerCall (0: unlimited) */
  maxMonitoredItemsPerCall?: number;
  /** leave out some of the line's variables (a PLC program download that removed a tag) */
  omit?: Array<'good' | 'scrap' | 'order'>;
  /** extra UInt32 variables ns=1;s=Line1.Extra.<i>, for scale tests */
  extraVariables?: number;
  /** name of the line object and node id prefix (default Line1) */
  line?: string;
}

export interface LineServer {
  endpoint: string;
  port: number;
  nodeIds: { good: string; scrap: string; order: string };
  /** node ids of the extra variables */
  extraNodeIds: string[];
  server: OPCUAServer;
  /** the server's PKI folder: pass it again to restart with the same certificate */
  pkiDir: string;
  /** number of sessions currently open on the server */
  sessionCount(): number;
  /** destroys every client socket; sessions and subscriptions stay on the server (a network blip) */
  dropConnections(): void;
  /** stops every subscription's publishing timer: no data, no keep-alive, no error (a stuck server) */
  stallSubscriptions(): number;
  stop(): Promise<void>;
}

const modeMap = {
  None: MessageSecurityMode.None,
  Sign: MessageSecurityMode.Sign,
  SignAndEncrypt: MessageSecurityMode.SignAndEncrypt,
} as const;

let sharedPki: string | undefined;

export async function startLineServer(opts: LineServerOptions): Promise<LineServer> {
  const port = opts.port || (await freePort());
  const p = opts.params;
  const line = opts.line ?? 'Line1';
  // one server certificate per process unless asked otherwise: creating a key pair costs seconds on a busy machine
  sharedPki ??= mkdtempSync(join(tmpdir(), 'pb-plant-pki-'));
  const pkiDir = opts.pkiDir ?? sharedPki;
  const certificateManager = new OPCUACertificateManager({
    rootFolder: pkiDir,
    automaticallyAcceptUnknownCertificate: opts.acceptAnyClientCertificate ?? true,
    disableFileWatchers: true,
  });
  await certificateManager.initialize();
  const users = opts.users ?? [];
  const server = new OPCUAServer({
    port,
    hostname: '127.0.0.1',
    host: '127.0.0.1',
    serverCertificateManager: certificateManager,
    securityModes: (opts.securityModes ?? ['None', 'Sign', 'SignAndEncrypt']).map((m) => modeMap[m]),
    securityPolicies: (opts.securityPolicies ?? ['None', 'Basic256Sha256', 'Aes128_Sha256_RsaOaep', 'Aes256_Sha256_RsaPss']).map(
      (s) => (SecurityPolicy as Record<string, SecurityPolicy>)[s],
    ),
    allowAnonymous: opts.allowAnonymous ?? true,
    userManager: {
      isValidUser: (username: string, password: string) => users.some((u) => u.username === username && u.password === password),
    },
    serverCapabilities: {
      maxSessions: 50,
      operationLimits: { maxMonitoredItemsPerCall: opts.maxMonitoredItemsPerCall ?? 0 },
    },
    maxConnectionsPerEndpoint: 50,
    isAuditing: false,
    buildInfo: { productName: 'PlantBridge plant simulator', manufacturerName: 'PlantBridge' },
  } as any);
  await server.initialize();

  const addressSpace = server.engine.addressSpace!;
  const ns = addressSpace.getOwnNamespace();
  const lineObj = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: line, nodeId: `s=${line}` });
  const omit = new Set(opts.omit ?? []);
  const nodeIds = { good: `ns=1;s=${line}.GoodCount`, scrap: `ns=1;s=${line}.ScrapCount`, order: `ns=1;s=${line}.OrderNumber` };
  const vars: Partial<Record<'good' | 'scrap' | 'order', UAVariable>> = {};
  const add = (key: 'good' | 'scrap' | 'order', browseName: string, dataType: 'UInt32' | 'String') => {
    if (omit.has(key)) return;
    vars[key] = ns.addVariable({
      componentOf: lineObj,
      browseName,
      nodeId: `s=${line}.${browseName}`,
      dataType,
      minimumSamplingInterval: 10,
    });
  };
  add('good', 'GoodCount', 'UInt32');
  add('scrap', 'ScrapCount', 'UInt32');
  add('order', 'OrderNumber', 'String');

  const extraNodeIds: string[] = [];
  const extras: UAVariable[] = [];
  if (opts.extraVariables) {
    const folder = ns.addObject({ componentOf: lineObj, browseName: 'Extra', nodeId: `s=${line}.Extra` });
    for (let i = 0; i < opts.extraVariables; i++) {
      extras.push(
        ns.addVariable({ componentOf: folder, browseName: `V${i}`, nodeId: `s=${line}.Extra.${i}`, dataType: 'UInt32', minimumSamplingInterval: 10 }),
      );
      extraNodeIds.push(`ns=1;s=${line}.Extra.${i}`);
    }
  }

  let lastTick = -1;
  const update = () => {
    const tick = tickAt(Date.now(), p.intervalMs);
    if (tick === lastTick) return;
    lastTick = tick;
    const s = lineAt(tick, p);
    const t = new Date(s.time);
    vars.good?.setValueFromSource(new Variant({ dataType: DataType.UInt32, value: s.good }), StatusCodes.Good, t);
    vars.scrap?.setValueFromSource(new Variant({ dataType: DataType.UInt32, value: s.scrap }), StatusCodes.Good, t);
    vars.order?.setValueFromSource(new Variant({ dataType: DataType.String, value: s.order }), StatusCodes.Good, t);
    for (const v of extras) v.setValueFromSource(new Variant({ dataType: DataType.UInt32, value: s.good >>> 0 }), StatusCodes.Good, t);
  };
  update();
  const timer = setInterval(update, Math.max(10, opts.updateMs ?? Math.min(p.intervalMs, 1000)));
  timer.unref();

  await server.start();
  const endpoint = `opc.tcp://127.0.0.1:${port}`;
  let stopped = false;
  return {
    endpoint,
    port,
    nodeIds,
    extraNodeIds,
    server,
    pkiDir,
    sessionCount: () => server.engine.currentSessionCount,
    dropConnections() {
      for (const ep of server.endpoints) ep.abruptlyInterruptChannels();
    },
    stallSubscriptions() {
      let n = 0;
      for (const session of server.engine.getSessions()) {
        for (const sub of session.publishEngine?.subscriptions ?? []) {
          (sub as any)._stop_timer();
          n++;
        }
      }
      return n;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      await server.shutdown(0);
      await certificateManager.dispose();
    },
  };
}
