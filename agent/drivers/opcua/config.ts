import { z } from 'zod';
import { duration, secretRef, urlWithScheme, type Resolved } from '../../../contracts/index.ts';
import { driverName } from '../driver-config.ts';

export const securityModes = ['None', 'Sign', 'SignAndEncrypt'] as const;
export const securityPolicies = ['None', 'Basic256Sha256', 'Aes128_Sha256_RsaOaep', 'Aes256_Sha256_RsaPss', 'Basic128Rsa15', 'Basic256'] as const;
/** OPC UA built-in data types (Part 6, 5.1.2) a configured node may declare */
export const builtInTypes = [
  'Boolean', 'SByte', 'Byte', 'Int16', 'UInt16', 'Int32', 'UInt32', 'Int64', 'UInt64', 'Float', 'Double', 'String',
  'DateTime', 'Guid', 'ByteString', 'XmlElement', 'NodeId', 'ExpandedNodeId', 'StatusCode', 'QualifiedName',
  'LocalizedText', 'ExtensionObject', 'DataValue', 'Variant', 'DiagnosticInfo',
] as const;
const insecurePolicies = new Set(['None', 'Basic128Rsa15', 'Basic256']);

export const opcuaNodeSchema = z.strictObject({
  /** the name rules refer to (`counter: {source: line7-plc, ref: good}`) */
  ref: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected a short tag name such as good, scrap, order'),
  nodeId: z.string().min(3).max(500).optional(),
  /** alternative to nodeId: /Objects/2:Line7/2:GoodCount (resolved at start and after every reconnect) */
  browsePath: z.string().min(2).max(1000).optional(),
  samplingInterval: duration.default(500),
  queueSize: z.number().int().min(1).max(10_000).default(10),
  discardOldest: z.boolean().default(true),
  deadband: z
    .strictObject({ type: z.enum(['absolute', 'percent']), value: z.number().nonnegative() })
    .optional(),
  /** the data type this node must have; `check-config --live` verifies it */
  dataType: z.enum(builtInTypes).optional(),
});

export const opcuaConfigSchema = z
  .strictObject({
    type: z.literal('opcua'),
    name: driverName,
    endpoint: urlWithScheme(['opc.tcp'], 'opc.tcp://host:port'),
    securityMode: z.enum(securityModes).default('SignAndEncrypt'),
    securityPolicy: z.enum(securityPolicies).default('Basic256Sha256'),
    /** required for securityMode None and the deprecated policies; a warning is logged at start */
    allowInsecure: z.boolean().default(false),
    trustOnFirstUse: z.boolean().default(false),
    user: z
      .union([
        z.strictObject({ type: z.literal('anonymous') }),
        z.strictObject({ type: z.literal('username'), username: z.string().min(1), password: secretRef }),
        z.strictObject({ type: z.literal('certificate'), certificate: z.string().min(1), privateKey: secretRef }),
      ])
      .default({ type: 'anonymous' }),
    publishingInterval: duration.default(500),
    /** a subscription with neither data nor keep-alive for this many publishing intervals is recreated */
    watchdogIntervals: z.number().int().min(2).max(1000).default(10),
    /** cap of the jittered exponential reconnect backoff; connect attempts are cheap, a long gap is not */
    reconnectMaxDelay: duration.default(2000),
    nodes: z.array(opcuaNodeSchema).min(1).max(100_000),
  })
  .superRefine((c, ctx) => {
    if ((c.securityMode === 'None' || insecurePolicies.has(c.securityPolicy)) && !c.allowInsecure) {
      ctx.addIssue({
        code: 'custom',
        path: ['allowInsecure'],
        message: `securityMode ${c.securityMode} / securityPolicy ${c.securityPolicy} is insecure: set allowInsecure: true to accept it, or use SignAndEncrypt with Basic256Sha256`,
      });
    }
    if ((c.securityMode === 'None') !== (c.securityPolicy === 'None')) {
      ctx.addIssue({ code: 'custom', path: ['securityPolicy'], message: 'securityMode None goes with securityPolicy None, and only with it' });
    }
    const seen = new Set<string>();
    c.nodes.forEach((n, i) => {
      if (!n.nodeId === !n.browsePath) {
        ctx.addIssue({ code: 'custom', path: ['nodes', i], message: 'give exactly one of nodeId or browsePath' });
      }
      if (n.deadband?.type === 'percent' && n.deadband.value > 100) {
        ctx.addIssue({ code: 'custom', path: ['nodes', i, 'deadband', 'value'], message: 'a percent deadband is a share of the EURange: 0 to 100' });
      }
      if (seen.has(n.ref)) ctx.addIssue({ code: 'custom', path: ['nodes', i, 'ref'], message: `duplicate ref "${n.ref}"` });
      seen.add(n.ref);
    });
  })
  .meta({ description: 'OPC UA client: subscribes to tags on one server endpoint' });

export type OpcuaConfig = Resolved<z.infer<typeof opcuaConfigSchema>>;
