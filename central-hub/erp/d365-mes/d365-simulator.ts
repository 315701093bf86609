import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FaultQueue, noAnswer, readBody, sendJson, sleep, startSimServer, writeHostile, type SimFault } from '../sim-kit.ts';

/**
 * A Dynamics 365 SCM environment as far as the MES integration API goes: an Entra-style token endpoint,
 * SysMessageService/SendMessage (validates the envelope, queues the message and answers its id), a
 * message processor that works the queue in arrival order per production order (Queued -> Processed,
 * or Failed with an infolog, e.g. for an ended order), and the lookup entity the adapter reads
 * (/data/PlantBridgeMESMessages, OData V4 style). Failure knobs as in sim-kit.
 */

export const D365_SIM_TENANT = 'contoso-tenant';
export const D365_SIM_CLIENT = { clientId: 'plantbridge-hub-app', clientSecret: 'sim-entra-secret' };
export const D365_TOKEN_PATH = `/${D365_SIM_TENANT}/oauth2/v2.0/token`;
const SEND_PATH = '/api/services/SysMessageServices/SysMessageService/SendMessage';
const ENTITY_PATH = '/data/PlantBridgeMESMessages';
const MESSAGE_TYPES = new Set(['ProdProductionOrderStart', 'ProdProductionOrderReportFinished', 'ProdProductionOrderPickingList', 'ProdProductionOrderEnd', 'ProdProductionOrderRouteCard']);

export type D365MessageState = 'Queued' | 'Processed' | 'Failed' | 'Canceled';

export interface D365SimMessage {
  MessageId: string;
  MessageQueue: string;
  MessageType: string;
  MessageState: D365MessageState;
  MessageInfolog: string;
  Company: string;
  ProductionOrderNumber: string;
  Reference: string;
  content: Record<string, unknown>;
  attempts: number;
}

export interface D365SimulatorOptions {
  port?: number;
  latencyMs?: number;
  companies?: string[];
  /** the content property carrying the key (the adapter's referenceField) */
  referenceField?: string;
  /** how often the message processor batch runs; 0 = only when processQueue() is called */
  processingIntervalMs?: number;
  /** SendMessage answers 200 with an empty body instead of the message id */
  returnsVoid?: boolean;
  tokenTtlS?: number;
  /** a message shows in the message entity only this long after SendMessage (reads that lag behind) */
  entityLagMs?: number;
}

export interface D365Simulator {
  url: string;
  /** adds a production order to ProductionOrderHeaders (monitoring reads the Released ones); `raw` rows are served as they are */
  putProductionOrder(o: { order: string; site: string; status: 'Created' | 'Scheduled' | 'Released' | 'StartedUp' | 'Ended'; scheduledStart: Date; company?: string } | { raw: Record<string, unknown> }): void;
  tokenUrl: string;
  stop(): Promise<void>;
  messages(): D365SimMessage[];
  processQueue(): void;
  setFault(fault: SimFault): void;
  clearFaults(): void;
  setLatency(ms: number): void;
  /** messages for an ended order fail in processing (and, as in D365, they fail after 3 attempts) */
  closeOrder(order: string): void;
  reopenOrder(order: string): void;
  /** messages with this reference fail in processing with `infolog` (bad master data), until fixProcessing */
  failProcessing(reference: string, infolog: string): void;
  fixProcessing(reference: string): void;
  revokeTokens(): void;
  stats(): { sends: number; gets: number; tokenFetches: number };
}

function d365Error(res: ServerResponse, status: number, message: string, exceptionType = 'XppServicesException'): void {
  sendJson(res, status, { Message: message, ExceptionType: exceptionType, ActivityId: randomUUID() });
}

