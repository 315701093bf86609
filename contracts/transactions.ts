import { z } from 'zod';
import { derivedFrom, envelopeFields, isoTime, nonEmpty, postingDate, quantity, schemaField, schemaId } from './wire.ts';

export const TX_TYPES = {
  ProductionConfirmation: 'production-confirmation',
  MaterialConsumption: 'material-consumption',
  GoodsReceipt: 'goods-receipt',
} as const;
export type TransactionType = keyof typeof TX_TYPES;

const MINOR = 0;

export const productionConfirmationSchema = z.strictObject({
  schema: schemaField(TX_TYPES.ProductionConfirmation, 1, MINOR),
  ...envelopeFields,
  data: z.strictObject({
    order: nonEmpty(40),
    operation: nonEmpty(10).optional(),
    sequence: nonEmpty(10).optional(),
    material: nonEmpty(40).optional(),
    yield: quantity,
    scrap: quantity.extend({ reasonCode: nonEmpty(40).optional() }).optional(),
    rework: quantity.optional(),
    /** none: partial; auto: the ERP decides (SAP '1'); final: last confirmation of the operation */
    final: z.enum(['none', 'auto', 'final']),
    postingDate,
    window: z.strictObject({
      from: isoTime,
      to: isoTime,
      counterRef: nonEmpty(200),
      counterStart: z.number().finite(),
      counterEnd: z.number().finite(),
      resetDetected: z.boolean(),
    }),
    derivedFrom,
  }),
});

export const materialConsumptionSchema = z.strictObject({
  schema: schemaField(TX_TYPES.MaterialConsumption, 1, MINOR),
  ...envelopeFields,
  data: z.strictObject({
    order: nonEmpty(40),
    operation: nonEmpty(10).optional(),
    material: nonEmpty(40),
    batch: nonEmpty(40).optional(),
    storageLocation: nonEmpty(10).optional(),
    quantity,
    movement: z.enum(['issue', 'reversal']),
    postingDate,
    derivedFrom,
  }),
});

export const goodsReceiptSchema = z.strictObject({
  schema: schemaField(TX_TYPES.GoodsReceipt, 1, MINOR),
  ...envelopeFields,
  data: z.strictObject({
    order: nonEmpty(40),
    material: nonEmpty(40),
    batch: nonEmpty(40).optional(),
    storageLocation: nonEmpty(10).optional(),
    quantity,
    manufactureDate: postingDate.optional(),
    serials: z.array(nonEmpty(60)).max(1000).optional(),
    postingDate,
    derivedFrom,
  }),
});

export type ProductionConfirmation = z.infer<typeof productionConfirmationSchema>;
export type MaterialConsumption = z.infer<typeof materialConsumptionSchema>;
export type GoodsReceipt = z.infer<typeof goodsReceiptSchema>;
export type Transaction = ProductionConfirmation | MaterialConsumption | GoodsReceipt;

export const transactionSchemas = {
  [TX_TYPES.ProductionConfirmation]: productionConfirmationSchema,
  [TX_TYPES.MaterialConsumption]: materialConsumptionSchema,
  [TX_TYPES.GoodsReceipt]: goodsReceiptSchema,
} as const;

/** Any transaction: dispatched on the `schema` field so errors name the right fields. */
export const transactionSchema = z.union([productionConfirmationSchema, materialConsumptionSchema, goodsReceiptSchema]);

export function txSchemaId(type: TransactionType): string {
  return schemaId(TX_TYPES[type], 1, MINOR);
}

export function transactionTypeOf(tx: { schema: string }): TransactionType | undefined {
  for (const [name, slug] of Object.entries(TX_TYPES)) {
    if (tx.schema.startsWith(`plantbridge.${slug}/`)) return name as TransactionType;
  }
  return undefined;
}

/**
 * Idempotency keys are bound to their plant (issue #22): a key starts with the transaction's plant and a
 * colon (`1010:WC-01:…`, as every rule derives it). Keys are unique across the hub, so without this an
 * agent of one plant could store another plant's future keys first and have that plant's real
 * transactions refused. The hub refuses any other key (PLANT_MISMATCH, audited with the sender).
 */
export function keyBelongsToPlant(tx: { idempotencyKey: string; plant: string }): boolean {
  return tx.idempotencyKey.length > tx.plant.length + 1 && tx.idempotencyKey.startsWith(`${tx.plant}:`);
}
