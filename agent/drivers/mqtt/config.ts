import { z } from 'zod';
import { byteSize, duration, secretRef, urlWithScheme, type Resolved } from '../../../contracts/index.ts';
import { driverName } from '../driver-config.ts';
import { parseFilter, placeholdersOf } from './topic-filter.ts';

/**
 * Connection options shared by the `mqtt` and `sparkplug` drivers (both use agent/drivers/mqtt/mqtt-session.ts).
 * TLS is chosen by the URL scheme (mqtts://, wss://); a `tls` block with a plain scheme is a config error, so
 * a TLS configuration can never end up talking plain TCP.
 */
export const mqttConnectionShape = {
  name: driverName,
  url: urlWithScheme(['mqtt', 'mqtts', 'ws', 'wss'], 'mqtt://host:1883 or mqtts://host:8883'),
  /** 4 = MQTT 3.1.1, 5 = MQTT 5 */
  protocolVersion: z.union([z.literal(4), z.literal(5)]).default(5),
  /** the broker keeps this client's session (subscriptions and queued QoS 1 messages) under this id: keep it stable */
  clientId: z.string().min(1).max(128),
  username: z.string().min(1).optional(),
  password: secretRef.optional(),
  tls: z
    .strictObject({
      /** PEM file of the CA that signed the broker's certificate (default: the system's trusted CAs) */
      ca: z.string().min(1).optional(),
      /** PEM file of this agent's client certificate (mutual TLS) */
      cert: z.string().min(1).optional(),
      /** the client certificate's private key, PEM: a secret reference (file:/etc/plantbridge/mqtt.key) */
      key: secretRef.optional(),
      /** passphrase of an encrypted key */
      passphrase: secretRef.optional(),
      /** TLS server name to verify when it differs from the URL host */
      servername: z.string().min(1).optional(),
      rejectUnauthorized: z.literal(true).default(true),
    })
    .optional(),
  /** MQTT 5 session expiry; with 3.1.1 the broker's persistent_client_expiration applies */
  sessionExpiry: duration.prefault('7d'),
  keepalive: duration.prefault('30s'),
  connectTimeout: duration.prefault('10s'),
  /** reconnect backoff: full jitter between base and this cap, forever */
  reconnectMaxDelay: duration.prefault('30s'),
  /**
   * Unacknowledged QoS 1 messages the broker may have in flight to this client. MQTT 5: sent to the broker
   * as Receive Maximum (default 3000). MQTT 3.1.1: the broker decides (Mosquitto max_inflight_messages,
   * default 20); set this to the same number (default 20). A batch is committed as soon as this many
   * messages wait for their ack, so the broker never stalls on a full window.
   */
  receiveMaximum: z.number().int().min(1).max(65535).optional(),
  /** at most this many messages per outbox commit */
  maxBatch: z.number().int().min(1).max(10_000).default(1000),
};

const JSON_PATH = /^\$(\.[A-Za-z0-9_-]+|\[\d+\])*$/;

/** Where a field of the signal comes from: a JSON path into the payload, a topic level, or a constant. */
const fieldPick = z.union([
  z.strictObject({
    json: z.string().regex(JSON_PATH, 'expected a path such as $.order or $.items[0].qty'),
    /** a missing optional field is left out; a missing required one dead-letters the message (SCHEMA_INVALID) */
    optional: z.boolean().default(false),
  }),
  z.strictObject({ topic: z.string().regex(/^[A-Za-z0-9_-]+$/, 'expected the name of a +level in the filter') }),
  z.strictObject({ const: z.union([z.string(), z.number(), z.boolean()]) }),
]);
export type FieldPick = z.infer<typeof fieldPick>;

