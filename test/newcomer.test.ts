import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { missing } from './helpers/services.ts';

/** What a new developer meets first: the README's setup, npm install, the scripts .ci/run uses. */

const root = resolve(import.meta.dirname, '..');
const README = readFileSync(join(root, 'README.md'), 'utf8');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string }; scripts: Record<string, string>; allowScripts: Record<string, boolean> };

test('npm install on a fresh checkout leaves package-lock.json as committed', (t) => {
  // npm decides from binding.gyp on disk that better-sqlite3 has an install script (the lockfile does not
  // carry its `gypfile: false`) and records hasInstallScript: the committed lockfile must already say so.
  // Like a fresh clone: better-sqlite3 not yet in node_modules and no hidden lockfile.
  if (spawnSync('npm', ['--version']).status !== 0) return t.skip(missing('npm', 'install Node.js with npm'));
  const dir = mkdtempSync(join(tmpdir(), 'pb-lockfile-'));
  try {
    for (const f of ['package.json', 'package-lock.json']) cpSync(join(root, f), join(dir, f));
    const cp = spawnSync('cp', ['-al', join(root, 'node_modules'), join(dir, 'node_modules')]);
    assert.equal(cp.status, 0, String(cp.stderr));
    rmSync(join(dir, 'node_modules', 'better-sqlite3'), { recursive: true, force: true });
    rmSync(join(dir, 'node_modules', '.package-lock.json'), { force: true });
    const r = spawnSync('npm', ['install', '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: dir, encoding: 'utf8', timeout: 300_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(dir, 'package-lock.json'), 'utf8'), readFileSync(join(root, 'package-lock.json'), 'utf8'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // and npm never compiles it: the prebuilt addons are in the package
  assert.equal(pkg.allowScripts['better-sqlite3'], false);
});

test("the README's Node version is the one package.json's engines asks for", () => {
  const min = /^>=(\d+\.\d+)$/.exec(pkg.engines.node)?.[1];
  assert.ok(min, pkg.engines.node);
  assert.match(README, new RegExp(`Node\\.js ${min.replace('.', '\\.')} or newer`));
  assert.doesNotMatch(README, /Node(\.js)? 20 or newer/);
});

test('one command prepares a Debian machine, the README names it and .ci/run uses it', () => {
  assert.equal(pkg.scripts['setup:debian'], 'bash test/setup-debian.sh');
  assert.match(README, /npm run setup:debian/);
  const ci = readFileSync(join(root, '.ci', 'run'), 'utf8');
  assert.match(ci, /^bash test\/setup-debian\.sh$/m);
  assert.match(ci, /^npm test$/m);
  // the Windows check runs after the suite, not inside it
  assert.ok(ci.search(/^npm test$/m) < ci.search(/^bash installers\/windows\/ci-wine-check\.sh$/m));
  const setup = readFileSync(join(root, 'test', 'setup-debian.sh'), 'utf8');
  for (const p of ['mosquitto', 'postgresql', 'chromium', 'shellcheck', 'libxml2-utils', 'systemd', 'dpkg', 'zip', 'openssl', 'haproxy', 'faketime', 'prometheus', 'nftables', 'iproute2', 'debootstrap']) {
    assert.match(setup, new RegExp(`\\b${p}:`), `${p} is installed by setup:debian`);
  }
});

test('shellcheck: setup-debian.sh, .ci/run and the Windows CI check', (t) => {
  if (spawnSync('shellcheck', ['--version']).status !== 0) return t.skip(missing('shellcheck', 'npm run setup:debian'));
  const r = spawnSync('shellcheck', ['-S', 'warning', join(root, 'test', 'setup-debian.sh'), join(root, '.ci', 'run'), join(root, 'installers', 'windows', 'ci-wine-check.sh')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
