import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { agentConfigSchema } from '../agent/config/schema.ts';
import { hubConfigSchema } from '../central-hub/config/schema.ts';
import {
  agentHeartbeatSchema,
  goodsReceiptSchema,
  ingestBatchSchema,
  ingestResultSchema,
  materialConsumptionSchema,
  productionConfirmationSchema,
  signalSchema,
} from '../contracts/index.ts';

/**
 * Writes config/schema/*.json from the Zod schemas (the single source of truth). `--check` fails when a
 * generated file is stale; config/schema.test.ts runs that check in `npm test`.
 */
const here = dirname(fileURLToPath(import.meta.url));

/** Wire contracts (v1): one Zod schema per type yields the TypeScript type and this JSON Schema. */
export function generatedContractSchemas(): Record<string, string> {
  const gen = (schema: z.ZodType, name: string, title: string) => {
    const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
    return `${JSON.stringify({ $id: `https://plantbridge.dev/schema/v1/${name}`, title, ...json }, null, 2)}\n`;
  };
  return {
    'production-confirmation.schema.json': gen(productionConfirmationSchema, 'production-confirmation.schema.json', 'plantbridge.production-confirmation/1.x'),
    'material-consumption.schema.json': gen(materialConsumptionSchema, 'material-consumption.schema.json', 'plantbridge.material-consumption/1.x'),
    'goods-receipt.schema.json': gen(goodsReceiptSchema, 'goods-receipt.schema.json', 'plantbridge.goods-receipt/1.x'),
    'ingest-batch.schema.json': gen(ingestBatchSchema, 'ingest-batch.schema.json', 'plantbridge.ingest-batch/1.x (items are validated one by one)'),
    'ingest-result.schema.json': gen(ingestResultSchema, 'ingest-result.schema.json', 'plantbridge.ingest-result/1.x'),
    'agent-heartbeat.schema.json': gen(agentHeartbeatSchema, 'agent-heartbeat.schema.json', 'plantbridge.agent-heartbeat/1.x'),
    'signal.schema.json': gen(signalSchema, 'signal.schema.json', 'Signal (inside the agent)'),
  };
}

export function generatedSchemas(): Record<string, string> {
  const gen = (schema: z.ZodType, id: string, title: string) => {
    const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
    return `${JSON.stringify({ $id: id, title, ...json }, null, 2)}\n`;
  };
  return {
    'agent.schema.json': gen(agentConfigSchema, 'https://plantbridge.dev/schema/agent.schema.json', 'PlantBridge agent configuration (agent.yaml)'),
    'hub.schema.json': gen(hubConfigSchema, 'https://plantbridge.dev/schema/hub.schema.json', 'PlantBridge hub configuration (hub.yaml)'),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const check = process.argv.includes('--check');
  let stale = 0;
  const targets = [
    ...Object.entries(generatedSchemas()).map(([name, text]) => [join(here, 'schema', name), text]),
    ...Object.entries(generatedContractSchemas()).map(([name, text]) => [join(here, '..', 'contracts', 'schema', name), text]),
  ];
  mkdirSync(join(here, '..', 'contracts', 'schema'), { recursive: true });
  for (const [file, text] of targets) {
    if (check) {
      let current = '';
      try {
        current = readFileSync(file, 'utf8');
      } catch {
        // missing counts as stale
      }
      if (current !== text) {
        process.stderr.write(`${file} is stale: run npm run gen:schema\n`);
        stale++;
      }
    } else {
      writeFileSync(file, text);
      process.stdout.write(`wrote ${file}\n`);
    }
  }
  process.exitCode = stale ? 1 : 0;
}