export const mqttSubscriptionSchema = z
  .strictObject({
    /** topic filter with named levels: plant/+line/+machine/events (+ and # may stay unnamed) */
    filter: z.string().min(1).max(1000),
    qos: z.union([z.literal(0), z.literal(1)]).default(1),
    format: z.enum(['json']).default('json'),
    /** the signal ref; may use {level} placeholders from named topic levels */
    ref: z.string().min(1).max(500),
    fields: z
      .strictObject({
        /** the event's own id: the dedupe key when present */
        id: fieldPick.optional(),
        /** event time (ISO 8601 string, or epoch ms number); the signal's sourceTime */
        time: fieldPick.optional(),
        /** the signal value; without it the value is an object of the other fields, or the whole payload */
        value: fieldPick.optional(),
        /** a per-topic monotonic sequence number: the dedupe key when there is no id */
        sequence: fieldPick.optional(),
      })
      .catchall(fieldPick)
      .prefault({}),
    /**
     * auto: key by id, else topic + sequence, else topic + event time + payload digest (one of the three is
     * required). arrival: topic + arrival time + digest — a redelivery after a crash may be committed twice.
     */
    dedupe: z.enum(['auto', 'arrival']).default('auto'),
    /** retained messages are state: committed as baseline signals (never deltas), or ignored */
    retained: z.enum(['state', 'ignore']).default('state'),
  })
  .superRefine((s, ctx) => {
    let names: string[];
    try {
      names = parseFilter(s.filter).levels.map((l) => l.name);
    } catch (err) {
      ctx.addIssue({ code: 'custom', path: ['filter'], message: (err as Error).message });
      return;
    }
    for (const [key, pick] of Object.entries(s.fields)) {
      if (pick && 'topic' in pick && !names.includes(pick.topic)) {
        ctx.addIssue({
          code: 'custom',
          path: ['fields', key, 'topic'],
          message: `the filter has no level named "${pick.topic}" (named levels: ${names.join(', ') || 'none; name one like plant/+line/events'})`,
        });
      }
    }
    for (const p of placeholdersOf(s.ref)) {
      if (!names.includes(p)) {
        ctx.addIssue({ code: 'custom', path: ['ref'], message: `{${p}} is not a named level of the filter (named levels: ${names.join(', ') || 'none'})` });
      }
    }
    if (s.dedupe === 'auto' && !s.fields.id && !s.fields.sequence && !s.fields.time) {
      ctx.addIssue({
        code: 'custom',
        path: ['fields'],
        message: 'a dedupe key that survives redelivery needs fields.id, fields.sequence or fields.time (or set dedupe: arrival and accept duplicates after a crash)',
      });
    }
  });

export const mqttConfigSchema = z
  .strictObject({
    type: z.literal('mqtt'),
    ...mqttConnectionShape,
    /** larger payloads are acknowledged and dead-lettered (PAYLOAD_INVALID) */
    maxPayloadBytes: byteSize.prefault('256KiB'),
    /**
     * worker (default): payloads are decoded, mapped and committed on a thread of their own with a second
     * outbox connection, so the MQTT client never waits for them; main: all on the agent's main thread.
     * Acknowledgement after the commit is the same either way (README.md, "Commit thread").
     */
    commitThread: z.enum(['worker', 'main']).default('worker'),
    subscriptions: z.array(mqttSubscriptionSchema).min(1),
  })
  .superRefine(refineConnection)
  .meta({ description: 'MQTT client (3.1.1 or 5) for JSON machine events; acknowledges each QoS 1 message only after its outbox commit' });

/** Cross-field checks every MQTT-based driver shares. */
export function refineConnection(c: { url: string; tls?: unknown; password?: unknown; username?: string }, ctx: z.RefinementCtx): void {
  const scheme = c.url.split(':')[0];
  if (c.tls && (scheme === 'mqtt' || scheme === 'ws')) {
    ctx.addIssue({
      code: 'custom',
      path: ['url'],
      message: `tls is configured but the url uses ${scheme}://: use ${scheme === 'mqtt' ? 'mqtts' : 'wss'}:// (a TLS configuration never connects in plain text)`,
    });
  }
  if (c.password && !c.username) ctx.addIssue({ code: 'custom', path: ['username'], message: 'a password needs a username' });
}

export type MqttConfig = Resolved<z.infer<typeof mqttConfigSchema>>;
export type MqttSubscription = MqttConfig['subscriptions'][number];
/** The connection part of any MQTT-based driver's config, secrets resolved. */
export type MqttConnectionConfig = Pick<
  MqttConfig,
  | 'name'
  | 'url'
  | 'protocolVersion'
  | 'clientId'
  | 'username'
  | 'password'
  | 'tls'
  | 'sessionExpiry'
  | 'keepalive'
  | 'connectTimeout'
  | 'reconnectMaxDelay'
  | 'receiveMaximum'
  | 'maxBatch'
>;
