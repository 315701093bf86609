import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { APPS, REPO, TARGETS, buildExecutable, cleanWorkDirs, hasTool, mb, sha256File, type App, type Target } from './sea.ts';
import { buildDeb, buildTarball } from './linux-package.ts';
import { buildWindowsBundle, winswExecutable } from './windows-package.ts';

/**
 * `npm run package [-- --app agent --target linux-x64 --out dist --no-deb --no-strip]`
 *
 * Writes dist/plantbridge-{agent,hub}-{linux-x64,win-x64[.exe]}, and around them the .deb and the
 * install.sh archive (Linux) and the Windows folder (executable, pinned WinSW wrapper, install.ps1) + zip,
 * then dist/SHA256SUMS.
 */

const USAGE = `node installers/build/package.ts [--app agent|hub]... [--target linux-x64|win-x64]... [--out DIR]
  [--no-deb] [--no-archives] [--no-strip] [--no-code-cache]`;

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      app: { type: 'string', multiple: true },
      target: { type: 'string', multiple: true },
      out: { type: 'string', default: join(REPO, 'dist') },
      'no-deb': { type: 'boolean', default: false },
      'no-archives': { type: 'boolean', default: false },
      'no-strip': { type: 'boolean', default: false },
      'no-code-cache': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const apps = (values.app ?? Object.keys(APPS)) as App[];
  const targets = (values.target ?? TARGETS) as Target[];
  for (const a of apps) if (!(a in APPS)) throw new Error(`unknown app ${a}\n${USAGE}`);
  for (const t of targets) if (!TARGETS.includes(t)) throw new Error(`unknown target ${t}\n${USAGE}`);
  for (const a of apps) {
    if (!existsSync(join(REPO, APPS[a].entry))) throw new Error(`${APPS[a].entry} does not exist: cannot build ${APPS[a].name}`);
  }
  const outDir = resolve(values.out);
  mkdirSync(outDir, { recursive: true });
  cleanWorkDirs(outDir);
  const version = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
  const log = (s: string) => process.stdout.write(`${s}\n`);
  log(`PlantBridge ${version}: ${apps.join(', ')} for ${targets.join(', ')} with Node ${process.version} -> ${relative(process.cwd(), outDir) || '.'}`);

  const t0 = performance.now();
  const artifacts: string[] = [];
  for (const app of apps) {
    for (const target of targets) {
      const r = await buildExecutable({
        app,
        target,
        outDir,
        strip: values['no-strip'] ? false : undefined,
        codeCache: !values['no-code-cache'],
        log,
      });
      for (const w of r.warnings) log(`  warning: ${w}`);
      artifacts.push(r.file);
      if (values['no-archives']) continue;
      if (target === 'linux-x64') {
        if (!values['no-deb'] && hasTool('dpkg-deb')) artifacts.push(buildDeb({ app, version, binary: r.file, outDir }));
        else if (!values['no-deb']) log('  dpkg-deb not found: no .deb (apt-get install dpkg-dev)');
        artifacts.push(buildTarball({ app, version, binary: r.file, outDir }));
      } else {
        const w = buildWindowsBundle({ app, version, exe: r.file, outDir, wrapper: winswExecutable({ log }) });
        if (w.zip) artifacts.push(w.zip);
        else artifacts.push(w.dir);
      }
    }
  }
  const sums = artifacts
    .filter((f) => !f.endsWith('-win-x64'))
    .map((f) => `${sha256File(f)}  ${basename(f)}`)
    .join('\n');
  writeFileSync(join(outDir, 'SHA256SUMS'), `${sums}\n`);
  log('');
  for (const f of artifacts) log(`${f.endsWith('-win-x64') ? '(folder)' : mb(sizeOrZero(f)).padStart(9)}  ${relative(process.cwd(), f)}`);
  log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s; checksums in ${relative(process.cwd(), join(outDir, 'SHA256SUMS'))}`);
  return 0;
}

function sizeOrZero(f: string): number {
  try {
    return statSync(f).size;
  } catch {
    return 0;
  }
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`package: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
