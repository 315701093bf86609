import { z } from 'zod';
import { duration } from '../../../contracts/index.ts';
import { driverName } from '../driver-config.ts';

export const simulatorConfigSchema = z
  .strictObject({
    type: z.literal('simulator'),
    name: driverName,
    /** how often the simulated line produces */
    interval: duration.default(1000),
    /** good parts per tick */
    partsPerTick: z.number().int().positive().max(1_000_000).default(5),
    /** one part in N is scrap (0: none) */
    scrapEvery: z.number().int().nonnegative().default(20),
    /** the order changes after this many parts */
    orderSize: z.number().int().positive().default(200),
    /** first order number; the next ones count up */
    firstOrder: z.number().int().positive().default(1000100),
    operation: z.string().min(1).max(10).default('0010'),
    /** the counter wraps like a PLC register of this width */
    counterBits: z.union([z.literal(16), z.literal(32)]).default(32),
  })
  .meta({ description: 'A deterministic simulated line: good and scrap counters and an order tag. For demos and tests.' });

export type SimulatorConfig = z.infer<typeof simulatorConfigSchema>;
