import { z } from 'zod';
import { byteSize, duration, secretRef, timeZone, urlWithScheme, type Resolved } from '../../contracts/index.ts';
import { simulatorConfigSchema } from '../drivers/simulator/config.ts';
import { opcuaConfigSchema } from '../drivers/opcua/config.ts';
import { mqttConfigSchema } from '../drivers/mqtt/config.ts';
import { sparkplugConfigSchema } from '../drivers/sparkplug/config.ts';
import { countProductionConfigSchema } from '../rules/count-production/config.ts';
import { mapEventConfigSchema } from '../rules/map-event/config.ts';
import { checkRuleReferences } from '../rules/config-checks.ts';

/**
 * agent.yaml — the single source of truth for the agent's configuration: types, defaults and docs
 * come from here, and `config/schema/agent.schema.json` is generated from it (npm run gen:schema).
 */

export const driverConfigSchema = z.discriminatedUnion('type', [simulatorConfigSchema, opcuaConfigSchema, mqttConfigSchema, sparkplugConfigSchema]);
export const ruleConfigSchema = z.discriminatedUnion('type', [countProductionConfigSchema, mapEventConfigSchema]);

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
    hub: z
      .strictObject({
        url: urlWithScheme(['http', 'https'], 'https://hub.example.com:8443'),
        /** the agent's credential; `plantbridge-agent enroll` writes it to <stateDir>/hub-credential (use file:<that path>) */
        token: secretRef,
        /** PEM file of the CA that signed the hub's certificate (relative to agent.yaml's folder) */
        ca: z.string().min(1).optional(),
        /** PEM files of this agent's client certificate (subject CN = agent.id) and its key, for a hub with mutual TLS (hub.tls.clientCa) */
        clientCert: z.string().min(1).optional(),
        clientKey: z.string().min(1).optional(),
        /** SHA-256 fingerprint of the hub's certificate (AB:CD:… or hex), pinned: only that certificate is accepted */
        fingerprint: z
          .string()
          .regex(/^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$|^[0-9A-Fa-f]{64}$/, 'expected a SHA-256 fingerprint: 64 hex digits, optionally colon-separated (openssl x509 -noout -fingerprint -sha256)')
          .optional(),
        /** plain http:// to a hub that is not on this machine must be asked for explicitly (a TLS-terminating proxy on a trusted network) */
        allowPlainHttp: z.boolean().default(false),
        batchSize: z.number().int().min(1).max(1000).default(500),
        /** a batch is also cut at this many bytes of JSON */
        maxBatchBytes: byteSize.prefault('4MiB'),
        /** requests in flight at once (items of one work center and order are never in two of them) */
        inFlight: z.number().int().min(1).max(4).default(2),
        /** gzip request bodies: pays off on slow WAN links only, costs CPU on a LAN */
        gzip: z.boolean().default(false),
        requestTimeout: duration.prefault('30s'),
        retryMaxDelay: duration.prefault('60s'),
        heartbeatInterval: duration.prefault('15s'),
        /** how often the agent asks the hub for ERP outcomes of its transactions */
        outcomesInterval: duration.prefault('30s'),
      })
      .superRefine((h, ctx) => {
        const u = new URL(h.url);
        const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(u.hostname) || u.hostname.startsWith('127.');
        if ((h.clientCert === undefined) !== (h.clientKey === undefined)) {
          ctx.addIssue({ code: 'custom', path: [h.clientCert === undefined ? 'clientCert' : 'clientKey'], message: 'hub.clientCert and hub.clientKey go together: give both, or neither' });
        }
        if (u.protocol === 'http:' && !loopback && !h.allowPlainHttp) {
          ctx.addIssue({ code: 'custom', path: ['url'], message: `plain http:// to ${u.hostname} sends the credential unencrypted: use https://, or set hub.allowPlainHttp: true behind a trusted TLS-terminating proxy` });
        }
      }),
    outbox: z
      .strictObject({
        /** full: fsync on every commit before sources are acknowledged. normal: faster, a power loss may lose the last commits */
        synchronous: z.enum(['full', 'normal']).default('full'),
        maxBytes: byteSize.prefault('10GiB'),
        minFreeDiskBytes: byteSize.prefault('1GiB'),
        /** sent transactions are kept this long (lineage, re-send to a hub restored from backup) */
        retentionDays: z.number().int().min(0).max(365).default(7),
        /** raw events are ~95% of the file: kept for dedupe and lineage, shorter by default */
        eventRetentionDays: z.number().min(0).max(365).default(1),
        /** node:sqlite: Node's built-in SQLite, for Linux servers with glibc < 2.34 where the prebuilt addon cannot load */
        driver: z.enum(['better-sqlite3', 'node:sqlite']).default('better-sqlite3'),
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
    checkRuleReferences(c, ctx);
  });

export type AgentConfig = Resolved<z.infer<typeof agentConfigSchema>>;
export type DriverConfig = AgentConfig['drivers'][number];
export type RuleConfig = AgentConfig['rules'][number];
export { driverName } from '../drivers/driver-config.ts';
export { secretRef };
