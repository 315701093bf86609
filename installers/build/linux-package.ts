import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { APPS, REPO, run, type App } from './sea.ts';

/**
 * Linux deliverables around the single executable: a .deb (dpkg-deb, no debhelper) and a release archive
 * for install.sh. Both carry the same unit, sysusers.d file and example config from installers/linux/.
 */

export const LINUX_DIR = join(REPO, 'installers', 'linux');

export interface LinuxPackageInput {
  app: App;
  version: string;
  /** the Linux executable to ship (any executable in tests) */
  binary: string;
  outDir: string;
}

/** Debian versions may not contain "-" in the upstream part without a revision; 0.1.0-rc.1 -> 0.1.0~rc.1 */
export function debianVersion(version: string): string {
  return version.replace(/-/g, '~');
}

export function debFileName(app: App, version: string): string {
  return `${APPS[app].name}_${debianVersion(version)}_amd64.deb`;
}

export function exampleConfig(app: App): string | undefined {
  const f = join(REPO, 'config', `${app}.example.yaml`);
  return existsSync(f) ? f : undefined;
}

function template(file: string, app: App): string {
  return readFileSync(file, 'utf8').replaceAll('@NAME@', APPS[app].name).replaceAll('@APP@', app);
}

export function debControl(app: App, version: string, installedKiB: number): string {
  const what =
    app === 'agent'
      ? 'PlantBridge agent: shop-floor signals (OPC UA, MQTT, Sparkplug B) to ERP transactions\n' +
        ' Reads the plant\'s machines, derives production confirmations and material movements,\n' +
        ' keeps them in a durable SQLite outbox and forwards them to the PlantBridge hub.'
      : 'PlantBridge hub: receives agents\' transactions and posts them to the ERP\n' +
        ' Authenticates plant agents, stores their transactions idempotently, posts them to\n' +
        ' SAP S/4HANA, Dynamics 365 or Odoo and shows fleet health on a dashboard.';
  return [
    `Package: ${APPS[app].name}`,
    `Version: ${debianVersion(version)}`,
    'Architecture: amd64',
    'Section: net',
    'Priority: optional',
    'Maintainer: PlantBridge maintainers <maintainers@plantbridge.invalid>',
    // Node 24 needs glibc 2.28; better-sqlite3's addon needs 2.34, below that the outbox uses node:sqlite
    'Depends: libc6 (>= 2.28)',
    'Recommends: systemd',
    `Installed-Size: ${installedKiB}`,
    `Description: ${what}`,
    '',
  ].join('\n');
}

/** Builds `<outDir>/plantbridge-<app>_<version>_amd64.deb`; returns its path. Needs dpkg-deb. */
export function buildDeb(input: LinuxPackageInput): string {
  const { app, version } = input;
  const name = APPS[app].name;
  const outDir = resolve(input.outDir);
  mkdirSync(outDir, { recursive: true });
  const stage = mkdtempSync(join(outDir, `.deb-${app}-`));
  try {
    const put = (rel: string, content: string | Buffer, mode: number) => {
      const p = join(stage, rel);
      mkdirSync(join(p, '..'), { recursive: true, mode: 0o755 });
      writeFileSync(p, content);
      chmodSync(p, mode);
    };
    put(`usr/bin/${name}`, readFileSync(input.binary), 0o755);
    put(`lib/systemd/system/${name}.service`, readFileSync(join(LINUX_DIR, `${name}.service`)), 0o644);
    put(`usr/lib/sysusers.d/${name}.conf`, readFileSync(join(LINUX_DIR, 'plantbridge.sysusers.conf')), 0o644);
    const doc = `usr/share/doc/${name}`;
    const example = exampleConfig(app);
    if (example) put(`${doc}/${app}.example.yaml`, readFileSync(example), 0o644);
    const installMd = join(REPO, 'docs', 'INSTALL.md');
    if (existsSync(installMd)) put(`${doc}/INSTALL.md`, readFileSync(installMd), 0o644);
    put(
      `${doc}/copyright`,
      'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n' +
        'Upstream-Name: PlantBridge\n\nFiles: *\nLicense: Apache-2.0\n' +
        ' On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.\n' +
        ' The executable embeds Node.js (MIT) and better-sqlite3 with SQLite (MIT, public domain).\n',
      0o644,
    );
    for (const script of ['postinst', 'prerm', 'postrm']) {
      put(`DEBIAN/${script}`, template(join(LINUX_DIR, 'deb', script), app), 0o755);
    }
    const installedKiB = Math.ceil(duKiB(stage));
    put('DEBIAN/control', debControl(app, version, installedKiB), 0o644);
    chmodSync(stage, 0o755);
    const deb = join(outDir, debFileName(app, version));
    // gzip: 42 MB for the agent in ~40 s here; xz -6 gives 29 MB but took 8 minutes on a busy 2-core machine
    run('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z6', '--build', stage, deb]);
    return deb;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

function duKiB(dir: string): number {
  return Number(run('du', ['-sk', '--exclude=DEBIAN', dir]).split(/\s/)[0]);
}

/**
 * `<outDir>/plantbridge-<app>-<version>-linux-x64.tar.gz`: the executable, install.sh, the unit, the
 * sysusers.d file, the example config and INSTALL.md, in one folder of the same name.
 */
export function buildTarball(input: LinuxPackageInput): string {
  const { app, version } = input;
  const name = APPS[app].name;
  const outDir = resolve(input.outDir);
  const folder = `${name}-${version}-linux-x64`;
  mkdirSync(outDir, { recursive: true });
  const stage = mkdtempSync(join(outDir, `.tar-${app}-`));
  try {
    const dir = join(stage, folder);
    mkdirSync(dir, { recursive: true });
    copyFileSync(input.binary, join(dir, `${name}-linux-x64`));
    chmodSync(join(dir, `${name}-linux-x64`), 0o755);
    copyFileSync(join(LINUX_DIR, 'install.sh'), join(dir, 'install.sh'));
    chmodSync(join(dir, 'install.sh'), 0o755);
    copyFileSync(join(LINUX_DIR, `${name}.service`), join(dir, `${name}.service`));
    copyFileSync(join(LINUX_DIR, 'plantbridge.sysusers.conf'), join(dir, 'plantbridge.sysusers.conf'));
    const example = exampleConfig(app);
    if (example) copyFileSync(example, join(dir, `${app}.example.yaml`));
    const installMd = join(REPO, 'docs', 'INSTALL.md');
    if (existsSync(installMd)) copyFileSync(installMd, join(dir, 'INSTALL.md'));
    const tgz = join(outDir, `${folder}.tar.gz`);
    run('tar', ['--owner=0', '--group=0', '-czf', tgz, '-C', stage, folder]);
    return tgz;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

export function sizeOf(file: string): number {
  return statSync(file).size;
}
