import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { missing } from '../../test/helpers/services.ts';
import { hasTool } from '../build/sea.ts';
import { WINSW_PATH, buildWindowsBundle, checkWinsw, winswPin, winswXml } from '../build/windows-package.ts';

/**
 * What can be checked of the Windows service here: the generated WinSW XML (well-formed, the settings the
 * issue asks for), the WinSW checksum gate, the release folder, and install.ps1 as text (no PowerShell
 * parser is installable on this machine: Debian has no pwsh package and the registries here carry none).
 */

const PS1 = readFileSync(join(import.meta.dirname, 'install.ps1'), 'utf8');
let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'pb-windows-test-'));
});
after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('WinSW service definition', () => {
  for (const app of ['agent', 'hub'] as const) {
    test(`${app}: well-formed XML (xmllint)`, (t) => {
      if (!hasTool('xmllint')) return t.skip(missing('xmllint', 'apt-get install libxml2-utils'));
      const f = join(root, `${app}.xml`);
      writeFileSync(f, winswXml({ app, version: '1.0.0' }));
      const r = spawnSync('xmllint', ['--noout', f], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    });
  }

  test('agent: restart on failure, log rotation, LocalService, config and state under ProgramData', () => {
    const xml = winswXml({ app: 'agent', version: '1.0.0' });
    assert.match(xml, /<id>plantbridge-agent<\/id>/);
    assert.match(xml, /<executable>%BASE%\\plantbridge-agent\.exe<\/executable>/);
    assert.match(xml, /<arguments>run --config "%ProgramData%\\PlantBridge\\agent\\config\\agent\.yaml"<\/arguments>/);
    assert.equal(xml.match(/<onfailure action="restart" delay="[^"]+"\/>/g)?.length, 3);
    assert.match(xml, /<resetfailure>1 hour<\/resetfailure>/);
    assert.match(xml, /<log mode="roll-by-size">\s*<sizeThreshold>10240<\/sizeThreshold>\s*<keepFiles>10<\/keepFiles>\s*<\/log>/);
    assert.match(xml, /<serviceaccount>\s*<domain>NT AUTHORITY<\/domain>\s*<user>LocalService<\/user>\s*<\/serviceaccount>/);
    assert.match(xml, /<startmode>Automatic<\/startmode>/);
    assert.match(xml, /<stoptimeout>45 sec<\/stoptimeout>/);
    assert.match(xml, /<env name="PLANTBRIDGE_STATE_DIR" value="%ProgramData%\\PlantBridge\\agent\\state"\/>/);
  });

  test('hub runs serve; a configured account is escaped', () => {
    const xml = winswXml({ app: 'hub', version: '1.0.0<script>', account: { domain: 'PLANT', user: 'svc&hub' } });
    assert.match(xml, /<arguments>serve --config /);
    assert.match(xml, /<user>svc&amp;hub<\/user>/);
    assert.match(xml, /1\.0\.0&lt;script&gt;/);
  });
});

describe('WinSW checksum gate', () => {
  const pin = { version: '2.12.0', file: 'WinSW-x64.exe', url: 'https://example.invalid/WinSW-x64.exe', sha256: null as string | null };
  const fake = () => {
    const f = join(root, 'WinSW-x64.exe');
    writeFileSync(f, 'MZ fake wrapper');
    return { f, sha: createHash('sha256').update('MZ fake wrapper').digest('hex') };
  };

  test('missing: not fatal, says where to get it', () => {
    const r = checkWinsw(join(root, 'nope.exe'), pin);
    assert.equal(r.ok, false);
    assert.ok(!r.ok && !r.fatal && r.reason.includes(pin.url));
  });

  test('present but no pin recorded: fatal, prints the hash to check', () => {
    const { f, sha } = fake();
    const r = checkWinsw(f, pin);
    assert.ok(!r.ok && r.fatal && r.reason.includes(sha));
  });

  test('hash differs from the pin: fatal', () => {
    const { f } = fake();
    const r = checkWinsw(f, { ...pin, sha256: '0'.repeat(64) });
    assert.ok(!r.ok && r.fatal && /differs/.test(r.reason));
  });

  test('hash equals the pin: ok', () => {
    const { f, sha } = fake();
    assert.deepEqual(checkWinsw(f, { ...pin, sha256: sha.toUpperCase() }), { ok: true, sha256: sha });
  });

  test('the committed pin names WinSW 2.x x64', () => {
    const p = winswPin();
    assert.match(p.version, /^2\.\d+\.\d+$/);
    assert.equal(p.file, 'WinSW-x64.exe');
    assert.ok(p.sha256 === null || /^[0-9a-f]{64}$/.test(p.sha256));
  });
});

describe('Windows release folder', () => {
  test('holds the exe, the XML, install.ps1 and the pin; says when WinSW is missing', (t) => {
    if (existsSync(WINSW_PATH)) return t.skip(`a WinSW is vendored at ${WINSW_PATH}: this case is about its absence`);
    const exe = join(root, 'plantbridge-agent-win-x64.exe');
    writeFileSync(exe, 'MZ');
    const out = join(root, 'dist');
    mkdirSync(out, { recursive: true });
    const b = buildWindowsBundle({ app: 'agent', version: '1.0.0', exe, outDir: out });
    for (const f of ['plantbridge-agent.exe', 'plantbridge-agent-service.xml', 'install.ps1', 'winsw.json', 'WINSW-MISSING.txt']) {
      assert.ok(existsSync(join(b.dir, f)), f);
    }
    assert.equal(b.winsw.ok, false);
    if (hasTool('zip')) {
      assert.ok(b.zip && existsSync(b.zip));
      const list = spawnSync('unzip', ['-l', b.zip], { encoding: 'utf8' });
      if (list.status === 0) assert.match(list.stdout, /plantbridge-agent-1\.0\.0-win-x64\/install\.ps1/);
    }
  });
});

describe('install.ps1 (read as text: no PowerShell here)', () => {
  test('declares the actions and the options the docs describe', () => {
    assert.match(PS1, /\[ValidateSet\('install', 'upgrade', 'rollback', 'uninstall', 'status'\)\]/);
    assert.match(PS1, /#Requires -RunAsAdministrator/);
    for (const p of ['$App', '$InstallDir', '$DataDir', '$ServiceAccount', '$Credential', '$Purge', '$NoStart']) {
      assert.ok(PS1.includes(p), p);
    }
  });

  test('restricts config and state to SYSTEM, Administrators and the service', () => {
    assert.match(PS1, /'\/inheritance:r', '\/grant:r', '\*S-1-5-18:\(OI\)\(CI\)F', '\*S-1-5-32-544:\(OI\)\(CI\)F'/);
    assert.match(PS1, /\$ConfigDir, '\/grant:r', "\$\{account\}:\(OI\)\(CI\)RX"/);
    assert.match(PS1, /\$StateDir, '\/grant:r', "\$\{account\}:\(OI\)\(CI\)M"/);
    assert.match(PS1, /'sidtype', \$Name, 'unrestricted'/);
  });

  test('verifies the wrapper against the pin before installing it', () => {
    assert.match(PS1, /Get-FileHash -Algorithm SHA256/);
    assert.match(PS1, /function Test-Wrapper[\s\S]*'install' \{[\s\S]*Test-Wrapper/);
  });

  test('no "$name:" inside double quotes (PowerShell reads it as a drive or scope qualifier)', () => {
    const bad: string[] = [];
    for (const [i, line] of PS1.split('\n').entries()) {
      for (const m of line.matchAll(/"[^"]*"/g)) {
        if (/\$(?!env:|script:|global:)[A-Za-z_]\w*:/.test(m[0])) bad.push(`${i + 1}: ${m[0]}`);
      }
    }
    assert.deepEqual(bad, []);
  });

  test('braces, brackets and parentheses balance outside strings and comments', () => {
    const stack: string[] = [];
    const pairs: Record<string, string> = { ')': '(', '}': '{', ']': '[' };
    let inBlockComment = false;
    for (const [i, raw] of PS1.split('\n').entries()) {
      let line = raw;
      if (inBlockComment) {
        if (!line.includes('#>')) continue;
        line = line.slice(line.indexOf('#>') + 2);
        inBlockComment = false;
      }
      if (line.includes('<#')) {
        inBlockComment = !line.includes('#>');
        line = line.slice(0, line.indexOf('<#'));
      }
      // strip strings ('' and ""; PowerShell doubles a quote to escape it) and line comments
      line = line.replace(/'(?:[^']|'')*'/g, "''").replace(/"(?:[^"`]|`.|"")*"/g, '""').replace(/#.*$/, '');
      for (const ch of line) {
        if ('({['.includes(ch)) stack.push(ch);
        else if (ch in pairs) assert.equal(stack.pop(), pairs[ch], `unbalanced ${ch} on line ${i + 1}`);
      }
    }
    assert.deepEqual(stack, []);
  });
});
