import { z } from 'zod';
import { activeOrderSchema } from '../active-order.ts';
import { fieldPick, jsonPath } from '../field-pick.ts';

const signalRef = z.strictObject({
  source: z.string().min(1).max(64),
  ref: z.string().min(1).max(500),
});

const condition = z.strictObject({
  json: jsonPath,
  /** the picked value equals this, or one of these */
  equals: z.union([z.string(), z.number(), z.boolean()]).optional(),
  in: z.array(z.union([z.string(), z.number(), z.boolean()])).min(1).optional(),
});

/** Fields of the emitted transaction; each a pick ({json: $.x}, {signal: sourceTime}, {const: v}). */
const fields = z.strictObject({
  order: fieldPick.optional(),
  operation: fieldPick.optional(),
  material: fieldPick.optional(),
  batch: fieldPick.optional(),
  storageLocation: fieldPick.optional(),
  uom: fieldPick.optional(),
  /** production-confirmation */
  yield: fieldPick.optional(),
  scrap: fieldPick.optional(),
  rework: fieldPick.optional(),
  scrapReason: fieldPick.optional(),
  /** production-confirmation: none | auto | final, or a boolean (true = final) */
  final: fieldPick.optional(),
  /** material-consumption and goods-receipt */
  quantity: fieldPick.optional(),
  /** material-consumption: issue | reversal (default issue; a negative quantity becomes a reversal) */
  movement: fieldPick.optional(),
});

export const mapEventConfigSchema = z
  .strictObject({
    type: z.literal('map-event'),
    id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'expected a short id of lowercase letters, digits and dashes'),
    workCenter: z.string().min(1).max(64).optional(),
    /** the events: one or more (source, ref) pairs */
    inputs: z.array(signalRef).min(1).max(100),
    /** all conditions must hold for an event to be mapped (e.g. $.type equals "cycle-complete") */
    when: z.array(condition).max(10).default([]),
    /** the transaction type to emit */
    emit: z.enum(['production-confirmation', 'material-consumption', 'goods-receipt']),
    /** the event's business id (default: the signal's dedupe id, sourceId) */
    eventId: fieldPick.optional(),
    /** appended to the key (`plant:source:eventId:suffix`) when several rules map the same event */
    keySuffix: z.string().regex(/^[A-Za-z0-9_-]{1,20}$/).optional(),
    fields,
    /** when the event does not name the order: the order active at the event's source time */
    activeOrder: activeOrderSchema.optional(),
    uom: z.string().min(1).max(8).default('EA'),
    mode: z.enum(['live', 'shadow']).optional(),
  })
  .superRefine((c, ctx) => {
    const need = (key: keyof typeof c.fields, why: string) => {
      if (!c.fields[key]) ctx.addIssue({ code: 'custom', path: ['fields', key], message: `${c.emit} needs fields.${key} (${why})` });
    };
    if (!c.fields.order && !c.activeOrder) ctx.addIssue({ code: 'custom', path: ['fields', 'order'], message: 'give fields.order or an activeOrder' });
    if (c.activeOrder && 'fromCounter' in c.activeOrder) {
      ctx.addIssue({ code: 'custom', path: ['activeOrder'], message: 'map-event reads the order from the event with fields.order; fromCounter is for count-production' });
    }
    if (c.emit === 'production-confirmation' && !c.fields.yield && !c.fields.final) need('yield', 'the good quantity, or fields.final for a final confirmation');
    if (c.emit !== 'production-confirmation') {
      need('quantity', 'how much');
      need('material', 'which material');
      for (const k of ['yield', 'scrap', 'rework', 'scrapReason', 'final'] as const) {
        if (c.fields[k]) ctx.addIssue({ code: 'custom', path: ['fields', k], message: `fields.${k} is for production-confirmation, not ${c.emit}` });
      }
    } else {
      for (const k of ['quantity', 'movement', 'batch', 'storageLocation'] as const) {
        if (c.fields[k]) ctx.addIssue({ code: 'custom', path: ['fields', k], message: `fields.${k} is not part of a production-confirmation` });
      }
    }
    if (c.emit === 'goods-receipt' && c.fields.movement) ctx.addIssue({ code: 'custom', path: ['fields', 'movement'], message: 'fields.movement is for material-consumption' });
    c.when.forEach((w, i) => {
      if ((w.equals === undefined) === (w.in === undefined)) ctx.addIssue({ code: 'custom', path: ['when', i], message: 'give exactly one of equals or in' });
    });
  })
  .meta({ description: 'Maps an event (cycle complete, material loaded, order finished) to one transaction with field picks and constants' });

export type MapEventConfig = z.infer<typeof mapEventConfigSchema>;
