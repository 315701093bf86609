import { z } from 'zod';
import { byteSize, duration, secretRef, timeZone, urlWithScheme, type Resolved } from '../../contracts/index.ts';
import { simulatorConfigSchema } from '../drivers/simulator/config.ts';
import { opcuaConfigSchema } from '../drivers/opcua/config.ts';
import { mqttConfigSchema } from '../drivers/mqtt/config.ts';
import { countProductionConfigSchema } from '../rules/count-production/config.ts';

/**
 * agent.yaml — the single source of truth for the agent's configuration: types, defaults and docs
 * come from here, and `config/schema/agent.schema.json` is generated from it (npm run gen:schema).
 */

export const driverConfigSchema = z.discriminatedUnion('type', [simulatorConfigSchema, opcuaConfigSchema, mqttConfigSchema]);
export const ruleConfigSchema = z.discriminatedUnion('type', [countProductionConfigSchema]);

export const agentConfigSchema = z
  .strictObject({
    agent: z.strictObject({
      /** unique in the fleet; the hub credential is bound to it */
      id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/, 'expected letters, digits, dot, dash or underscore, e.g. edge-p1-01'),
      /** ERP plant code this agent writes for */
      plant: z.string().min(1).max(64),
      timeZone: timeZone.default('UTC'),
      /** outbox, PKI, credentials; relative paths are relative to the config file */
      stateDir: z.string().min(1).default('./data/agent'),
      /** shadow: derive and store transactions, forward nothing */
      mode: z.enum(['live', 'shadow']).default('live'),
    }),
    log: z
      .strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info') })
      .prefault({}),
    status: z
      .strictObject({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(9464),
      })
      .prefault({}),
    hub: z.strictObject({
      url: urlWithScheme(['http', 'https'], 'https://hub.example.com:8443'),
      token: secretRef,
      /** PEM file of the CA that signed the hub's certificate */
      ca: z.string().min(1).optional(),
      batchSize: z.number().int().min(1).max(1000).default(500),
      requestTimeout: duration.prefault('30s'),
      retryMaxDelay: duration.prefault('60s'),
      heartbeatInterval: duration.prefault('15s'),
    }),
    outbox: z
      .strictObject({
        /** full: fsync on every commit before sources are acknowledged. normal: faster, a power loss may lose the last commits */
        synchronous: z.enum(['full', 'normal']).default('full'),
        maxBytes: byteSize.prefault('10GiB'),
        minFreeDiskBytes: byteSize.prefault('1GiB'),
        retentionDays: z.number().int().min(0).max(365).default(7),
        groupCommitDelay: duration.default(5),
        groupCommitRows: z.number().int().min(1).max(10_000).default(1000),
      })
      .prefault({}),
    drivers: z.array(driverConfigSchema).min(1, 'at least one driver is needed'),
    rules: z.array(ruleConfigSchema).default([]),
  })
  .superRefine((c, ctx) => {
    const drivers = new Map<string, (typeof c.drivers)[number]>();
    c.drivers.forEach((d, i) => {
      if (drivers.has(d.name)) ctx.addIssue({ code: 'custom', path: ['drivers', i, 'name'], message: `duplicate driver name "${d.name}"` });
      drivers.set(d.name, d);
    });
    const ids = new Set<string>();
    c.rules.forEach((r, i) => {
      if (ids.has(r.id)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'id'], message: `duplicate rule id "${r.id}"` });
      ids.add(r.id);
      const refs: Array<[string, { source: string; ref: string } | undefined]> = [
        ['counter', r.counter],
        ['scrapCounter', r.scrapCounter],
        ['activeOrder', 'source' in r.activeOrder ? r.activeOrder : undefined],
      ];
      for (const [key, ref] of refs) {
        if (!ref) continue;
        const d = drivers.get(ref.source);
        if (!d) {
          ctx.addIssue({
            code: 'custom',
            path: ['rules', i, key, 'source'],
            message: `no driver named "${ref.source}" (drivers: ${[...drivers.keys()].join(', ')})`,
          });
        } else if (d.type === 'opcua' && !d.nodes.some((n) => n.ref === ref.ref)) {
          ctx.addIssue({
            code: 'custom',
            path: ['rules', i, key, 'ref'],
            message: `driver "${d.name}" has no node with ref "${ref.ref}" (refs: ${d.nodes.map((n) => n.ref).join(', ')})`,
          });
        }
      }
    });
  });

export type AgentConfig = Resolved<z.infer<typeof agentConfigSchema>>;
export type DriverConfig = AgentConfig['drivers'][number];
export type RuleConfig = AgentConfig['rules'][number];
export { driverName } from '../drivers/driver-config.ts';
export { secretRef };
