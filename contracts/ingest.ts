import { z } from 'zod';
import { errorCodeList } from './errors.ts';
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
  code: z.enum(errorCodeList as [string, ...string[]]).optional(),
  message: z.string().max(1000).optional(),
});
export type Outcome = z.infer<typeof outcomeSchema>;

export const itemResultSchema = z.strictObject({
  id: z.string().max(200),
  idempotencyKey: z.string().max(300),
  status: z.enum(['accepted', 'duplicate', 'rejected']),
  code: z.enum(errorCodeList as [string, ...string[]]).optional(),
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
