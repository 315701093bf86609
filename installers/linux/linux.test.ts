import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { missing } from '../../test/helpers/services.ts';
import { buildDeb, buildTarball, debControl, debianVersion } from '../build/linux-package.ts';
import { hasTool } from '../build/sea.ts';

/**
 * The Linux service files and installers, checked without systemd as PID 1: systemd-analyze on the units,
 * install.sh and the .deb's maintainer scripts run into sandbox roots (install.sh --root, dpkg --root with
 * chrootless scripts). The executables are small stand-in scripts: the single executable itself is tested
 * in installers/build/sea.test.ts.
 */

const LINUX = import.meta.dirname;
const UNITS = ['plantbridge-agent.service', 'plantbridge-hub.service'];
let root: string;

before(() => {
  root = mkdtempSync(join(tmpdir(), 'pb-linux-test-'));
});
after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

function sh(cmd: string, args: string[], env: Record<string, string> = {}) {
  return spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
}

/** A stand-in executable: prints its version; check-config fails when the config contains "invalid". */
function standIn(dir: string, version: string, name = 'plantbridge-agent-linux-x64'): string {
  mkdirSync(dir, { recursive: true });
  const f = join(dir, name);
  writeFileSync(
    f,
    `#!/bin/sh
case "$1" in
  --version) echo ${version} ;;
  check-config) if grep -q invalid "$3"; then echo "$3: invalid configuration" >&2; exit 1; fi; echo "$3: valid" ;;
  *) exit 2 ;;
esac
`,
  );
  chmodSync(f, 0o755);
  return f;
}

/** A release folder as the tarball unpacks it, with a stand-in binary of `version`. */
function release(version: string): string {
  const dir = join(root, `release-${version}`);
  standIn(dir, version);
  for (const f of ['install.sh', 'plantbridge-agent.service', 'plantbridge-hub.service', 'plantbridge.sysusers.conf']) {
    writeFileSync(join(dir, f), readFileSync(join(LINUX, f)));
  }
  chmodSync(join(dir, 'install.sh'), 0o755);
  writeFileSync(join(dir, 'agent.example.yaml'), 'agent: {}\n');
  return dir;
}

describe('systemd units', () => {
  for (const unit of UNITS) {
    test(`${unit}: systemd-analyze verify`, (t) => {
      if (!hasTool('systemd-analyze')) return t.skip(missing('systemd-analyze', 'apt-get install systemd'));
      // point ExecStart at an existing executable: verify checks that it exists
      const dir = join(root, 'verify');
      const app = unit.replace('.service', '');
      const exe = standIn(dir, '0.0.0', app);
      writeFileSync(join(dir, unit), readFileSync(join(LINUX, unit), 'utf8').replaceAll(`/usr/bin/${app}`, exe));
      const r = sh('systemd-analyze', ['verify', '--man=no', join(dir, unit)]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr.trim(), '', 'no warnings');
    });

    test(`${unit}: systemd-analyze security exposure <= 2.0`, (t) => {
      if (!hasTool('systemd-analyze')) return t.skip(missing('systemd-analyze', 'apt-get install systemd'));
      const r = sh('systemd-analyze', ['security', '--offline=yes', '--threshold=20', '--no-pager', join(LINUX, unit)]);
      const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(r.stdout);
      assert.ok(m, r.stdout + r.stderr);
      assert.ok(Number(m[1]) <= 2.0, `exposure ${m[1]}`);
      assert.equal(r.status, 0, r.stderr);
    });

    test(`${unit}: the settings the issue asks for`, () => {
      const text = readFileSync(join(LINUX, unit), 'utf8');
      for (const line of [
        'User=plantbridge',
        'ProtectSystem=strict',
        'NoNewPrivileges=yes',
        'Restart=on-failure',
        'RestartPreventExitStatus=1',
        'CapabilityBoundingSet=',
        'PrivateTmp=yes',
      ]) {
        assert.ok(text.split('\n').includes(line), `${unit} lacks ${line}`);
      }
      assert.match(text, /^StateDirectory=plantbridge-(agent|hub)$/m);
      assert.match(text, /^ConfigurationDirectory=plantbridge-(agent|hub)$/m);
      assert.match(text, /^MemoryMax=\d+[MG]$/m);
      assert.match(text, /^TasksMax=\d+$/m);
      assert.match(text, /^LimitNOFILE=\d+$/m);
    });
  }

  test('sysusers.d file declares the plantbridge system user', () => {
    assert.match(readFileSync(join(LINUX, 'plantbridge.sysusers.conf'), 'utf8'), /^u plantbridge - "PlantBridge" \/nonexistent \/usr\/sbin\/nologin$/m);
  });
});

