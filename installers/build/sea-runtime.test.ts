import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { hasTool } from './sea.ts';
import { ADDON_MIN_GLIBC, chooseSqlite, compareVersions, extractAddon, glibcVersion, isSingleExecutable, nativeBindingPath } from './sea-runtime.ts';

// Inside a single executable these are exercised by sea.test.ts (the probe entry); here: plain Node.

test('outside a single executable nothing is extracted', () => {
  assert.equal(isSingleExecutable(), false);
  assert.equal(nativeBindingPath('/nonexistent/state'), undefined);
  assert.deepEqual(chooseSqlite('/nonexistent/state'), { engine: 'better-sqlite3' });
});

test('glibc version of this machine', { skip: process.platform !== 'linux' }, () => {
  const v = glibcVersion();
  assert.match(v ?? '', /^2\.\d+$/);
  assert.ok(compareVersions(v!, '2.28') >= 0, 'Node 24 itself needs 2.28');
});

test('compareVersions orders dotted numbers', () => {
  assert.ok(compareVersions('2.31', ADDON_MIN_GLIBC) < 0);
  assert.ok(compareVersions('2.34', ADDON_MIN_GLIBC) === 0);
  assert.ok(compareVersions('2.4', '2.34') < 0);
  assert.ok(compareVersions('2.36', '2.34') > 0);
  assert.ok(compareVersions('3', '2.99') > 0);
});

test('extractAddon: writes the hashed copy, rewrites a damaged one, removes other versions', () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'pb-addon-')), 'lib');
  try {
    const file = extractAddon(dir, new Uint8Array([1, 2, 3]));
    assert.match(file, /better_sqlite3-[0-9a-f]{16}\.node$/);
    writeFileSync(file, 'truncated');
    writeFileSync(join(dir, 'better_sqlite3-0123456789abcdef.node'), 'an older version');
    writeFileSync(join(dir, 'unrelated.txt'), 'kept');
    assert.equal(extractAddon(dir, new Uint8Array([1, 2, 3])), file);
    assert.deepEqual([...readFileSync(file)], [1, 2, 3]);
    assert.deepEqual(readdirSync(dir).sort(), [file.split('/').pop(), 'unrelated.txt'].sort());
  } finally {
    rmSync(join(dir, '..'), { recursive: true, force: true });
  }
});

test('extractAddon: a copy another process holds (EPERM on Windows) stays, and the start goes on', (t) => {
  // chattr +i makes unlink fail with EPERM even for root: what Windows answers for a DLL another process has mapped
  if (process.platform !== 'linux' || !hasTool('chattr')) return t.skip('needs chattr (e2fsprogs) on Linux');
  const dir = join(mkdtempSync(join(tmpdir(), 'pb-addon-')), 'lib');
  const held = join(dir, 'better_sqlite3-00000000000000aa.node');
  extractAddon(dir, new Uint8Array([9]));
  writeFileSync(held, 'loaded by the running service');
  const lock = spawnSync('chattr', ['+i', held], { encoding: 'utf8' });
  if (lock.status !== 0) return t.skip(`chattr +i not supported here: ${lock.stderr.trim()}`);
  try {
    assert.throws(() => rmSync(held, { force: true }), /EPERM/, 'the removal really fails');
    const file = extractAddon(dir, new Uint8Array([4, 5, 6]));
    assert.deepEqual([...readFileSync(file)], [4, 5, 6]);
    assert.ok(readdirSync(dir).includes('better_sqlite3-00000000000000aa.node'), 'the held copy is left alone');
  } finally {
    spawnSync('chattr', ['-i', held]);
    rmSync(join(dir, '..'), { recursive: true, force: true });
  }
});
