import { connect as netConnect } from 'node:net';
import {
  AttributeIds,
  DataChangeFilter,
  DataChangeTrigger,
  DeadbandType,
  MonitoringMode,
  StatusCodes,
  TimestampsToReturn,
  VariableIds,
  makeBrowsePath,
  resolveNodeId,
  type ClientSession as NodeOpcuaSession,
  type CreateMonitoredItemsRequestOptions,
  type CreateMonitoredItemsResponse,
  type CreateSubscriptionRequestOptions,
  type CreateSubscriptionResponse,
  type DeleteSubscriptionsResponse,
  type ModifySubscriptionRequestOptions,
  type ModifySubscriptionResponse,
  type PublishResponse,
  type RepublishResponse,
  type TransferSubscriptionsResponse,
} from 'node-opcua';
import { isPlantBridgeError, PlantBridgeError, type Signal } from '../../../contracts/index.ts';
import { backoffDelay, HealthTracker, type Driver, type DriverContext } from '../driver.ts';
import { classifyLoginError, connectClient, ConnectError, LoginError, userIdentity, type OpenClient } from './client.ts';
import type { OpcuaConfig } from './config.ts';
import { staleSignal, statusName, toSignal } from './values.ts';

/**
 * The OPC UA driver (DESIGN §4, issue 9). One secure channel, one session and one subscription per
 * endpoint, driven by our own state machine rather than node-opcua's automatic repair:
 *
 *   connect channel -> reactivate the previous session, else create one -> re-resolve browse paths ->
 *   keep the subscription (reactivated session), else transfer it (new session), else recreate it
 *   (monitored items in chunks within the server's MaxMonitoredItemsPerCall, each result checked) ->
 *   publish loop -> on loss: mark values stale, back off (jittered, capped at reconnectMaxDelay), again.
 *
 * The publish loop is ours too (raw Publish requests): a data watchdog sees a subscription that neither
 * delivers data nor keep-alives and recreates it, and a notification message is acknowledged to the
 * server only after its values were committed to the outbox.
 */

/** The raw subscription services of node-opcua's session (its typings only show the high-level helpers). */
type ClientSession = NodeOpcuaSession & {
  publish(request: object, callback: (err: Error | null, response?: PublishResponse) => void): void;
  isChannelValid(): boolean;
  createSubscription(request: CreateSubscriptionRequestOptions): Promise<CreateSubscriptionResponse>;
  modifySubscription(request: ModifySubscriptionRequestOptions): Promise<ModifySubscriptionResponse>;
  transferSubscriptions(request: { subscriptionIds: number[]; sendInitialValues: boolean }): Promise<TransferSubscriptionsResponse>;
  deleteSubscriptions(request: { subscriptionIds: number[] }): Promise<DeleteSubscriptionsResponse>;
  createMonitoredItems(request: CreateMonitoredItemsRequestOptions): Promise<CreateMonitoredItemsResponse>;
  republish(request: { subscriptionId: number; retransmitSequenceNumber: number }): Promise<RepublishResponse>;
};

const BASE_RETRY_MS = 100;
const PUBLISH_PIPELINE = 5;
const MAX_EMIT_BATCH = 5000;
const WATCHDOG_FLOOR_MS = 3000;
/** how long stop() lets a connection attempt that has a channel finish its requests (then the session it made can be closed) before cutting it off */
const STOP_GRACE_MS = 1000;
/** a sequence number jump larger than this is not a few lost responses: only what the server lists as available is asked for */
const MAX_REPUBLISH_GAP = 100;

/** OPC UA sequence numbers run 1 .. 4294966271 and then start over at 1 (Part 4, NotificationMessage). */
const SEQ_MAX = 4_294_966_271;
const seqAfter = (n: number): number => (n >= SEQ_MAX ? 1 : n + 1);
const seqBefore = (n: number): number => (n <= 1 ? SEQ_MAX : n - 1);
/** steps from a forward to b, across the wrap (0 when equal; near SEQ_MAX when b is behind a) */
const seqDistance = (a: number, b: number): number => (((b - a) % SEQ_MAX) + SEQ_MAX) % SEQ_MAX;

interface NodeState {
  ref: string;
  handle: number;
  cfg: OpcuaConfig['nodes'][number];
  /** the node id in use (configured, or resolved from the browse path) */
  nodeId?: string;
  ok: boolean;
  problem?: string;
}

interface Queued {
  signals: Signal[];
  ack?: { subscriptionId: number; sequenceNumber: number };
}

export interface OpcuaDriverStats {
  connects: number;
  connectFailures: number;
  sessionsCreated: number;
  sessionsReactivated: number;
  subscriptionsCreated: number;
  subscriptionsTransferred: number;
  subscriptionsKept: number;
  watchdogRecreations: number;
  monitoredItemCalls: number;
  itemsOk: number;
  itemsBad: number;
  notifications: number;
  /** notification messages recovered by Republish after a sequence number gap */
  republished: number;
  /** notification messages missing from the sequence that the server no longer had (BadMessageNotAvailable) */
  messagesLost: number;
  /** values that could not be read (dead-lettered, PAYLOAD_INVALID) */
  badValues: number;
  committed: number;
  emitFailures: number;
  collapsed: number;
  state: string;
}

