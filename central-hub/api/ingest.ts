import type { FastifyInstance, FastifyRequest } from 'fastify';
import {
  PlantBridgeError,
  ingestBatchSchema,
  issuesToText,
  keyBelongsToPlant,
  schemaId,
  validateFast,
  validateTransaction,
  type IngestResult,
  type ItemResult,
  type Transaction,
} from '../../contracts/index.ts';
import type { HubContext } from '../hub-context.ts';
import { requireAgent } from './auth.ts';
import { parseJsonBytes } from './json-body.ts';

/**
 * POST /v1/ingest — strict, per-item results (DESIGN.md §2 "Accept"). A bad item is rejected alone; a
 * write for a plant the credential does not cover refuses the whole batch (403, audited, nothing stored).
 */
export function ingestRoutes(app: FastifyInstance, ctx: HubContext): void {
  const { metrics } = ctx;
  // authentication runs before the body is read, and the rate limits (rate-limit.ts) around it: refused
  // requests cost no parsing. Per address generously: several agents may share one (a plant's NAT).
  const rateLimit = { perCaller: ctx.config.hub.rateLimitPerAgent, perAddress: Math.max(200, 10 * ctx.config.hub.rateLimitPerAgent) };
  const onRequest = requireAgent(ctx);
  const handler = async (req: FastifyRequest) => {
    const store = ctx.store;
    const agent = req.agent!;
    const frame = validateFast(ingestBatchSchema, req.body);
    if (!frame.ok) throw new PlantBridgeError('SCHEMA_INVALID', issuesToText(frame.issues), { details: frame.issues, correlationId: req.id });
    // the items as parsed, not zod's copies: a copy drops an own "__proto__" key the item schema must see and reject
    const batch = { ...frame.value, items: (req.body as { items: Array<Record<string, unknown>> }).items };
    if (batch.agentId !== agent.id) {
      await store.audit({ actor: `agent:${agent.id}`, action: 'ingest.agent_mismatch', target: agent.id, detail: { agentId: batch.agentId.slice(0, 200), batchId: batch.batchId, ip: req.ip } });
      throw new PlantBridgeError('SCHEMA_INVALID', `agentId "${batch.agentId}" does not match the credential's agent "${agent.id}"`, { correlationId: req.id });
    }
    const results: Array<ItemResult | undefined> = new Array(batch.items.length);
    const valid: Array<{ index: number; tx: Transaction }> = [];
    const foreignPlants = new Set<string>();
    // items naming another agent, and keys outside their plant: refused one by one, audited once per batch
    const otherAgents: string[] = [];
    const keysOutsidePlant: string[] = [];
    // every item stored as parsed (not a copy made by validation): the received text can be stored as is
    let asParsed = true;
    batch.items.forEach((item, index) => {
      const v = validateTransaction(item);
      if (v.ok && v.value !== item) asParsed = false;
      const id = typeof item.id === 'string' ? item.id.slice(0, 200) : '';
      const key = typeof item.idempotencyKey === 'string' ? item.idempotencyKey.slice(0, 300) : '';
      if (!v.ok) {
        const code = v.unsupported ? 'SCHEMA_UNSUPPORTED' : 'SCHEMA_INVALID';
        results[index] = { id, idempotencyKey: key, status: 'rejected', code, reason: issuesToText(v.issues).slice(0, 2000) };
        metrics.rejected.inc({ code });
        return;
      }
      if (!agent.plants.includes(v.value.plant)) foreignPlants.add(v.value.plant);
      if (v.value.agentId !== agent.id) {
        results[index] = { id, idempotencyKey: key, status: 'rejected', code: 'SCHEMA_INVALID', reason: `agentId "${v.value.agentId}" is not the sender "${agent.id}"` };
        metrics.rejected.inc({ code: 'SCHEMA_INVALID' });
        otherAgents.push(v.value.agentId);
        return;
      }
      if (!keyBelongsToPlant(v.value)) {
        results[index] = { id, idempotencyKey: key, status: 'rejected', code: 'PLANT_MISMATCH', reason: `idempotencyKey must start with the item's plant "${v.value.plant}:" (keys are bound to their plant); not stored` };
        metrics.rejected.inc({ code: 'PLANT_MISMATCH' });
        keysOutsidePlant.push(key);
        return;
      }
      valid.push({ index, tx: v.value });
    });
    if (foreignPlants.size > 0) {
      metrics.rejected.inc({ code: 'PLANT_MISMATCH' }, batch.items.length);
      await store.audit({ actor: `agent:${agent.id}`, action: 'ingest.plant_mismatch', target: agent.id, detail: { plants: [...foreignPlants], allowed: agent.plants, batchId: batch.batchId, items: batch.items.length, ip: req.ip } });
      req.log.warn({ agentId: agent.id, plants: [...foreignPlants] }, 'Agent tried to write for a plant it is not enrolled for');
      throw new PlantBridgeError('PLANT_MISMATCH', `agent ${agent.id} may write for ${agent.plants.join(', ')} only, not ${[...foreignPlants].join(', ')}`, { correlationId: req.id });
    }
    if (keysOutsidePlant.length > 0) {
      // the sender is the one audited: it tried to take keys of another plant's namespace before that plant could
      await store.audit({ actor: `agent:${agent.id}`, action: 'ingest.key_outside_plant', target: agent.id, detail: { keys: keysOutsidePlant.slice(0, 20), items: keysOutsidePlant.length, batchId: batch.batchId, ip: req.ip } });
      req.log.warn({ agentId: agent.id, items: keysOutsidePlant.length }, "Agent sent idempotency keys outside its items' plant: refused");
    }
    if (otherAgents.length > 0) {
      await store.audit({ actor: `agent:${agent.id}`, action: 'ingest.agent_mismatch', target: agent.id, detail: { agentIds: [...new Set(otherAgents)].slice(0, 20), items: otherAgents.length, batchId: batch.batchId, ip: req.ip } });
    }
    if (valid.length > 0) {
      const itemsJson = asParsed && valid.length === batch.items.length ? receivedItems.get(req.body as object) : undefined;
      const stored = await store.ingest(agent.id, valid.map((v) => v.tx), new Date(), { batchId: batch.batchId, ...(itemsJson ? { itemsJson } : {}) });
      let accepted = 0;
      let duplicates = 0;
      const conflicts: string[] = [];
      const perPlant = new Map<string, number>();
      stored.forEach((r, i) => {
        results[valid[i].index] = r;
        if (r.status === 'accepted') {
          accepted++;
          const plant = valid[i].tx.plant;
          perPlant.set(plant, (perPlant.get(plant) ?? 0) + 1);
        } else if (r.status === 'duplicate') duplicates++;
        else conflicts.push(r.idempotencyKey);
      });
      if (conflicts.length > 0) {
        // a key already stored for another plant (store.ingest refused the item): audited like a cross-plant write
        metrics.rejected.inc({ code: 'PLANT_MISMATCH' }, conflicts.length);
        await store.audit({ actor: `agent:${agent.id}`, action: 'ingest.key_of_another_plant', target: agent.id, detail: { keys: conflicts.slice(0, 20), items: conflicts.length, batchId: batch.batchId, ip: req.ip } });
        req.log.warn({ agentId: agent.id, items: conflicts.length }, 'Agent sent idempotency keys that belong to another plant\'s transactions: refused');
      }
      // one metrics update per batch and plant, not per item
      for (const [plant, n] of perPlant) metrics.received.inc({ plant }, n);
      if (duplicates) metrics.duplicate.inc(duplicates);
      if (accepted > 0) ctx.notifyAccepted();
    }
    const body: IngestResult = {
      schema: schemaId('ingest-result', 1, 0),
      batchId: batch.batchId,
      receivedAt: new Date().toISOString(),
      results: results as ItemResult[],
    };
    return body;
  };
  // Own scope: only this route parses JSON with plain JSON.parse (see parseIngestJson).
  void app.register(async (scope) => {
    // bytes, decoded once: as a string, fastify decodes each chunk and joins them (a second heap copy of
    // the ~1 MB body per request, which the hub paid for in garbage collection)
    scope.addContentTypeParser('application/json', { parseAs: 'buffer' }, parseIngestJson);
    scope.post('/v1/ingest', { onRequest, bodyLimit: ctx.config.hub.bodyLimit, config: { rateLimit } }, handler);
  });
}

