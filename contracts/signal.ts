import { z } from 'zod';
import { isoTime, nonEmpty } from './wire.ts';

/**
 * A normalised observation from a driver (DESIGN.md §2). Signals live inside the agent: they are
 * committed to the outbox as raw events, and rules derive transactions from them.
 */
export const signalSchema = z.strictObject({
  /** the driver instance name from agent.yaml, e.g. "line7-plc" */
  source: nonEmpty(64),
  /** what was observed within that source: a configured tag name, a node id, a topic, a metric */
  ref: nonEmpty(500),
  value: z.union([z.number(), z.string(), z.boolean(), z.null(), z.record(z.string(), z.unknown())]),
  quality: z.enum(['good', 'uncertain', 'bad']),
  /** when the machine says it happened (OPC UA sourceTimestamp, payload time, Sparkplug timestamp) */
  sourceTime: isoTime,
  /** when the agent received it */
  receivedAt: isoTime,
  /**
   * The dedupe key. It MUST have locality (source + monotonic sequence, or a time-ordered key), never a
   * random hash as its leading part: MQTT message id, Sparkplug bdSeq+seq, OPC UA ref+sourceTime+value.
   */
  sourceId: nonEmpty(300),
  /** set when this value must not produce a delta (first sight, Sparkplug birth) */
  baseline: z.boolean().optional(),
  /** driver-specific extras: OPC UA status code and overflow bit, server timestamp, MQTT topic fields */
  meta: z.record(z.string(), z.unknown()).optional(),
});

export type Signal = z.infer<typeof signalSchema>;
export type SignalValue = Signal['value'];