export async function startD365Simulator(opts: D365SimulatorOptions = {}): Promise<D365Simulator> {
  let latencyMs = opts.latencyMs ?? 0;
  const companies = new Set((opts.companies ?? ['USMF']).map((c) => c.toUpperCase()));
  const refField = opts.referenceField ?? 'PlantBridgeReference';
  const tokenTtlS = opts.tokenTtlS ?? 3599;
  const faults = new FaultQueue();
  const closed = new Set<string>();
  const failing = new Map<string, string>();
  const tokens = new Map<string, number>();
  const messages: D365SimMessage[] = [];
  const visibleAt = new Map<string, number>();
  const stats = { sends: 0, gets: 0, tokenFetches: 0 };
  let nextId = 5637144576;

  const processQueue = () => {
    for (const m of messages) {
      if (m.MessageState !== 'Queued') continue;
      // arrival order per order: an earlier queued message of the same order goes first (it is earlier in the array)
      m.attempts++;
      if (closed.has(m.ProductionOrderNumber)) {
        if (m.attempts >= 3) {
          m.MessageState = 'Failed';
          m.MessageInfolog = `Production order ${m.ProductionOrderNumber} has status Ended and cannot be updated.`;
        }
        continue;
      }
      const infolog = failing.get(m.Reference);
      if (infolog !== undefined) {
        m.MessageState = 'Failed';
        m.MessageInfolog = infolog;
        continue;
      }
      m.MessageState = 'Processed';
      m.MessageInfolog = '';
      // as in D365: an ended order takes no more messages (a second End of it fails too)
      if (m.MessageType === 'ProdProductionOrderEnd') closed.add(m.ProductionOrderNumber);
    }
  };
  const interval = opts.processingIntervalMs ?? 20;
  const timer = interval > 0 ? setInterval(processQueue, interval) : undefined;
  timer?.unref();

  const handleToken = async (req: IncomingMessage, res: ServerResponse) => {
    stats.tokenFetches++;
    const form = new URLSearchParams(await readBody(req));
    let id = form.get('client_id') ?? '';
    let secret = form.get('client_secret') ?? '';
    const h = req.headers.authorization ?? '';
    if (h.startsWith('Basic ')) {
      const [u, ...p] = Buffer.from(h.slice(6), 'base64').toString('utf8').split(':');
      id = decodeURIComponent(u);
      secret = decodeURIComponent(p.join(':'));
    }
    if (form.get('grant_type') !== 'client_credentials') return sendJson(res, 400, { error: 'unsupported_grant_type' });
    if (!(form.get('scope') ?? '').endsWith('/.default')) return sendJson(res, 400, { error: 'invalid_scope', error_description: 'AADSTS70011: scope must end with /.default' });
    if (id !== D365_SIM_CLIENT.clientId || secret !== D365_SIM_CLIENT.clientSecret) {
      return sendJson(res, 401, { error: 'invalid_client', error_description: 'AADSTS7000215: Invalid client secret provided.' });
    }
    const token = randomBytes(32).toString('base64url');
    tokens.set(token, Date.now() + tokenTtlS * 1000);
    sendJson(res, 200, { token_type: 'Bearer', expires_in: tokenTtlS, ext_expires_in: tokenTtlS, access_token: token });
  };

  const authorised = (req: IncomingMessage) => {
    const h = req.headers.authorization ?? '';
    const exp = h.startsWith('Bearer ') ? tokens.get(h.slice(7)) : undefined;
    return exp !== undefined && exp > Date.now();
  };

  const handleSend = async (req: IncomingMessage, res: ServerResponse, fault: SimFault | undefined) => {
    stats.sends++;
    let env: Record<string, unknown>;
    try {
      env = JSON.parse(await readBody(req)) as Record<string, unknown>;
    } catch {
      return d365Error(res, 400, 'An exception occured when deserializing a parameters - Exception occurred when parsing the request content.', 'XppServicesDeserializationException');
    }
    const company = String(env._companyId ?? '').toUpperCase();
    if (!companies.has(company)) return d365Error(res, 400, `Company '${String(env._companyId)}' does not exist.`);
    if (typeof env._messageQueue !== 'string' || env._messageQueue === '') return d365Error(res, 400, 'Message queue must be specified.');
    if (typeof env._messageType !== 'string' || !MESSAGE_TYPES.has(env._messageType)) return d365Error(res, 400, `Message type '${String(env._messageType)}' is not supported by queue ${String(env._messageQueue)}.`);
    let content: Record<string, unknown>;
    try {
      content = JSON.parse(String(env._messageContent)) as Record<string, unknown>;
    } catch {
      return d365Error(res, 400, 'Message content is not valid JSON.');
    }
    if (typeof content.ProductionOrderNumber !== 'string' || content.ProductionOrderNumber === '') return d365Error(res, 400, 'ProductionOrderNumber is mandatory.');
    if (fault?.kind === 'lock') return d365Error(res, fault.status ?? 503, 'The service is temporarily unavailable: a deadlock or update conflict occurred; try again.', 'UpdateConflictException');
    const m: D365SimMessage = {
      MessageId: String(nextId++),
      MessageQueue: env._messageQueue,
      MessageType: env._messageType,
      MessageState: 'Queued',
      MessageInfolog: '',
      Company: company,
      ProductionOrderNumber: content.ProductionOrderNumber,
      Reference: typeof content[refField] === 'string' ? (content[refField] as string) : '',
      content,
      attempts: 0,
    };
    messages.push(m);
    if (opts.entityLagMs) visibleAt.set(m.MessageId, Date.now() + opts.entityLagMs);
    if (fault?.kind === 'timeout-after-commit') return noAnswer(res, fault.mode);
    if (fault?.kind === 'hostile' && fault.commit) return writeHostile(res, fault.body, fault.status ?? 200);
    if (opts.returnsVoid) {
      res.writeHead(200, { 'content-length': '0' });
      return void res.end();
    }
    sendJson(res, 200, { MessageId: m.MessageId });
  };

  const handleEntity = (url: URL, res: ServerResponse) => {
    stats.gets++;
    const now = Date.now();
    let rows = messages.filter((r) => (visibleAt.get(r.MessageId) ?? 0) <= now);
    const filter = url.searchParams.get('$filter');
    if (filter) {
      for (const part of filter.split(/\s+and\s+/i)) {
        const m = /^\s*([A-Za-z]+)\s+eq\s+'((?:[^']|'')*)'\s*$/.exec(part);
        if (!m) return sendJson(res, 400, { error: { code: '', message: `The query specified in the URI is not valid: '${part}'` } });
        const [, prop, raw] = m;
        const value = raw.replace(/''/g, "'");
        rows = rows.filter((r) => String((r as unknown as Record<string, unknown>)[prop]) === value);
      }
    }
    const top = Number(url.searchParams.get('$top') ?? 1000);
    const value = rows.slice(0, top).map(({ content: _c, attempts: _a, ...r }) => r);
    sendJson(res, 200, { '@odata.context': `${url.origin}/data/$metadata#PlantBridgeMESMessages`, value });
  };

  const prodOrders: Array<Record<string, unknown>> = [];
  /** ProductionOrderHeaders: `eq` on strings and enum literals, `ge` on a date-time, $top/$skip */
  const handleProdOrders = (url: URL, res: ServerResponse) => {
    stats.gets++;
    let rows = prodOrders;
    const filter = url.searchParams.get('$filter');
    if (filter) {
      for (const part of filter.split(/\s+and\s+/i)) {
        const m = /^\s*([A-Za-z]+)\s+(eq|ge)\s+(?:(?:[A-Za-z.]+)?'((?:[^']|'')*)'|(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z))\s*$/.exec(part);
        if (!m) return sendJson(res, 400, { error: { code: '', message: `The query specified in the URI is not valid: '${part}'` } });
        const [, prop, op, str, date] = m;
        rows = rows.filter((r) => {
          const v = r[prop];
          if (op === 'eq') return String(v) === (str ?? date).replace(/''/g, "'");
          return typeof v === 'string' && Date.parse(v) >= Date.parse(date ?? str);
        });
      }
    }
    const skip = Number(url.searchParams.get('$skip') ?? 0);
    const top = Number(url.searchParams.get('$top') ?? 1000);
    sendJson(res, 200, { '@odata.context': `${url.origin}/data/$metadata#ProductionOrderHeaders`, value: rows.slice(skip, skip + top) });
  };

  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    await sleep(latencyMs);
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? 'localhost'}`);
    const method = req.method ?? 'GET';
    const isToken = url.pathname === D365_TOKEN_PATH && method === 'POST';
    if (!isToken && !authorised(req)) {
      res.writeHead(401, { 'www-authenticate': 'Bearer authorization_uri="https://login.microsoftonline.com/"', 'content-length': '0' });
      return void res.end();
    }
    // the token endpoint is another service (Entra ID, the OAuth server): the ERP's knobs do not act on it
    const fault = isToken ? undefined : faults.take(method);
    if (fault?.kind === 'status') {
      if (fault.retryAfterS !== undefined) res.setHeader('retry-after', String(fault.retryAfterS));
      if (fault.body) return writeHostile(res, fault.body, fault.status);
      return d365Error(res, fault.status, fault.status === 429 ? 'Request throttled: too many requests.' : `Simulated failure ${fault.status}`);
    }
    if (fault?.kind === 'hostile' && !fault.commit) return writeHostile(res, fault.body, fault.status ?? 200);
    if (fault?.kind === 'timeout-before-commit') return noAnswer(res, fault.mode);
    if (isToken) return handleToken(req, res);
    if (url.pathname === SEND_PATH && method === 'POST') return handleSend(req, res, fault);
    if (url.pathname === ENTITY_PATH && method === 'GET') return handleEntity(url, res);
    if (url.pathname === '/data/ProductionOrderHeaders' && method === 'GET') return handleProdOrders(url, res);
    d365Error(res, 404, `No route for ${method} ${url.pathname}`);
  };

  const srv = await startSimServer(handler, { port: opts.port });
  return {
    url: srv.url,
    tokenUrl: `${srv.url}${D365_TOKEN_PATH}`,
    stop: async () => {
      if (timer) clearInterval(timer);
      await srv.stop();
    },
    messages: () => messages.map((m) => ({ ...m })),
    putProductionOrder: (o) => {
      if ('raw' in o) return void prodOrders.push(o.raw);
      const t = o.scheduledStart;
      const day = new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate()));
      prodOrders.push({
        dataAreaId: o.company ?? [...companies][0],
        ProductionOrderNumber: o.order,
        ProductionSiteId: o.site,
        ProductionOrderStatus: o.status,
        ScheduledStartDate: day.toISOString().replace('.000', ''),
        ScheduledStartTime: Math.round((t.getTime() - day.getTime()) / 1000),
      });
    },
    processQueue,
    setFault: (f) => faults.add(f),
    clearFaults: () => faults.clear(),
    setLatency: (ms) => (latencyMs = ms),
    closeOrder: (o) => closed.add(o),
    reopenOrder: (o) => closed.delete(o),
    failProcessing: (ref, infolog) => failing.set(ref, infolog),
    fixProcessing: (ref) => failing.delete(ref),
    revokeTokens: () => tokens.clear(),
    stats: () => ({ ...stats }),
  };
}

if (import.meta.main) {
  const sim = await startD365Simulator({ port: Number(process.argv[2] ?? 0), latencyMs: Number(process.argv[3] ?? 0) });
  console.log(`D365 simulator on ${sim.url} (token ${sim.tokenUrl}, client ${D365_SIM_CLIENT.clientId})`);
  process.on('SIGINT', () => void sim.stop().then(() => process.exit(0)));
}
