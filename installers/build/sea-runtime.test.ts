import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADDON_MIN_GLIBC, chooseSqlite, compareVersions, glibcVersion, isSingleExecutable, nativeBindingPath } from './sea-runtime.ts';

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