export interface OpcuaDriver extends Driver {
  stats(): OpcuaDriverStats;
}

/** Validates (never connects). node-opcua is loaded with this module, which the registry imports lazily. */
export function create(config: OpcuaConfig, ctx: DriverContext): OpcuaDriver {
  // the agent hands each driver a logger already bound to { component: driver, driver: <name> }
  const log = ctx.log;
  const health = new HealthTracker(log);
  if (config.securityMode === 'None' || ['None', 'Basic128Rsa15', 'Basic256'].includes(config.securityPolicy)) {
    if (!config.allowInsecure) {
      throw new PlantBridgeError('CONFIG_INVALID', `drivers.${config.name}: securityMode ${config.securityMode} / securityPolicy ${config.securityPolicy} needs allowInsecure: true`);
    }
  }
  if (config.user.type !== 'anonymous' && config.securityMode === 'None') {
    log.warn('A user login over securityMode None: the server must encrypt the password token itself, or it travels readable');
  }
  try {
    userIdentity(config.user); // secrets resolved, certificate file readable: a config problem, not a retry loop
  } catch (err) {
    if (isPlantBridgeError(err)) throw new PlantBridgeError('CONFIG_INVALID', `drivers.${config.name}.${err.message}`);
    throw new PlantBridgeError('CONFIG_INVALID', `drivers.${config.name}.user: ${(err as Error).message}`);
  }
  const nodes: NodeState[] = config.nodes.map((cfg, i) => ({ ref: cfg.ref, handle: i + 1, cfg, nodeId: cfg.nodeId, ok: false }));
  const byHandle = new Map(nodes.map((n) => [n.handle, n]));
  for (const n of nodes) {
    if (n.cfg.nodeId) {
      try {
        resolveNodeId(n.cfg.nodeId);
      } catch (err) {
        throw new PlantBridgeError('CONFIG_INVALID', `drivers.${config.name}.nodes[${n.handle - 1}].nodeId: ${JSON.stringify(n.cfg.nodeId)} is not a node id (${(err as Error).message})`);
      }
    }
  }

  const stats: Omit<OpcuaDriverStats, 'state'> = {
    connects: 0,
    connectFailures: 0,
    sessionsCreated: 0,
    sessionsReactivated: 0,
    subscriptionsCreated: 0,
    subscriptionsTransferred: 0,
    subscriptionsKept: 0,
    watchdogRecreations: 0,
    monitoredItemCalls: 0,
    itemsOk: 0,
    itemsBad: 0,
    notifications: 0,
    republished: 0,
    messagesLost: 0,
    badValues: 0,
    committed: 0,
    emitFailures: 0,
    collapsed: 0,
  };

  // ---- lifecycle state
  let stopping = false;
  let loop: Promise<void> | undefined;
  let wake: (() => void) | undefined;
  let open: OpenClient | undefined;
  /** the connection attempt under way: stop() aborts it (a connect to a server that does not answer would hold stop() for the transport timeout) */
  let attempt: AbortController | undefined;
  let session: ClientSession | undefined;
  let subscriptionId: number | undefined;
  /** false while a CreateMonitoredItems run has not finished: a subscription kept across a reconnect then
   *  lacks the items of the chunks that never went out, and is recreated whole */
  let itemsComplete = true;
  /** highest sequence number of a notification message taken from the current subscription */
  let lastSeq: number | undefined;
  let revisedPublishingMs = config.publishingInterval;
  let revisedKeepAliveCount = 1;
  let lastActivity = performance.now();
  let connected = false;
  let everUp = false;
  let connState: 'connecting' | 'up' | 'down' = 'connecting';
  let downReason = '';
  let outboxProblem: string | undefined;
  let gen = 0;

  // ---- emit queue (one pump: values leave in the order they came, per node and overall)
  let queue: Queued[] = [];
  let queuedSignals = 0;
  let pumping: Promise<void> | undefined;
  let pendingAcks: Array<{ subscriptionId: number; sequenceNumber: number }> = [];
  const maxQueued = Math.max(20_000, nodes.length * 10);

  const refreshHealth = () => {
    if (stopping) return;
    if (connState === 'down') return health.set('down', downReason);
    if (connState === 'connecting') return health.set('starting', downReason || undefined);
    const bad = nodes.filter((n) => !n.ok);
    const parts: string[] = [];
    if (bad.length > 0) {
      const list = bad.slice(0, 5).map((n) => `${n.ref} (${n.problem ?? 'not created'})`).join(', ');
      parts.push(`${bad.length} of ${nodes.length} nodes bad: ${list}${bad.length > 5 ? ', ...' : ''}`);
    }
    if (outboxProblem) parts.push(outboxProblem);
    health.set(parts.length ? 'degraded' : 'up', parts.join('; ') || undefined);
  };

  const enqueue = (item: Queued) => {
    queue.push(item);
    queuedSignals += item.signals.length;
    if (queuedSignals > maxQueued) collapse();
    if (!pumping) pumping = pump().finally(() => (pumping = undefined));
  };

  /**
   * Keeps only the latest value per node (and every ack). Used while the outbox refuses values
   * (OUTBOX_FULL) or the queue grows past its bound: counters carry their total, so the latest value
   * accounts for everything in between; per node, order is kept.
   */
  const collapse = () => {
    const latest = new Map<string, Signal>();
    const acks: Queued['ack'][] = [];
    for (const q of queue) {
      for (const s of q.signals) {
        latest.delete(s.ref);
        latest.set(s.ref, s);
      }
      if (q.ack) acks.push(q.ack);
    }
    const before = queuedSignals;
    const signals = [...latest.values()];
    queue = [{ signals }];
    for (const a of acks) queue.push({ signals: [], ack: a });
    queuedSignals = signals.length;
    stats.collapsed += before - signals.length;
  };

  const pump = async () => {
    let failures = 0;
    while (queue.length > 0) {
      const batch: Signal[] = [];
      const acks: NonNullable<Queued['ack']>[] = [];
      let take = 0;
      while (take < queue.length && (batch.length === 0 || batch.length + queue[take].signals.length <= MAX_EMIT_BATCH)) {
        batch.push(...queue[take].signals);
        const a = queue[take].ack;
        if (a) acks.push(a);
        take++;
      }
      // out of the queue while in flight: a collapse meanwhile must not touch what is being committed
      const taken = queue.splice(0, take);
      queuedSignals -= batch.length;
      try {
        if (batch.length > 0) await ctx.emit(batch);
        stats.committed += batch.length;
        for (const a of acks) if (a.subscriptionId === subscriptionId) pendingAcks.push(a);
        if (batch.length > 0) health.valueSeen();
        failures = 0;
        if (outboxProblem) {
          outboxProblem = undefined;
          log.info('The outbox accepts values again');
          refreshHealth();
        }
      } catch (err) {
        stats.emitFailures++;
        const msg = isPlantBridgeError(err) ? `${err.code}: ${err.message}` : String(err);
        if (!outboxProblem) log.error({ err: msg }, 'The outbox refuses values: holding the latest value of each node until it accepts them again');
        outboxProblem = `values not committed (${msg})`;
        refreshHealth();
        queue.unshift(...taken);
        queuedSignals += batch.length;
        collapse();
        if (stopping) return;
        await new Promise((r) => setTimeout(r, backoffDelay(failures++, 100, 2000)));
      }
    }
  };

  // ---- connection state machine
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        wake = undefined;
        resolve();
      }, ms);
      wake = () => {
        clearTimeout(t);
        wake = undefined;
        resolve();
      };
    });

  const markStale = (reason: string) => {
    if (!everUp || !connected) return;
    connected = false;
    const at = new Date();
    enqueue({ signals: nodes.filter((n) => n.ok).map((n) => staleSignal(config.name, n.ref, at, reason)) });
  };

  let loggedUntrusted: string | undefined;
  let loggedLogin: string | undefined;
  const run = async () => {
    let retries = 0;
    while (!stopping) {
      const myGen = ++gen;
      let lossReason: string;
      attempt = new AbortController();
      try {
        lossReason = await connectAndServe(myGen, attempt.signal, () => {
          retries = 0;
          loggedLogin = undefined;
        });
      } catch (err) {
        if (stopping) break; // stop() cut the attempt off: not a failure to report
        stats.connectFailures++;
        lossReason = err instanceof Error ? err.message : String(err);
        if (err instanceof ConnectError && err.untrusted) {
          // once per certificate: someone must act, and the health message keeps saying how
          if (loggedUntrusted !== err.untrusted.thumbprint) log.error({ thumbprint: err.untrusted.thumbprint, file: err.untrusted.file }, lossReason);
          loggedUntrusted = err.untrusted.thumbprint;
        } else if (err instanceof LoginError) {
          // a refused login does not heal by retrying: error, once per distinct refusal
          if (loggedLogin !== lossReason) log.error({ status: err.status }, lossReason);
          loggedLogin = lossReason;
        } else if (retries === 0 || retries % 20 === 0) {
          log.warn({ attempt: retries }, `OPC UA connection failed: ${lossReason}`);
        }
      }
      if (stopping) break; // stop() closes the session first, then the channel
      markStale('BadNoCommunication');
      await closeChannel();
      const delay = backoffDelay(retries++, BASE_RETRY_MS, Math.max(BASE_RETRY_MS, config.reconnectMaxDelay));
      connState = everUp ? 'down' : 'connecting';
      // a stable message: health logs each change, and an outage must not log every attempt
      downReason = `${lossReason.split('\n')[0]}; retrying`;
      refreshHealth();
      await waitToRetry(delay, networkFailure(lossReason));
    }
  };

  /**
   * Waits out the backoff. While the endpoint refuses TCP connections, a cheap TCP probe every 200 ms
   * ends the wait as soon as the port accepts again: the full OPC UA attempt (channel, session,
   * subscription) keeps its backoff, but a restarted PLC is not left waiting for the next slot.
   */
  const waitToRetry = async (delay: number, probe: boolean) => {
    if (!probe) return sleep(delay);
    const end = performance.now() + delay;
    let hostname: string;
    let port: string;
    try {
      const u = new URL(config.endpoint);
      hostname = u.hostname.replace(/^\[|\]$/g, '');
      port = u.port || '4840';
    } catch {
      return sleep(delay);
    }
    while (!stopping && performance.now() < end) {
      await sleep(Math.min(200, Math.max(0, end - performance.now())));
      if (stopping || performance.now() >= end) break;
      if (await tcpReachable(hostname, Number(port), 200)) break;
    }
  };

  const closeChannel = async () => {
    const o = open;
    open = undefined;
    if (o) await o.dispose();
  };

  /** One connection: resolves with the reason it ended, rejects when it could not be set up. */
  const connectAndServe = async (myGen: number, signal: AbortSignal, connectedOk: () => void): Promise<string> => {
    const o = await connectClient({
      endpoint: config.endpoint,
      securityMode: config.securityMode,
      securityPolicy: config.securityPolicy,
      stateDir: ctx.stateDir,
      trustOnFirstUse: config.trustOnFirstUse,
      log,
      requestTimeoutMs: 10_000,
      signal,
    });
    open = o;
    if (stopping || myGen !== gen) return 'stopping';
    stats.connects++;
    let lost: (reason: string) => void = () => {};
    const lostP = new Promise<string>((resolve) => (lost = resolve));
    o.client.on('close', (err?: Error | null) => lost(`connection closed${err ? `: ${err.message}` : ''}`));
    o.client.on('connection_lost', () => lost('connection lost'));

    // session: reactivate the one we had, else a new one (one session per endpoint, always)
    let reactivated = false;
    if (session) {
      try {
        await o.client.reactivateSession(session);
        reactivated = true;
        stats.sessionsReactivated++;
        log.info('Reactivated the OPC UA session on a new secure channel');
      } catch (err) {
        log.info({ reason: (err as Error).message.split('\n')[0] }, 'The previous session is gone on the server: creating a new one');
        session = undefined;
      }
    }
    if (!session) {
      try {
        session = (await o.client.createSession(userIdentity(config.user))) as ClientSession;
      } catch (err) {
        throw classifyLoginError(err, config.user, config.endpoint);
      }
      stats.sessionsCreated++;
    }
    const s = session;
    const onSessionClosed = () => lost('session closed by the server');
    s.on('session_closed', onSessionClosed);

    const changed = await resolveNodes(s);
    if (subscriptionId !== undefined && (changed || !itemsComplete)) {
      log.info(changed ? 'Browse paths resolve to other nodes now: recreating the subscription' : 'The connection ended while monitored items were being created: recreating the subscription with all of them');
      await deleteSubscription(s, subscriptionId);
      subscriptionId = undefined;
    }
    if (subscriptionId !== undefined) {
      if (reactivated ? await subscriptionAlive(s, subscriptionId) : await transferSubscription(s, subscriptionId)) {
        if (reactivated) stats.subscriptionsKept++;
        else stats.subscriptionsTransferred++;
      } else {
        subscriptionId = undefined;
      }
    }
    // a new subscription gets its monitored items once publishing runs: the first chunk's values flow
    // while the next chunks are created (10,000 items take seconds)
    let needItems = false;
    if (subscriptionId === undefined) {
      await createSubscription(s, false);
      needItems = true;
    }
    if (stopping || myGen !== gen) return 'stopping';

    // publish loop + watchdog, until the connection ends
    lastActivity = performance.now();
    let inflight = 0;
    let ended = false;
    let recreating: Promise<void> | undefined;
    const end = (reason: string) => {
      if (!ended) {
        ended = true;
        lost(reason);
      }
    };
    const sendPublish = () => {
      if (ended || stopping || myGen !== gen || recreating) return;
      inflight++;
      const acks = pendingAcks.filter((a) => a.subscriptionId === subscriptionId);
      pendingAcks = [];
      const timeoutHint = Math.max(10_000, revisedPublishingMs * revisedKeepAliveCount * 3);
      s.publish({ subscriptionAcknowledgements: acks, requestHeader: { timeoutHint } }, (err, response) => {
        inflight--;
        if (ended || myGen !== gen) return;
        if (err) {
          const m = err.message;
          log.debug({ err: m, channelValid: s.isChannelValid() }, 'Publish failed');
          // a request cut off by a broken channel: the session may well live on (reactivate it)
          if (!s.isChannelValid()) return end(`connection lost: ${statusIn(m)}`);
          // a dropped socket also ends pending requests with BadSessionClosed: the next attempt tries to
          // reactivate the session, and creates a new one only if the server no longer knows it
          if (/BadSessionIdInvalid|BadSessionClosed|BadSessionNotActivated/.test(m)) return end(`session lost: ${statusIn(m)}`);
          if (/BadConnectionClosed|Invalid Channel|BadSecureChannel|socket|ECONNRESET/i.test(m)) return end(`connection lost: ${statusIn(m)}`);
          if (/BadNoSubscription/.test(m)) {
            if (!recreating) void triggerRecreate('the server has no subscription for us (BadNoSubscription)');
            return;
          }
          if (/BadTooManyPublishRequests/.test(m)) {
            if (inflight === 0) setTimeout(sendPublish, revisedPublishingMs);
            return;
          }
          // BadTimeout and the like: ask again; the watchdog covers a server that stays silent
          setTimeout(sendPublish, Math.min(1000, revisedPublishingMs));
          return;
        }
        if (response) onPublish(response);
        if (inflight < PUBLISH_PIPELINE) sendPublish();
      });
    };

    // Publish responses are taken in order through `inbox`. A jump in the sequence numbers means a
    // response was lost (typically in flight on a channel that broke): the server keeps what it sent
    // until we acknowledge it, so the missing messages are fetched by Republish, in order, before the
    // message that revealed the gap. Without a gap this runs synchronously, with no extra cost.
    const inbox: PublishResponse[] = [];
    let draining = false;
    const onPublish = (response: PublishResponse) => {
      if (response.subscriptionId !== subscriptionId) return;
      lastActivity = performance.now();
      inbox.push(response);
      if (!draining) void drain();
    };

    const drain = async () => {
      draining = true;
      try {
        while (inbox.length > 0 && !ended) {
          const r = inbox.shift()!;
          if (r.subscriptionId !== subscriptionId) continue;
          const missing = missingBefore(r);
          if (missing.length > 0) {
            const stuck = await recover(r.subscriptionId, missing);
            if (stuck !== undefined) {
              // the connection went while recovering: nothing from here on is taken or acknowledged, so
              // the next connection sees the same gap and asks again (the server still holds them all)
              if (r.subscriptionId === subscriptionId) lastSeq = seqBefore(stuck);
              inbox.length = 0;
              return;
            }
          }
          if (r.subscriptionId !== subscriptionId) continue;
          take(r.subscriptionId, r.notificationMessage);
        }
      } finally {
        draining = false;
      }
    };

    /**
     * Sequence numbers sent but never received before this response. A data message carries its own
     * number, a keep-alive the number the next data message will get: either way, everything below
     * it should have arrived.
     */
    const missingBefore = (r: PublishResponse): number[] => {
      const nm = r.notificationMessage;
      const isData = (nm?.notificationData?.length ?? 0) > 0;
      const end = nm.sequenceNumber;
      if (lastSeq === undefined) {
        // the first message of a subscription: nothing to compare with
        lastSeq = isData ? end : seqBefore(end);
        return [];
      }
      const from = seqAfter(lastSeq);
      const gap = seqDistance(from, end);
      // an older number: a late or repeated message, taken as it is; the outbox drops a value it already
      // has by its sourceId
      if (gap >= 2 ** 31) return [];
      lastSeq = isData ? end : seqBefore(end);
      if (gap === 0) return [];
      if (gap > MAX_REPUBLISH_GAP) return (r.availableSequenceNumbers ?? []).filter((n) => seqDistance(from, n) < gap).sort((x, y) => seqDistance(from, x) - seqDistance(from, y));
      const out: number[] = [];
      for (let n = from, k = 0; k < gap; n = seqAfter(n), k++) out.push(n);
      return out;
    };

    /** Republishes the missing messages in order; returns the first one it could not ask for because the connection ended. */
    const recover = async (subId: number, missing: number[]): Promise<number | undefined> => {
      let lost = 0;
      let status = '';
      for (const seq of missing) {
        if (ended) return seq;
        if (subId !== subscriptionId) return undefined;
        try {
          const rr = await s.republish({ subscriptionId: subId, retransmitSequenceNumber: seq });
          stats.republished++;
          take(subId, rr.notificationMessage);
        } catch (err) {
          const m = (err as Error).message;
          if (ended || !s.isChannelValid()) {
            // the connection went: the next one asks again (a reactivated session keeps the subscription and lastSeq)
            log.debug({ err: m, seq }, 'Republish cut off by the connection');
            return seq;
          }
          // BadMessageNotAvailable (the server's retransmission queue overflowed), BadServiceUnsupported, a
          // timeout: given up, so that the values behind the gap flow
          lost++;
          stats.messagesLost++;
          status = statusIn(m);
        }
      }
      if (lost > 0) {
        log.warn(
          { subscriptionId: subId, lost, from: missing[0], to: missing[missing.length - 1], status },
          `${lost} notification messages were lost and Republish could not recover them (${status}): values that changed only in them are missing (counters recover with their next value)`,
        );
      } else {
        log.info({ subscriptionId: subId, recovered: missing.length }, 'Recovered lost notification messages by Republish');
      }
      return undefined;
    };

    /** One notification message into the emit queue; acknowledged to the server once committed. */
    const take = (subId: number, nm: PublishResponse['notificationMessage']) => {
      const data = nm?.notificationData ?? [];
      if (data.length === 0) return; // keep-alive
      const receivedAt = new Date();
      const signals: Signal[] = [];
      for (const ext of data as any[]) {
        if (ext?.monitoredItems) {
          for (const mi of ext.monitoredItems) {
            const n = byHandle.get(mi.clientHandle);
            if (!n) continue;
            try {
              signals.push(toSignal({ source: config.name, ref: n.ref, dataValue: mi.value, receivedAt }));
            } catch (err) {
              // one value the driver cannot read must not take the rest of the message (or the agent) with it
              stats.badValues++;
              log.warn({ ref: n.ref, err: String(err) }, 'An OPC UA value could not be read: dead-lettered, the other values go on');
              ctx.deadLetter('PAYLOAD_INVALID', `${n.ref}: the value could not be read: ${String(err).slice(0, 300)}`, String(mi.value?.toString?.() ?? '').slice(0, 64 * 1024));
            }
          }
        } else if (ext?.status && !ext.status.isGood?.()) {
          log.warn({ status: ext.status.toString() }, 'The server reports a subscription status change');
          void triggerRecreate(`subscription status ${ext.status.toString()}`);
        }
      }
      stats.notifications += signals.length;
      enqueue({ signals, ack: { subscriptionId: subId, sequenceNumber: nm.sequenceNumber } });
    };

    const triggerRecreate = async (why: string) => {
      if (recreating || ended) return;
      stats.watchdogRecreations++;
      log.warn({ subscriptionId }, `Recreating the subscription: ${why}`);
      recreating = (async () => {
        const old = subscriptionId;
        subscriptionId = undefined;
        if (old !== undefined) await deleteSubscription(s, old);
        await createSubscription(s);
        lastActivity = performance.now();
        refreshHealth();
      })()
        .catch((err) => end(`recreating the subscription failed: ${(err as Error).message.split('\n')[0]}`))
        .finally(() => {
          recreating = undefined;
          for (let i = inflight; i < PUBLISH_PIPELINE; i++) sendPublish();
        });
    };

    for (let i = 0; i < PUBLISH_PIPELINE; i++) sendPublish();
    const watchdog = setInterval(() => {
      const silentMs = performance.now() - lastActivity;
      if (!recreating && silentMs > watchdogMs()) {
        void triggerRecreate(`no data and no keep-alive for ${(silentMs / 1000).toFixed(1)} s (${config.watchdogIntervals} publishing intervals)`);
      }
    }, Math.max(50, Math.min(1000, revisedPublishingMs)));
    let stopWait: () => void = () => {};
    const stopP = new Promise<string>((resolve) => (stopWait = () => resolve('stopping')));
    stopConnection = stopWait;
    if (needItems) {
      try {
        await createItems(s, subscriptionId!);
      } catch (err) {
        end(`creating monitored items failed: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    if (stopping) stopWait();
    if (!ended && !stopping) {
      connected = true;
      everUp = true;
      connState = 'up';
      downReason = '';
      connectedOk();
      refreshHealth();
      log.info({ endpoint: config.endpoint, subscriptionId, items: nodes.filter((n) => n.ok).length }, 'OPC UA subscription is live');
    }
    const reason = await Promise.race([lostP, stopP]);
    s.off('session_closed', onSessionClosed);
    ended = true;
    clearInterval(watchdog);
    stopConnection = undefined;
    if (reason !== 'stopping') log.warn({ reason }, 'Lost the OPC UA connection: values are stale until it is back');
    return reason;
  };
  let stopConnection: (() => void) | undefined;

  // at least two keep-alive periods, and never below WATCHDOG_FLOOR_MS: a saturated server that answers
  // late must not be mistaken for a dead subscription (recreating 10,000 items takes seconds)
  const watchdogMs = () =>
    Math.max(config.watchdogIntervals * revisedPublishingMs, (revisedKeepAliveCount * 2 + 1) * revisedPublishingMs, WATCHDOG_FLOOR_MS);

  /** Resolves browse paths. Returns true when a node resolved to a different node id than before. */
  const resolveNodes = async (s: ClientSession): Promise<boolean> => {
    const withPath = nodes.filter((n) => n.cfg.browsePath);
    if (withPath.length === 0) return false;
    const limit = (await readLimit(s, VariableIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerTranslateBrowsePathsToNodeIds)) || 1000;
    let changed = false;
    for (let i = 0; i < withPath.length; i += limit) {
      const chunk = withPath.slice(i, i + limit);
      const results = await s.translateBrowsePath(chunk.map((n) => makeBrowsePath('RootFolder', n.cfg.browsePath!)));
      chunk.forEach((n, j) => {
        const r = results[j];
        const target = r.statusCode.isGood() && r.targets && r.targets.length > 0 ? r.targets[0].targetId.toString() : undefined;
        if (target !== n.nodeId) changed = true;
        n.nodeId = target;
        if (!target) {
          n.ok = false;
          n.problem = `browse path ${n.cfg.browsePath} not found: ${statusName(r.statusCode)}`;
        }
      });
    }
    return changed;
  };

  const subscriptionAlive = async (s: ClientSession, id: number): Promise<boolean> => {
    try {
      const r = await s.modifySubscription({
        subscriptionId: id,
        requestedPublishingInterval: config.publishingInterval,
        requestedLifetimeCount: lifetimeCount(),
        requestedMaxKeepAliveCount: keepAliveCount(),
        maxNotificationsPerPublish: 0,
        priority: 0,
      });
      revisedPublishingMs = r.revisedPublishingInterval;
      revisedKeepAliveCount = r.revisedMaxKeepAliveCount;
      return true;
    } catch {
      return false;
    }
  };

  const transferSubscription = async (s: ClientSession, id: number): Promise<boolean> => {
    try {
      const r = await s.transferSubscriptions({ subscriptionIds: [id], sendInitialValues: true });
      const ok = r.results?.[0]?.statusCode?.isGood() ?? false;
      if (ok) log.info({ subscriptionId: id }, 'Transferred the subscription to the new session');
      else log.info({ subscriptionId: id, status: r.results?.[0]?.statusCode?.toString() }, 'The subscription could not be transferred: recreating it');
      return ok ? await subscriptionAlive(s, id) : false;
    } catch (err) {
      log.info({ reason: (err as Error).message.split('\n')[0] }, 'The subscription could not be transferred: recreating it');
      return false;
    }
  };

  const deleteSubscription = async (s: ClientSession, id: number) => {
    try {
      await withTimeout(s.deleteSubscriptions({ subscriptionIds: [id] }), 2000);
    } catch {
      // best effort: a stuck subscription also ends by its lifetime on the server
    }
  };

  const keepAliveCount = () => Math.max(1, Math.floor(config.watchdogIntervals / 3));
  const lifetimeCount = () => Math.max(keepAliveCount() * 3, Math.ceil(120_000 / Math.max(1, config.publishingInterval)));

  const createSubscription = async (s: ClientSession, withItems = true) => {
    const r = await s.createSubscription({
      requestedPublishingInterval: config.publishingInterval,
      requestedLifetimeCount: lifetimeCount(),
      requestedMaxKeepAliveCount: keepAliveCount(),
      maxNotificationsPerPublish: 0,
      publishingEnabled: true,
      priority: 0,
    });
    subscriptionId = r.subscriptionId;
    lastSeq = undefined;
    revisedPublishingMs = r.revisedPublishingInterval;
    revisedKeepAliveCount = r.revisedMaxKeepAliveCount;
    pendingAcks = [];
    stats.subscriptionsCreated++;
    if (withItems) await createItems(s, r.subscriptionId);
  };

  const createItems = async (s: ClientSession, subId: number) => {
    const limit = await readLimit(s, VariableIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall);
    let chunk = limit > 0 ? Math.min(limit, 1000) : 1000;
    const todo = nodes.filter((n) => n.nodeId);
    for (const n of nodes) if (!n.nodeId) n.ok = false;
    // until its chunk is answered, a node has no item in this subscription (not the last one's "ok")
    for (const n of todo) {
      n.ok = false;
      n.problem = `no monitored item yet for ${n.nodeId}`;
    }
    itemsComplete = false;
    for (let i = 0; i < todo.length; ) {
      const part = todo.slice(i, i + chunk);
      let res;
      try {
        stats.monitoredItemCalls++;
        res = await s.createMonitoredItems({
          subscriptionId: subId,
          timestampsToReturn: TimestampsToReturn.Both,
          itemsToCreate: part.map((n) => ({
            itemToMonitor: { nodeId: resolveNodeId(n.nodeId!), attributeId: AttributeIds.Value },
            monitoringMode: MonitoringMode.Reporting,
            requestedParameters: {
              clientHandle: n.handle,
              samplingInterval: n.cfg.samplingInterval,
              queueSize: n.cfg.queueSize,
              discardOldest: n.cfg.discardOldest,
              filter: n.cfg.deadband
                ? new DataChangeFilter({
                    trigger: DataChangeTrigger.StatusValue,
                    deadbandType: n.cfg.deadband.type === 'absolute' ? DeadbandType.Absolute : DeadbandType.Percent,
                    deadbandValue: n.cfg.deadband.value,
                  })
                : null,
            },
          })),
        });
      } catch (err) {
        if (/BadTooManyOperations/.test((err as Error).message) && chunk > 1) {
          chunk = Math.max(1, Math.floor(chunk / 2));
          log.info({ chunk }, 'The server refused the chunk size for CreateMonitoredItems: using smaller calls');
          continue;
        }
        throw err;
      }
      part.forEach((n, j) => {
        const sc = res.results?.[j]?.statusCode;
        n.ok = !!sc && sc.isGood();
        n.problem = n.ok ? undefined : `${statusName(sc)} for ${n.nodeId}${filterRefused(n, statusName(sc))}`;
      });
      i += part.length;
    }
    itemsComplete = true;
    stats.itemsOk = nodes.filter((n) => n.ok).length;
    stats.itemsBad = nodes.length - stats.itemsOk;
    const bad = nodes.filter((n) => !n.ok);
    if (bad.length > 0) {
      log.warn({ bad: bad.slice(0, 20).map((n) => ({ ref: n.ref, problem: n.problem })), count: bad.length }, `${bad.length} of ${nodes.length} nodes could not be monitored; the others flow`);
      const at = new Date();
      enqueue({
        signals: bad.map((n) => ({
          ...staleSignal(config.name, n.ref, at, n.problem?.split(' ')[0] ?? 'Bad'),
          sourceId: `${config.name}/${n.ref}/${at.toISOString()}/unmonitored`,
          meta: { statusCode: n.problem?.split(' ')[0] ?? 'Bad', serverTimestamp: null, overflow: false, problem: n.problem },
        })),
      });
    }
  };

  return {
    name: config.name,
    type: 'opcua',
    async start() {
      if (loop) return;
      stopping = false;
      if (config.allowInsecure && (config.securityMode === 'None' || ['None', 'Basic128Rsa15', 'Basic256'].includes(config.securityPolicy))) {
        log.warn({ securityMode: config.securityMode, securityPolicy: config.securityPolicy }, 'Insecure OPC UA connection allowed by allowInsecure: anyone on the network can read or alter these values');
      }
      health.set('starting', `connecting to ${config.endpoint}`);
      loop = run();
    },
    async stop() {
      stopping = true;
      stopConnection?.();
      wake?.();
      // Whatever the state: in the backoff the loop ends at once; a connect in progress (a server that
      // accepts TCP but does not answer holds it for the 10 s transport timeout) is cut off at once; an
      // attempt with a channel gets STOP_GRACE_MS to finish its requests, so that a session it created is
      // closed on the server below rather than left there for its timeout, and is then cut off too.
      if (!open) attempt?.abort();
      if (loop && !(await settlesWithin(loop, STOP_GRACE_MS))) {
        log.info('Stopping: cutting off the connection attempt under way');
        attempt?.abort();
        void open?.client.disconnect().catch(() => {}); // its requests in flight fail at once
      }
      await loop;
      loop = undefined;
      attempt = undefined;
      // drain: what was received is committed if the outbox takes it
      await pumping;
      if (queue.length > 0) {
        pumping = pump().finally(() => (pumping = undefined));
        await withTimeout(pumping, 5000).catch(() => {});
      }
      const s = session;
      session = undefined;
      if (s) {
        try {
          await withTimeout(s.close(true), 2000);
        } catch (err) {
          log.debug({ err: (err as Error).message }, 'Closing the session failed: the server ends it by its timeout');
        }
      }
      await closeChannel();
      subscriptionId = undefined;
      health.set('stopped');
    },
    health: () => health.get(),
    stats: () => ({ ...stats, state: health.get().state }),
  };
}

async function readLimit(s: ClientSession, variableId: number): Promise<number> {
  try {
    const dv = await s.read({ nodeId: resolveNodeId(`ns=0;i=${variableId}`), attributeId: AttributeIds.Value });
    if (dv.statusCode !== StatusCodes.Good && !dv.statusCode.isGood()) return 0;
    const v = Number(dv.value?.value ?? 0);
    return Number.isFinite(v) && v > 0 ? v : 0;
  } catch {
    return 0;
  }
}

/** Says which configured filter the server refused: a bare BadMonitoredItemFilterUnsupported does not tell the operator what to change. */
function filterRefused(n: NodeState, status: string): string {
  const d = n.cfg.deadband;
  if (!d || !/Filter|Deadband/.test(status)) return '';
  return `: the server refused deadband ${d.type} ${d.value}${d.type === 'percent' ? ' (a percent deadband needs an AnalogItem with an EURange)' : ''}`;
}

function networkFailure(reason: string): boolean {
  return /cannot connect|connection (lost|closed)|ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ETIMEDOUT|BadConnectionClosed|BadSessionClosed|session lost|cannot be established/i.test(reason);
}

function tcpReachable(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = netConnect({ host, port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

function statusIn(message: string): string {
  return /Bad[A-Za-z]+/.exec(message)?.[0] ?? message.split('\n')[0];
}

/** true when p settled (either way) within ms */
function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return withTimeout(
    p.then(
      () => true,
      () => true,
    ),
    ms,
  ).catch(() => false);
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
