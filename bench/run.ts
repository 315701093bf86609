/**
 * `npm run bench -- <name> [--json] [suite flags…]` runs bench/<name>.ts on the pinned Node 24.
 * Each suite prints one JSON object per result line with --json (DESIGN.md §8):
 * {"bench","metric","value","unit","baseline","baseline_value","ratio"}.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const here = import.meta.dirname;
const suites = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.endsWith('.test.ts') && !f.startsWith('bench-kit'))
  .map((f) => f.replace(/\.ts$/, ''));
const [name, ...rest] = process.argv.slice(2);
if (!name || name === '--help' || !existsSync(join(here, `${name}.ts`))) {
  process.stderr.write(`usage: npm run bench -- <suite> [--json] [options]\nsuites: ${suites.join(', ')}\n`);
  process.exit(name && name !== '--help' ? 1 : 0);
}
const r = spawnSync(process.execPath, ['--expose-gc', join(here, `${name}.ts`), ...rest], { stdio: 'inherit' });
process.exit(r.status ?? 2);
