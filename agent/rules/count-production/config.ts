import { z } from 'zod';
import { duration } from '../../../contracts/index.ts';

const signalRef = z.strictObject({
  /** driver instance name */
  source: z.string().min(1).max(64),
  /** the tag / topic ref within that driver */
  ref: z.string().min(1).max(500),
});

export const counterSchema = signalRef.extend({
  /** register width: the counter wraps from its maximum to 0 */
  wrap: z.enum(['uint16', 'uint32', 'uint64']).default('uint32'),
  /** when the value drops without a wrap: count the new value from zero, or drop that delta */
  onReset: z.enum(['count-from-zero', 'drop']).default('count-from-zero'),
  /** a larger delta is quarantined (COUNTER_JUMP), never posted */
  maxJump: z.number().int().positive().default(100_000),
});

export const countProductionConfigSchema = z
  .strictObject({
    type: z.literal('count-production'),
    id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'expected a short id of lowercase letters, digits and dashes'),
    workCenter: z.string().min(1).max(64),
    counter: counterSchema,
    scrapCounter: counterSchema.optional(),
    /** the order (and operation) currently running: from a tag, or fixed */
    activeOrder: z.union([
      signalRef.extend({ operation: z.string().min(1).max(10).default('0010') }),
      z.strictObject({ order: z.string().min(1).max(40), operation: z.string().min(1).max(10).default('0010') }),
    ]),
    material: z.string().min(1).max(40).optional(),
    uom: z.string().min(1).max(8).default('EA'),
    emitEvery: z
      .strictObject({
        parts: z.number().int().positive().default(100),
        maxInterval: duration.prefault('5m'),
        onOrderChange: z.literal(true).default(true),
      })
      .prefault({}),
    mode: z.enum(['live', 'shadow']).optional(),
  })
  .meta({ description: 'Counts good (and scrap) parts and confirms them against the active order' });

export type CountProductionConfig = z.infer<typeof countProductionConfigSchema>;