describe('shell scripts', () => {
  test('shellcheck: install.sh and the maintainer scripts', (t) => {
    if (!hasTool('shellcheck')) return t.skip(missing('shellcheck', 'apt-get install shellcheck'));
    const r = sh('shellcheck', ['--shell=sh', join(LINUX, 'install.sh'), join(LINUX, 'deb/postinst'), join(LINUX, 'deb/prerm'), join(LINUX, 'deb/postrm')]);
    assert.equal(r.status, 0, r.stdout);
  });

  test('sh -n and dash -n parse install.sh', () => {
    assert.equal(sh('sh', ['-n', join(LINUX, 'install.sh')]).status, 0);
    if (hasTool('dash')) assert.equal(sh('dash', ['-n', join(LINUX, 'install.sh')]).status, 0);
  });
});

describe('install.sh in a sandbox root', () => {
  const calls = () => (existsSync(join(root, 'systemctl.log')) ? readFileSync(join(root, 'systemctl.log'), 'utf8') : '');
  let sandbox: string;
  let env: Record<string, string>;
  const installSh = (version: string, ...args: string[]) =>
    sh('sh', [join(release(version), 'install.sh'), ...args, '--root', sandbox], env);

  before(() => {
    sandbox = join(root, 'sandbox');
    mkdirSync(join(sandbox, 'etc'), { recursive: true });
    // a systemctl stand-in that records the calls and says the service runs
    const stub = join(root, 'systemctl');
    writeFileSync(stub, `#!/bin/sh\necho "$*" >> ${join(root, 'systemctl.log')}\nexit 0\n`);
    chmodSync(stub, 0o755);
    env = { SYSTEMCTL: stub, PLANTBRIDGE_HEALTH_WAIT: '0' };
  });

  test('install: user, directories, binary, unit; tells what to do next', (t) => {
    if (!hasTool('systemd-sysusers')) return t.skip(missing('systemd-sysusers', 'apt-get install systemd'));
    const r = installSh('1.0.0', 'install');
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /installed .*plantbridge-agent \(1\.0\.0\)/);
    assert.match(r.stdout, /Next: write .*\/etc\/plantbridge-agent\/agent\.yaml/);
    assert.match(readFileSync(join(sandbox, 'etc/passwd'), 'utf8'), /^plantbridge:x:\d+:\d+:PlantBridge:\/nonexistent:\/usr\/sbin\/nologin$/m);
    const bin = join(sandbox, 'usr/local/bin/plantbridge-agent');
    assert.equal(sh(bin, ['--version']).stdout.trim(), '1.0.0');
    const unit = readFileSync(join(sandbox, 'etc/systemd/system/plantbridge-agent.service'), 'utf8');
    assert.match(unit, /^ExecStart=\/usr\/local\/bin\/plantbridge-agent run --config \/etc\/plantbridge-agent\/agent\.yaml$/m);
    const conf = statSync(join(sandbox, 'etc/plantbridge-agent'));
    assert.equal(conf.mode & 0o777, 0o750);
    assert.equal(conf.uid, 0);
    const state = statSync(join(sandbox, 'var/lib/plantbridge-agent'));
    assert.equal(state.mode & 0o777, 0o750);
    assert.notEqual(state.uid, 0, 'state belongs to the service user');
    assert.ok(existsSync(join(sandbox, 'etc/plantbridge-agent/agent.example.yaml')));
    assert.match(calls(), /^daemon-reload$/m);
    assert.match(calls(), /^enable plantbridge-agent\.service$/m);
    assert.doesNotMatch(calls(), /restart/, 'not started without a config');
  });

  test('upgrade keeps config and data, keeps the previous binary, restarts', (t) => {
    if (!hasTool('systemd-sysusers')) return t.skip(missing('systemd-sysusers', 'apt-get install systemd'));
    writeFileSync(join(sandbox, 'etc/plantbridge-agent/agent.yaml'), 'agent: {id: a}\n');
    writeFileSync(join(sandbox, 'var/lib/plantbridge-agent/outbox.db'), 'pending transactions');
    const r = installSh('1.1.0', 'upgrade');
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /config .*agent\.yaml is valid for 1\.1\.0/);
    assert.match(r.stdout, /kept the previous binary \(1\.0\.0\)/);
    assert.equal(sh(join(sandbox, 'usr/local/bin/plantbridge-agent'), ['--version']).stdout.trim(), '1.1.0');
    assert.equal(sh(join(sandbox, 'usr/local/lib/plantbridge/plantbridge-agent.previous'), ['--version']).stdout.trim(), '1.0.0');
    assert.equal(readFileSync(join(sandbox, 'etc/plantbridge-agent/agent.yaml'), 'utf8'), 'agent: {id: a}\n');
    assert.equal(readFileSync(join(sandbox, 'var/lib/plantbridge-agent/outbox.db'), 'utf8'), 'pending transactions');
    assert.equal(statSync(join(sandbox, 'etc/plantbridge-agent/agent.yaml')).mode & 0o777, 0o640);
    assert.match(calls(), /^restart plantbridge-agent\.service$/m);
    assert.match(calls(), /^is-active --quiet plantbridge-agent\.service$/m);
  });

  test('an upgrade whose binary rejects the config changes nothing', () => {
    writeFileSync(join(sandbox, 'etc/plantbridge-agent/agent.yaml'), 'agent: {id: a}\n# invalid for 9.9.9\n');
    const r = installSh('9.9.9', 'upgrade');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /rejects .*nothing was changed/);
    assert.equal(sh(join(sandbox, 'usr/local/bin/plantbridge-agent'), ['--version']).stdout.trim(), '1.1.0');
    writeFileSync(join(sandbox, 'etc/plantbridge-agent/agent.yaml'), 'agent: {id: a}\n');
  });

  test('rollback swaps back to the previous binary, and again forward', () => {
    const back = installSh('1.1.0', 'rollback');
    assert.equal(back.status, 0, back.stderr + back.stdout);
    assert.match(back.stdout, /rollback: plantbridge-agent 1\.1\.0 -> 1\.0\.0/);
    assert.equal(sh(join(sandbox, 'usr/local/bin/plantbridge-agent'), ['--version']).stdout.trim(), '1.0.0');
    assert.equal(readFileSync(join(sandbox, 'var/lib/plantbridge-agent/outbox.db'), 'utf8'), 'pending transactions');
    const forward = installSh('1.1.0', 'rollback');
    assert.equal(forward.status, 0);
    assert.equal(sh(join(sandbox, 'usr/local/bin/plantbridge-agent'), ['--version']).stdout.trim(), '1.1.0');
  });

  test('status says what is installed', () => {
    const r = installSh('1.1.0', 'status');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /plantbridge-agent: 1\.1\.0/);
    assert.match(r.stdout, /previous: 1\.0\.0/);
  });

  test('uninstall keeps config and data; --purge removes them', () => {
    const r = installSh('1.1.0', 'uninstall');
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.ok(!existsSync(join(sandbox, 'usr/local/bin/plantbridge-agent')));
    assert.ok(!existsSync(join(sandbox, 'etc/systemd/system/plantbridge-agent.service')));
    assert.ok(existsSync(join(sandbox, 'etc/plantbridge-agent/agent.yaml')));
    assert.ok(existsSync(join(sandbox, 'var/lib/plantbridge-agent/outbox.db')));
    assert.match(calls(), /^disable --now plantbridge-agent\.service$/m);
    const p = installSh('1.1.0', 'uninstall', '--purge');
    assert.equal(p.status, 0, p.stderr + p.stdout);
    assert.ok(!existsSync(join(sandbox, 'etc/plantbridge-agent')));
    assert.ok(!existsSync(join(sandbox, 'var/lib/plantbridge-agent')));
  });

  test('a binary that does not run is refused before anything changes', () => {
    const dir = release('2.0.0');
    writeFileSync(join(dir, 'plantbridge-agent-linux-x64'), '#!/bin/sh\necho "GLIBC_2.28 not found" >&2\nexit 127\n');
    const r = sh('sh', [join(dir, 'install.sh'), 'install', '--root', join(root, 'sandbox-refused')], env);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /does not run on this server: GLIBC_2\.28 not found/);
    assert.ok(!existsSync(join(root, 'sandbox-refused', 'usr')));
  });
});

