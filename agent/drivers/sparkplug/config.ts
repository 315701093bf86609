import { z } from 'zod';
import { byteSize, duration, type Resolved } from '../../../contracts/index.ts';
import { mqttConnectionShape, refineConnection } from '../mqtt/config.ts';

const sparkplugId = z.string().min(1).max(100).regex(/^[^/#+]+$/, 'a Sparkplug id has no /, # or +');

export const sparkplugConfigSchema = z
  .strictObject({
    type: z.literal('sparkplug'),
    ...mqttConnectionShape,
    /** Sparkplug B group ids to read (spBv1.0/<group>/#); "+" reads every group */
    groups: z.array(z.union([sparkplugId, z.literal('+')])).min(1).default(['+']),
    /** on a seq gap: ask the edge node for a Rebirth (NCMD Node Control/Rebirth), or only warn */
    onSeqGap: z.enum(['rebirth', 'warn']).default('rebirth'),
    /** ask for a Rebirth when data arrives from a node (or with an alias) whose birth this agent has not seen */
    rebirthOnUnknown: z.boolean().default(true),
    /** at most one Rebirth request per edge node within this time */
    rebirthMinInterval: duration.prefault('5s'),
    /** act as a Sparkplug 3.0 primary host application: publish spBv1.0/STATE/<hostId> (retained, with a will) */
    primaryHost: z.strictObject({ hostId: sparkplugId }).optional(),
    /** larger payloads are acknowledged and dead-lettered (PAYLOAD_INVALID) */
    maxPayloadBytes: byteSize.prefault('1MiB'),
  })
  .superRefine(refineConnection)
  .meta({ description: 'Sparkplug B host application: births define metrics and aliases, data by alias, deaths mark sources stale' });

export type SparkplugConfig = Resolved<z.infer<typeof sparkplugConfigSchema>>;
