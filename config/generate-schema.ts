import { writeFileSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { agentConfigSchema } from '../agent/config/schema.ts';
import { hubConfigSchema } from '../central-hub/config/schema.ts';

/**
 * Writes config/schema/*.json from the Zod schemas (the single source of truth). `--check` fails when a
 * generated file is stale; config/schema.test.ts runs that check in `npm test`.
 */
const here = dirname(fileURLToPath(import.meta.url));

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
  for (const [name, text] of Object.entries(generatedSchemas())) {
    const file = join(here, 'schema', name);
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
