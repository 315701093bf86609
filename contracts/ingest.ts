import { z } from 'zod';
import { errorCodeList, type ErrorCode } from './errors.ts';
import { idString, isoTime, nonEmpty, schemaField } from './wire.ts';

export const INGEST_MAX_ITEMS = 1000;

/**
 * `POST /v1/ingest` body. Items are validated one by one on the hub (validateTransaction), so that one
 * bad item is rejected alone and the rest of the batch is stored: the batch schema itself only checks
 * the frame and that items are objects.
 */
export const ingestBatchSchema = z.strictObject({
  schema: schemaField('ingest-batch', 1, 0),
  batchId: idString,
  agentId: idString,
  sentAt: isoTime,
  items: z.array(z.record(z.string(), z.unknown())).min(1).max(INGEST_MAX_ITEMS),
});
export type IngestBatch = z.infer<typeof ingestBatchSchema>;

export const outcomeSchema = z.strictObject({
  state: z.enum(['pending', 'posted', 'failed']),
  erpRef: nonEmpty(100).optional(),
  postedAt: isoTime.optional(),
  code: z.enum(errorCodeList as [ErrorCode, ...ErrorCode[]]).optional(),
  message: z.string().max(1000).optional(),
});
export type Outcome = z.infer<typeof outcomeSchema>;

export const itemResultSchema = z.strictObject({
  id: z.string().max(200),
  idempotencyKey: z.string().max(300),
  status: z.enum(['accepted', 'duplicate', 'rejected']),
  code: z.enum(errorCodeList as [ErrorCode, ...ErrorCode[]]).optional(),
  reason: z.string().max(2000).optional(),
  /** for duplicates: the original item's outcome so far */
  outcome: outcomeSchema.optional(),
});
export type ItemResult = z.infer<typeof itemResultSchema>;

export const ingestResultSchema = z.strictObject({
  schema: schemaField('ingest-result', 1, 0),
  batchId: idString,
  receivedAt: isoTime,
  results: z.array(itemResultSchema),
});
export type IngestResult = z.infer<typeof ingestResultSchema>;

/** `GET /v1/agents/me/outcomes?since=<cursor>` — ERP outcomes of the calling agent's transactions, oldest first. */
export const outcomesQuerySchema = z.strictObject({
  // 15 digits stay below 2^53: a longer cursor would round to another one
  since: z.string().regex(/^\d{1,15}$/, 'expected a cursor from an earlier answer (at most 15 digits), or 0').optional(),
  limit: z.string().regex(/^\d{1,4}$/, 'expected a number 1-1000').optional(),
});

export const outcomesResponseSchema = z.strictObject({
  schema: schemaField('agent-outcomes', 1, 0),
  /** pass back as `since` to get what came after */
  cursor: z.string(),
  /** true when the answer was cut at `limit`: ask again at once */
  more: z.boolean(),
  items: z.array(z.strictObject({ idempotencyKey: z.string().max(300), outcome: outcomeSchema })),
});
export type OutcomesResponse = z.infer<typeof outcomesResponseSchema>;

/** `POST /v1/enroll` — a one-time enrollment token (24 h, single use) for a long-lived agent credential. */
export const enrollRequestSchema = z.strictObject({
  schema: schemaField('enroll-request', 1, 0),
  token: z.string().min(16).max(200).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces'),
  /** the agent id in agent.yaml; when given it must match the id the token was issued for */
  agentId: idString.optional(),
});
export type EnrollRequest = z.infer<typeof enrollRequestSchema>;

export const enrollResponseSchema = z.strictObject({
  schema: schemaField('enroll-response', 1, 0),
  agentId: idString,
  plants: z.array(nonEmpty(64)).min(1),
  /** the bearer credential: shown once, stored by the agent (mode 0600), kept by the hub as a hash only */
  credential: z.string().min(16).max(200),
});
export type EnrollResponse = z.infer<typeof enrollResponseSchema>;
