import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { missing } from '../../test/helpers/services.ts';
import { REPO, hasTool } from '../build/sea.ts';
import { buildWindowsBundle, checkWinsw, windowsExampleConfig, winswExecutable, winswPin, winswXml } from '../build/windows-package.ts';

/**
 * What can be checked of the Windows service here: the generated WinSW XML (well-formed, the settings the
 * issue asks for, only elements the pinned WinSW 1.17 reads), the pinned wrapper itself (from its npm
 * package), the checksum gate, the release folder, and install.ps1 as text. No PowerShell runs on this
 * machine: Debian has no pwsh package, the npm package `pwsh` downloads PowerShell from GitHub at install
 * (not reachable), and NuGet is not reachable. WinSW is a .NET program, and Wine here has no Mono for it.
 */

const PS1 = readFileSync(join(import.meta.dirname, 'install.ps1'), 'utf8');
let root: string;
let wrapper: string;
/** the strings (UTF-16, as .NET keeps them) of the pinned WinSW executable */
let wrapperStrings: Set<string>;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'pb-windows-test-'));
  wrapper = winswExecutable();
  // .NET keeps its string literals as UTF-16 at any byte offset: read both alignments
  const bin = readFileSync(wrapper);
  wrapperStrings = new Set([bin, bin.subarray(1)].flatMap((b) => b.toString('utf16le').split(/[^\x20-\x7e]+/)).filter((x) => x.length >= 2));
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

    test(`${app}: <service> is the first node, so WinSW 1.x reads stoptimeout and resetfailure`, () => {
      // WinSW 1.x looks these up under dom.FirstChild: an XML declaration or a comment there hides them
      assert.match(winswXml({ app, version: '1.0.0' }), /^<service>\n/);
    });

    test(`${app}: every element is one the pinned WinSW 1.17 reads`, () => {
      const xml = winswXml({ app, version: '1.0.0' });
      // the root <service> is not looked up by name
      const elements = new Set([...xml.matchAll(/<([a-zA-Z]+)[\s>/]/g)].map((m) => m[1]).filter((e) => e !== 'service'));
      const unknown = [...elements].filter((e) => !wrapperStrings.has(e) && !wrapperStrings.has(`//${e}`));
      assert.deepEqual(unknown, [], `not in WinSW ${winswPin().version}'s strings`);
      assert.ok(elements.has('stoptimeout') && elements.has('onfailure') && elements.has('serviceaccount'));
    });

    test(`${app}: every environment variable it sets is read by the code`, () => {
      const xml = winswXml({ app, version: '1.0.0' });
      const names = [...xml.matchAll(/<env name="([A-Z_]+)"/g)].map((m) => m[1]);
      assert.ok(names.length > 0);
      const cli = readFileSync(join(REPO, app === 'agent' ? 'agent/cli.ts' : 'central-hub/cli.ts'), 'utf8');
      for (const n of names) assert.ok(cli.includes(`process.env.${n}`), `${n} is set by the service but read by nothing`);
      assert.doesNotMatch(xml, /PLANTBRIDGE_STATE_DIR/);
    });
  }

  test('agent: restart on failure, log rotation, LocalService, config and state under ProgramData', () => {
    const xml = winswXml({ app: 'agent', version: '1.0.0' });
    assert.match(xml, /<id>plantbridge-agent<\/id>/);
    assert.match(xml, /<executable>%BASE%\\plantbridge-agent\.exe<\/executable>/);
    assert.match(xml, /<arguments>run --config "%ProgramData%\\PlantBridge\\agent\\config\\agent\.yaml"<\/arguments>/);
    assert.match(xml, /<workingdirectory>%ProgramData%\\PlantBridge\\agent\\state<\/workingdirectory>/);
    assert.equal(xml.match(/<onfailure action="restart" delay="[^"]+"\/>/g)?.length, 3);
    assert.match(xml, /<resetfailure>1 hour<\/resetfailure>/);
    assert.match(xml, /<log mode="roll-by-size">\s*<sizeThreshold>10240<\/sizeThreshold>\s*<keepFiles>10<\/keepFiles>\s*<\/log>/);
    assert.match(xml, /<serviceaccount>\s*<domain>NT AUTHORITY<\/domain>\s*<user>LocalService<\/user>\s*<\/serviceaccount>/);
    assert.match(xml, /<startmode>Automatic<\/startmode>/);
    assert.match(xml, /<stoptimeout>45 sec<\/stoptimeout>/);
  });

  test('hub runs serve; a configured account is escaped', () => {
    const xml = winswXml({ app: 'hub', version: '1.0.0<script>', account: { domain: 'PLANT', user: 'svc&hub' } });
    assert.match(xml, /<arguments>serve --config /);
    assert.match(xml, /<user>svc&amp;hub<\/user>/);
    assert.match(xml, /1\.0\.0&lt;script&gt;/);
  });
});

