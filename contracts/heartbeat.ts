import { z } from 'zod';
import { idString, isoTime, nonEmpty, schemaField, wireText } from './wire.ts';

export const driverStates = ['starting', 'up', 'degraded', 'down', 'stopped'] as const;
export type DriverState = (typeof driverStates)[number];

export const driverHealthSchema = z.strictObject({
  name: nonEmpty(64),
  type: nonEmpty(32),
  state: z.enum(driverStates),
  since: isoTime,
  message: wireText(1000).optional(),
  lastValueAt: isoTime.optional(),
});
export type DriverHealthReport = z.infer<typeof driverHealthSchema>;

export const agentHeartbeatSchema = z.strictObject({
  schema: schemaField('agent-heartbeat', 1, 0),
  id: idString,
  agentId: idString,
  plant: nonEmpty(64),
  sentAt: isoTime,
  version: nonEmpty(40),
  uptimeS: z.number().nonnegative(),
  configVersion: nonEmpty(80),
  mode: z.enum(['live', 'shadow']),
  drivers: z.array(driverHealthSchema).max(200),
  outbox: z.strictObject({
    pending: z.number().int().nonnegative(),
    oldestPendingAgeS: z.number().nonnegative(),
    deadLetters: z.number().int().nonnegative(),
    bytes: z.number().int().nonnegative(),
    diskFreeBytes: z.number().int().nonnegative(),
    full: z.boolean(),
  }),
  rates: z.strictObject({
    signalsPerS: z.number().nonnegative(),
    forwardedPerS: z.number().nonnegative(),
  }),
  alarms: z.array(z.strictObject({ code: nonEmpty(40), message: wireText(1000), since: isoTime })).max(100),
  clockOffsetMs: z.number().optional(),
});
export type AgentHeartbeat = z.infer<typeof agentHeartbeatSchema>;
