import { z } from 'zod';
import { duration } from '../../../contracts/index.ts';
import { activeOrderSchema } from '../active-order.ts';
import { jsonPath } from '../field-pick.ts';
import { shiftSchema } from '../shift-calendar.ts';

const signalRef = {
  /** driver instance name */
  source: z.string().min(1).max(64),
  /** the tag / topic ref within that driver */
  ref: z.string().min(1).max(500),
};

export const counterSchema = z.strictObject({
  ...signalRef,
  /**
   * resetting: a PLC counter that may be reset (a drop is a reset); total: a never-resetting total such
   * as PackML AccCount (a drop that is not a wrap is quarantined); increment: each signal carries the
   * number of parts to add (cycle-complete events), deduped by the outbox on the event id.
   */
  counts: z.enum(['resetting', 'total', 'increment']).default('resetting'),
  /** where the number is when the value is an object ($.AccCount, $.good); default: the value itself */
  field: jsonPath.optional(),
  /** register width: the counter wraps from its maximum to 0 */
  wrap: z.enum(['uint16', 'uint32', 'uint64']).default('uint32'),
  /** when a resetting counter drops without a wrap: count the new value from zero, or drop that delta */
  onReset: z.enum(['count-from-zero', 'drop']).default('count-from-zero'),
  /** a larger delta is quarantined (COUNTER_JUMP) with an alert, never posted */
  maxJump: z.number().int().positive().default(100_000),
  /**
   * A baseline signal (first sight, reconnect, Sparkplug birth, retained message): rebaseline takes the
   * value without a delta; count (for never-resetting totals) counts a plausible increase across it.
   */
  onBaseline: z.enum(['rebaseline', 'count']).default('rebaseline'),
});
export type CounterConfig = z.infer<typeof counterSchema>;

const component = z.strictObject({
  material: z.string().min(1).max(40),
  /** component quantity per produced unit */
  perUnit: z.number().positive(),
  uom: z.string().min(1).max(8),
  /** only for orders producing this material (a work center running several products) */
  forMaterial: z.string().min(1).max(40).optional(),
  /** which produced quantity consumes: good parts, or good + scrap (+ rework) */
  basis: z.enum(['yield', 'yield-and-scrap']).default('yield-and-scrap'),
  storageLocation: z.string().min(1).max(10).optional(),
  batch: z.string().min(1).max(40).optional(),
});

export const consumptionSchema = z.discriminatedUnion('mode', [
  /** one MaterialConsumption per component with every confirmation: perUnit x produced */
  z.strictObject({ mode: z.literal('per-unit'), components: z.array(component).min(1).max(100) }),
  /** consumption comes from events (a map-event rule emitting material-consumption): this rule emits none */
  z.strictObject({ mode: z.literal('events') }),
  /** the ERP backflushes on confirmation: nothing is emitted, and no rule may post consumption here */
  z.strictObject({ mode: z.literal('backflush') }),
]);

export const countProductionConfigSchema = z
  .strictObject({
    type: z.literal('count-production'),
    id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'expected a short id of lowercase letters, digits and dashes'),
    workCenter: z.string().min(1).max(64),
    counter: counterSchema,
    scrapCounter: counterSchema.optional(),
    reworkCounter: counterSchema.optional(),
    /** scrap reason code sent with the scrap quantity */
    scrapReason: z.string().min(1).max(40).optional(),
    /** the order (and operation, material, unit) currently running: from a tag, the counter events, or fixed */
    activeOrder: activeOrderSchema,
    /** material produced, when the order source does not name it */
    material: z.string().min(1).max(40).optional(),
    uom: z.string().min(1).max(8).default('EA'),
    emitEvery: z
      .strictObject({
        /** close the window when it holds this many parts (good + scrap + rework) */
        parts: z.number().int().positive().default(100),
        /** close the window at the latest this long after it opened (agent clock, checked every second) */
        maxInterval: duration.prefault('5m'),
        /** do not close on the parts threshold before the window is this old (source time); 0 = off */
        minInterval: duration.prefault(0),
        /** an order change always closes the open window: no part is confirmed against the next order */
        onOrderChange: z.literal(true).default(true),
        /** close at each shift end of the calendar below */
        onShiftEnd: z.boolean().default(true),
      })
      .prefault({}),
    /** shift calendar in the plant's time zone (agent.timeZone); a shift ends where the next begins */
    shifts: z.array(shiftSchema).max(24).optional(),
    /** posting date in the plant's time zone: of the window's last event, or of the day its shift began */
    postingDate: z.enum(['event', 'shift-start']).default('event'),
    /** final confirmation when this signal turns true (job complete); omitted: never final */
    final: z
      .strictObject({
        ...signalRef,
        /** where the flag is when the value is an object */
        field: jsonPath.optional(),
        /** rising: a tag turning true (JobComplete); event: every event on this ref (an "order finished" message) */
        trigger: z.enum(['rising', 'event']).default('rising'),
        /** the order the event finishes, when it names one (default: the order active at its source time) */
        orderPath: jsonPath.optional(),
        operationPath: jsonPath.optional(),
        /** final: last confirmation of the operation; auto: the ERP decides (SAP '1') */
        type: z.enum(['final', 'auto']).default('final'),
      })
      .optional(),
    consumption: consumptionSchema.optional(),
    mode: z.enum(['live', 'shadow']).optional(),
  })
  .superRefine((c, ctx) => {
    if (c.shifts) {
      const starts = new Set<string>();
      c.shifts.forEach((s, i) => {
        if (starts.has(s.start)) ctx.addIssue({ code: 'custom', path: ['shifts', i, 'start'], message: `two shifts start at ${s.start}` });
        starts.add(s.start);
      });
    }
    if (c.postingDate === 'shift-start' && !c.shifts?.length) {
      ctx.addIssue({ code: 'custom', path: ['postingDate'], message: 'postingDate shift-start needs a shift calendar (shifts)' });
    }
    const counters = [c.counter, c.scrapCounter, c.reworkCounter].filter((x) => x !== undefined);
    const seen = new Set<string>();
    for (const k of counters) {
      const id = `${k.source}\u0000${k.ref}\u0000${k.field ?? ''}`;
      if (seen.has(id)) ctx.addIssue({ code: 'custom', path: ['scrapCounter'], message: `two counters read the same value ${k.source}/${k.ref}${k.field ? ` ${k.field}` : ''}` });
      seen.add(id);
    }
    if (c.consumption?.mode === 'per-unit') {
      const comps = new Set<string>();
      c.consumption.components.forEach((k, i) => {
        const id = `${k.material}\u0000${k.forMaterial ?? ''}`;
        if (comps.has(id)) ctx.addIssue({ code: 'custom', path: ['consumption', 'components', i, 'material'], message: `component ${k.material} is listed twice` });
        comps.add(id);
      });
    }
  })
  .meta({ description: 'Counts good (scrap, rework) parts and confirms them against the active order, with optional consumption per unit' });

export type CountProductionConfig = z.infer<typeof countProductionConfigSchema>;