describe('the pinned service wrapper', () => {
  test('comes from its npm package and matches the committed SHA-256', () => {
    const pin = winswPin();
    assert.match(pin.sha256, /^[0-9a-f]{64}$/);
    assert.deepEqual(checkWinsw(wrapper, pin), { ok: true, sha256: pin.sha256 });
    assert.equal(readFileSync(wrapper).subarray(0, 2).toString('latin1'), 'MZ');
  });

  test('is the WinSW version the pin names, and knows the commands install.ps1 uses', () => {
    const pin = winswPin();
    assert.ok(wrapperStrings.has(`${pin.version}.0`), `FileVersion ${pin.version}.0 in the executable`);
    const used = [...PS1.matchAll(/Invoke-Native \$Wrapper @\('([a-z]+)'\)/g)].map((m) => m[1]);
    assert.deepEqual([...new Set(used)].sort(), ['install', 'uninstall']);
    for (const c of used) assert.ok(wrapperStrings.has(c), c);
  });
});

describe('WinSW checksum gate', () => {
  const pin = { ...winswPin(), sha256: '0'.repeat(64) };
  const fake = () => {
    const f = join(root, 'WinSW.exe');
    writeFileSync(f, 'MZ fake wrapper');
    return { f, sha: createHash('sha256').update('MZ fake wrapper').digest('hex') };
  };

  test('missing: says where it was looked for', () => {
    const r = checkWinsw(join(root, 'nope.exe'), pin);
    assert.ok(!r.ok && r.reason.includes('nope.exe'));
  });

  test('hash differs from the pin: refused, naming both hashes', () => {
    const { f, sha } = fake();
    const r = checkWinsw(f, pin);
    assert.ok(!r.ok && r.reason.includes(sha) && r.reason.includes(pin.sha256) && /refusing/.test(r.reason));
  });

  test('hash equals the pin (any case): ok', () => {
    const { f, sha } = fake();
    assert.deepEqual(checkWinsw(f, { ...pin, sha256: sha.toUpperCase() }), { ok: true, sha256: sha });
  });

  test('the build refuses a wrapper that fails the pin', () => {
    const { f } = fake();
    const exe = join(root, 'plantbridge-agent-win-x64.exe');
    writeFileSync(exe, 'MZ');
    assert.throws(() => buildWindowsBundle({ app: 'agent', version: '1.0.0', exe, outDir: join(root, 'refused'), wrapper: f }), /refusing to ship it/);
  });
});