describe('.deb', () => {
  let debs: { v1: string; v2: string };
  const dr = () => join(root, 'dpkg-root');
  const dpkg = (...args: string[]) =>
    sh('dpkg', ['--root', dr(), '--force-script-chrootless', '--force-depends', '--force-not-root', ...args]);

  before(() => {
    if (!hasTool('dpkg-deb')) return;
    const out = join(root, 'debs');
    debs = {
      v1: buildDeb({ app: 'agent', version: '1.0.0', binary: standIn(join(root, 'deb-bin-1'), '1.0.0'), outDir: out }),
      v2: buildDeb({ app: 'agent', version: '1.1.0-rc.1', binary: standIn(join(root, 'deb-bin-2'), '1.1.0-rc.1'), outDir: out }),
    };
  });

  test('control fields', () => {
    const c = debControl('hub', '1.2.3', 120000);
    assert.match(c, /^Package: plantbridge-hub$/m);
    assert.match(c, /^Architecture: amd64$/m);
    assert.match(c, /^Depends: libc6 \(>= 2\.28\)$/m);
    assert.match(c, /^Installed-Size: 120000$/m);
    assert.equal(debianVersion('1.1.0-rc.1'), '1.1.0~rc.1');
  });

  test('dpkg-deb --info / --contents', (t) => {
    if (!hasTool('dpkg-deb')) return t.skip(missing('dpkg-deb', 'apt-get install dpkg-dev'));
    const info = sh('dpkg-deb', ['--info', debs.v1]);
    assert.equal(info.status, 0, info.stderr);
    assert.match(info.stdout, /Package: plantbridge-agent/);
    for (const s of ['postinst', 'prerm', 'postrm']) assert.match(info.stdout, new RegExp(`\\*\\s+${s}`), `${s} is executable`);
    const contents = sh('dpkg-deb', ['--contents', debs.v1]).stdout;
    for (const path of [
      ['-rwxr-xr-x', './usr/bin/plantbridge-agent'],
      ['-rw-r--r--', './lib/systemd/system/plantbridge-agent.service'],
      ['-rw-r--r--', './usr/lib/sysusers.d/plantbridge-agent.conf'],
      ['-rw-r--r--', './usr/share/doc/plantbridge-agent/copyright'],
    ]) {
      assert.match(contents, new RegExp(`^${path[0]} root/root .* ${path[1].replaceAll('.', '\\.')}$`, 'm'));
    }
    assert.doesNotMatch(contents, /\.\/etc\//, 'no files in /etc: the config is the admin\'s, never a conffile to merge');
  });

  test('install, upgrade, remove and purge into a dpkg --root sandbox', (t) => {
    if (!hasTool('dpkg-deb')) return t.skip(missing('dpkg-deb', 'apt-get install dpkg-dev'));
    if (!hasTool('systemd-sysusers')) return t.skip(missing('systemd-sysusers', 'apt-get install systemd'));
    mkdirSync(join(dr(), 'var/lib/dpkg/updates'), { recursive: true });
    mkdirSync(join(dr(), 'var/lib/dpkg/info'), { recursive: true });
    mkdirSync(join(dr(), 'etc'), { recursive: true });
    writeFileSync(join(dr(), 'var/lib/dpkg/status'), '');

    const i = dpkg('-i', debs.v1);
    assert.equal(i.status, 0, i.stderr + i.stdout);
    assert.match(i.stdout, /write \/etc\/plantbridge-agent\/agent\.yaml/);
    assert.match(readFileSync(join(dr(), 'etc/passwd'), 'utf8'), /^plantbridge:/m);
    const wants = join(dr(), 'etc/systemd/system/multi-user.target.wants/plantbridge-agent.service');
    assert.ok(lstatSync(wants).isSymbolicLink(), 'enabled');
    assert.equal(readlinkSync(wants), '/lib/systemd/system/plantbridge-agent.service');
    assert.notEqual(statSync(join(dr(), 'var/lib/plantbridge-agent')).uid, 0);

    writeFileSync(join(dr(), 'etc/plantbridge-agent/agent.yaml'), 'agent: {id: a}\n');
    writeFileSync(join(dr(), 'var/lib/plantbridge-agent/outbox.db'), 'pending');
    const u = dpkg('-i', debs.v2);
    assert.equal(u.status, 0, u.stderr + u.stdout);
    assert.equal(sh(join(dr(), 'usr/bin/plantbridge-agent'), ['--version']).stdout.trim(), '1.1.0-rc.1');
    assert.equal(readFileSync(join(dr(), 'var/lib/plantbridge-agent/outbox.db'), 'utf8'), 'pending');
    assert.equal(statSync(join(dr(), 'etc/plantbridge-agent/agent.yaml')).mode & 0o777, 0o640);

    // rollback = installing the previous .deb again
    const down = dpkg('-i', debs.v1);
    assert.equal(down.status, 0, down.stderr + down.stdout);
    assert.equal(sh(join(dr(), 'usr/bin/plantbridge-agent'), ['--version']).stdout.trim(), '1.0.0');
    assert.equal(readFileSync(join(dr(), 'var/lib/plantbridge-agent/outbox.db'), 'utf8'), 'pending');

    const r = dpkg('-r', 'plantbridge-agent');
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.ok(!existsSync(join(dr(), 'usr/bin/plantbridge-agent')));
    assert.ok(existsSync(join(dr(), 'var/lib/plantbridge-agent/outbox.db')), 'remove keeps data');
    assert.ok(existsSync(join(dr(), 'etc/plantbridge-agent/agent.yaml')), 'remove keeps config');

    const p = dpkg('--purge', 'plantbridge-agent');
    assert.equal(p.status, 0, p.stderr + p.stdout);
    assert.ok(!existsSync(join(dr(), 'var/lib/plantbridge-agent')), 'purge deletes data');
    assert.ok(!existsSync(join(dr(), 'etc/plantbridge-agent')), 'purge deletes config');
    assert.ok(!existsSync(wants), 'purge disables');
  });

  test('release archive for install.sh', (t) => {
    if (!hasTool('tar')) return t.skip(missing('tar', 'apt-get install tar'));
    const tgz = buildTarball({ app: 'hub', version: '1.0.0', binary: standIn(join(root, 'tar-bin'), '1.0.0', 'plantbridge-hub-linux-x64'), outDir: join(root, 'tar') });
    const list = sh('tar', ['-tzvf', tgz]).stdout;
    for (const f of ['plantbridge-hub-linux-x64', 'install.sh', 'plantbridge-hub.service', 'plantbridge.sysusers.conf']) {
      assert.match(list, new RegExp(`root/root .* plantbridge-hub-1\\.0\\.0-linux-x64/${f.replaceAll('.', '\\.')}$`, 'm'));
    }
    assert.match(list, /^-rwxr-xr-x .*install\.sh$/m);
  });
});
