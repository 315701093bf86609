import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';

const SOURCE = join(import.meta.dirname, 'powerloss.c');
const CACHE = join(import.meta.dirname, '..', '..', '..', 'node_modules', '.cache', 'plantbridge');

/**
 * Builds powerloss.so with gcc once per source version (node_modules/.cache/plantbridge/) and returns its
 * path, or throws saying what is missing. Linux only: LD_PRELOAD and the glibc symbols it wraps.
 */
export function powerlossShim(): string {
  if (process.platform !== 'linux') throw new Error('the power-loss shim needs Linux (LD_PRELOAD over glibc)');
  const hash = createHash('sha256').update(readFileSync(SOURCE)).digest('hex').slice(0, 12);
  const out = join(CACHE, `powerloss-${hash}.so`);
  if (existsSync(out)) return out;
  mkdirSync(CACHE, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const r = spawnSync('gcc', ['-shared', '-fPIC', '-O2', '-Wall', '-Werror', '-o', tmp, SOURCE, '-ldl', '-lpthread'], { encoding: 'utf8' });
  if (r.error) throw new Error(`gcc is needed to build the power-loss shim (apt-get install gcc): ${r.error.message}`);
  if (r.status !== 0) throw new Error(`gcc failed on powerloss.c:\n${r.stderr}`);
  renameSync(tmp, out);
  return out;
}

/** the environment that puts a child's files under `prefix` behind the shim */
export function powerlossEnv(prefix: string): Record<string, string> {
  return { LD_PRELOAD: powerlossShim(), PB_POWERLOSS_PREFIX: prefix };
}