describe('Windows release folder', () => {
  test('holds the exe, the pinned wrapper, its XML, install.ps1, the pin and the example config', () => {
    const exe = join(root, 'plantbridge-agent-win-x64.exe');
    writeFileSync(exe, 'MZ');
    const out = join(root, 'dist');
    mkdirSync(out, { recursive: true });
    const b = buildWindowsBundle({ app: 'agent', version: '1.0.0', exe, outDir: out });
    for (const f of ['plantbridge-agent.exe', 'plantbridge-agent-service.exe', 'plantbridge-agent-service.xml', 'install.ps1', 'winsw.json', 'agent.example.yaml', 'INSTALL.md']) {
      assert.ok(existsSync(join(b.dir, f)), f);
    }
    assert.equal(checkWinsw(join(b.dir, 'plantbridge-agent-service.exe')).ok, true);
    if (hasTool('zip')) {
      assert.ok(b.zip && existsSync(b.zip));
      const list = spawnSync('unzip', ['-l', b.zip], { encoding: 'utf8' });
      if (list.status === 0) assert.match(list.stdout, /plantbridge-agent-1\.0\.0-win-x64\/install\.ps1/);
    }
  });

  for (const app of ['agent', 'hub'] as const) {
    test(`${app}: the example config has Windows paths under %ProgramData% and still validates`, () => {
      const text = windowsExampleConfig(app, readFileSync(join(REPO, 'config', `${app}.example.yaml`), 'utf8'));
      assert.doesNotMatch(text, /\/var\/lib|\/etc\//);
      assert.match(text, new RegExp(`C:\\\\ProgramData\\\\PlantBridge\\\\${app}\\\\state`));
      assert.match(text, new RegExp(`\\.\\\\plantbridge-${app}\\.exe check-config --config \\.\\\\${app}\\.example\\.yaml`));
      const f = join(root, `${app}.windows.yaml`);
      writeFileSync(f, text);
      const cli = join(REPO, app === 'agent' ? 'agent/cli.ts' : 'central-hub/cli.ts');
      const env = { PLANTBRIDGE_AGENT_TOKEN: 't-0123456789abcdef', LINE7_OPCUA_PASSWORD: 'p', CELL3_MQTT_PASSWORD: 'p', PLANTBRIDGE_TOKEN_EDGE_P1010_01: 't', SAP_PASSWORD: 's' };
      const r = spawnSync(process.execPath, [cli, 'check-config', '--config', f], { encoding: 'utf8', env: { ...process.env, ...env } });
      assert.equal(r.status, 0, r.stdout + r.stderr);
    });
  }
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

  test('verifies the wrapper against the pin before installing or upgrading', () => {
    assert.match(PS1, /Get-FileHash -Algorithm SHA256/);
    assert.match(PS1, /function Test-Wrapper[\s\S]*'install' \{[\s\S]*Test-Wrapper[\s\S]*'upgrade' \{[\s\S]*Test-Wrapper/);
  });

  test('native programs run only through Invoke-Captured (stderr under $ErrorActionPreference = Stop on PowerShell 5.1)', () => {
    const lines = PS1.split('\n');
    const redirects = lines.flatMap((l, i) => (/\s2>(&1|\$null)/.test(l) ? [i + 1] : []));
    const body = PS1.slice(PS1.indexOf('function Invoke-Captured'), PS1.indexOf('function Invoke-Native'));
    assert.equal(redirects.length, 1, `one redirection, in Invoke-Captured: lines ${redirects.join(', ')}`);
    assert.ok(body.includes(lines[redirects[0] - 1]));
    assert.match(body, /\$ErrorActionPreference = 'Continue'/);
    assert.match(body, /-is \[System\.Management\.Automation\.ErrorRecord\]/);
    // every other "& $program" call is inside a function that goes through it
    const calls = lines.flatMap((l, i) => (/(^|[^'"])& \$(?!PSCommandPath)/.test(l) ? [i + 1] : []));
    assert.deepEqual(calls, [redirects[0]], 'no native call outside Invoke-Captured');
  });

  test('writes the .exe.config that lets WinSW 1.x (.NET 2.0) run on .NET 4', () => {
    assert.match(PS1, /Set-Content -Path "\$Wrapper\.config"[\s\S]*<supportedRuntime version="v4\.0" \/>/);
  });

  test('sets the delayed start WinSW 1.x cannot, at install and upgrade', () => {
    assert.match(PS1, /'config', \$Name, 'start=', 'delayed-auto'/);
    assert.match(PS1, /'install' \{[\s\S]*Set-StartMode[\s\S]*'upgrade' \{[\s\S]*Set-StartMode/);
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
