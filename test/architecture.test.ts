import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { VERSION } from '../contracts/version.ts';

const root = resolve(import.meta.dirname, '..');

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Tests, their kits and the child processes they spawn may use the other side as a real counterpart. */
function isTestCode(file: string): boolean {
  const name = file.split('/').pop()!;
  return name.endsWith('.test.ts') || name === 'test-kit.ts' || file.includes('/test-kit/') || /^test-|-child\.ts$/.test(name);
}

/** Every relative import (static or dynamic) of a file, resolved to a repo-relative path. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*)['"]([^'"]+)['"]/g)].map((m) => m[1]);
  return specs.map((s) => (s.startsWith('.') ? relative(root, resolve(dirname(file), s)) : s));
}

test('agent/ and central-hub/ never import each other; both may import contracts/', () => {
  const offenders: string[] = [];
  for (const [side, other] of [
    ['agent', 'central-hub'],
    ['central-hub', 'agent'],
  ]) {
    for (const f of tsFiles(join(root, side))) {
      // tests may start the other side as a real counterpart; product code may not depend on it
      if (isTestCode(f)) continue;
      for (const imp of importsOf(f)) if (imp.startsWith(`${other}/`)) offenders.push(`${relative(root, f)} imports ${imp}`);
    }
  }
  assert.deepEqual(offenders, []);
});

test('contracts/ imports neither side and does no I/O', () => {
  const offenders: string[] = [];
  for (const f of tsFiles(join(root, 'contracts'))) {
    if (f.endsWith('.test.ts')) continue;
    for (const imp of importsOf(f)) {
      if (imp.startsWith('agent/') || imp.startsWith('central-hub/')) offenders.push(`${relative(root, f)} imports ${imp}`);
      if (/^(node:)?(fs|fs\/promises|net|http|https|child_process|dgram|tls)$/.test(imp)) offenders.push(`${relative(root, f)} does I/O via ${imp}`);
    }
  }
  assert.deepEqual(offenders, []);
});

/**
 * The agent's two remaining uses, to move with the agent's single-executable entry (issue #19, agent half):
 * until then they are the only exceptions.
 */
const INSTALLERS_IMPORT_TO_MOVE = new Set(['agent/cli.ts', 'agent/drivers/mqtt/commit-thread.ts']);

test('nothing outside installers/ imports from installers/: the executables\' entries hand SEA paths in', () => {
  const offenders: string[] = [];
  for (const side of ['agent', 'central-hub', 'contracts', 'config', 'test', 'bench']) {
    for (const f of tsFiles(join(root, side))) {
      const rel = relative(root, f);
      if (INSTALLERS_IMPORT_TO_MOVE.has(rel)) continue;
      for (const imp of importsOf(f)) if (imp.startsWith('installers/')) offenders.push(`${rel} imports ${imp}`);
    }
  }
  assert.deepEqual(offenders, []);
});

test('the compiled-in version equals package.json', () => {
  assert.equal(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version, VERSION);
});

test('Node 24 is pinned for every npm script, better-sqlite3 13 is used', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  assert.match(pkg.devDependencies.node, /^\^?24\./);
  assert.match(pkg.dependencies['better-sqlite3'], /^\^?13\./);
  assert.equal(process.versions.node.split('.')[0], '24', 'tests must run on the pinned Node 24');
});