/**
 * The ingest body parser: plain JSON.parse, without secure-json-parse's scans of the whole body for
 * "__proto__" and "constructor". Prototype poisoning stays impossible: JSON.parse makes such keys plain
 * own properties (it never sets a prototype), nothing reads the body before validation, and the frame
 * and item schemas are strict, so such a key is an unknown field: a 400 at the frame, a per-item
 * rejection in an item (central-hub/api/ingest.test.ts posts both). Empty and broken bodies fail with
 * fastify's own errors, as with its default parser. Bytes that are not UTF-8 are refused: decoding them
 * would store U+FFFD in their place, a posting changed without anyone being told.
 */
function parseIngestJson(_req: FastifyRequest, body: string | Buffer, done: (err: Error | null, body?: unknown) => void): void {
  const r = parseJsonBytes(body);
  if (!r.ok) return done(r.err);
  const parsed = r.value;
  if (typeof body !== 'string' && parsed !== null && typeof parsed === 'object') {
    const items = itemsText(body);
    if (items) receivedItems.set(parsed, items);
  }
  done(null, parsed);
}

/** parsed ingest body -> the bytes of its items array, as received (see itemsText) */
const receivedItems = new WeakMap<object, Buffer>();

/** The frame's four other fields, each once, as plain strings, in the agent's order, then the items. */
const FRAME_HEAD = /^\{"schema":"[^"\\]*","batchId":"[^"\\]*","agentId":"[^"\\]*","sentAt":"[^"\\]*","items":\[/;

/**
 * The items array of a frame laid out as the agent sends it (serialiseBatch): the head above, the items,
 * then `}` as the last byte. A view of the body, no copy. The head's strings hold no quote or backslash,
 * so the "items" key seen is the frame's own; and if the bytes from its `[` to the end are one JSON
 * array, they are exactly the items parsed. They are not one array only when a later key follows (a frame
 * with "items" twice): the store finds that out when it parses them, and serialises the parsed items.
 * Any other layout gives undefined, and the store serialises.
 */
export function itemsText(body: Buffer): Buffer | undefined {
  if (body.length < 2 || body[body.length - 1] !== 0x7d || body[body.length - 2] !== 0x5d) return undefined;
  const head = FRAME_HEAD.exec(body.toString('latin1', 0, Math.min(body.length, 1024)));
  if (!head) return undefined;
  return body.subarray(head[0].length - 1, body.length - 1);
}
