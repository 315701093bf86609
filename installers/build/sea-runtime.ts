import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { getAsset, isSea } from 'node:sea';

/**
 * Runtime side of the single executable (SEA): the build embeds better-sqlite3's prebuilt addon for the
 * target as the asset below; at start the agent (or hub) writes it into its state directory and passes
 * the path to `new Database(file, { nativeBinding })`. Outside a SEA everything returns undefined and
 * better-sqlite3 finds its addon in node_modules as usual.
 */

export const NATIVE_ADDON_ASSET = 'better_sqlite3.node';

/** The MQTT driver's commit thread (agent/drivers/mqtt/commit-worker.ts), bundled on its own: worker code is an asset too. */
export const COMMIT_WORKER_ASSET = 'mqtt-commit-worker.cjs';

/** The hub SQLite store's checkpoint thread (central-hub/store/sqlite/checkpoint-worker.ts), likewise. */
export const HUB_CHECKPOINT_ASSET = 'hub-checkpoint-worker.cjs';

/** better-sqlite3's prebuilt Linux addon links against glibc 2.34 symbols (Node 24 itself needs 2.28). */
export const ADDON_MIN_GLIBC = '2.34';

export function isSingleExecutable(): boolean {
  return isSea();
}

/**
 * Path of better-sqlite3's addon extracted from the executable into `<stateDir>/lib/`, or undefined when
 * this process is not a single executable (see extractAddon).
 */
export function nativeBindingPath(stateDir: string): string | undefined {
  if (!isSea()) return undefined;
  return extractAddon(join(stateDir, 'lib'), new Uint8Array(getAsset(NATIVE_ADDON_ASSET)));
}

/**
 * Writes the addon `bytes` into `dir` as `better_sqlite3-<hash>.node` and returns that path. The file name
 * carries the content hash, so an upgrade writes a new file next to the old one (a loaded DLL cannot be
 * overwritten on Windows). An existing file is re-hashed and rewritten if it differs, so a truncated or
 * altered copy never loads. Copies of other versions are removed where possible: on Windows a copy that
 * another process has loaded (the running service, beside a newer executable's `outbox stats`) refuses
 * with EPERM or EBUSY and stays until a later start.
 */
export function extractAddon(dir: string, bytes: Uint8Array): string {
  const hash = sha256(bytes);
  const name = `better_sqlite3-${hash.slice(0, 16)}.node`;
  const file = join(dir, name);
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  let current: string | undefined;
  try {
    current = sha256(readFileSync(file));
  } catch {
    current = undefined;
  }
  if (current !== hash) {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, bytes, { mode: 0o640 });
    renameSync(tmp, file);
  }
  for (const other of readdirSync(dir)) {
    if (other !== name && /^better_sqlite3-[0-9a-f]+\.node(\.\d+\.tmp)?$/.test(other)) {
      try {
        rmSync(join(dir, other), { force: true });
      } catch {
        // in use by another process (or not ours to remove): harmless, it is never loaded by this version
      }
    }
  }
  return file;
}

export type SqliteChoice =
  | { engine: 'better-sqlite3'; nativeBinding?: string }
  | { engine: 'node:sqlite'; reason: string };

/**
 * Which SQLite engine this process can use. better-sqlite3 everywhere its addon can load; Node's built-in
 * `node:sqlite` where it cannot: Linux with glibc older than 2.34 (RHEL 8, Ubuntu 20.04, Debian 11).
 * The outbox still falls back when opening the addon fails for another reason (e.g. a noexec state dir).
 */
export function chooseSqlite(stateDir: string): SqliteChoice {
  const glibc = glibcVersion();
  if (glibc && compareVersions(glibc, ADDON_MIN_GLIBC) < 0) {
    return { engine: 'node:sqlite', reason: `glibc ${glibc} is older than ${ADDON_MIN_GLIBC}, which better-sqlite3's addon needs` };
  }
  const nativeBinding = nativeBindingPath(stateDir);
  return nativeBinding ? { engine: 'better-sqlite3', nativeBinding } : { engine: 'better-sqlite3' };
}

/** glibc version of this process ("2.36"), undefined on musl, Windows and macOS. */
export function glibcVersion(): string | undefined {
  if (process.platform !== 'linux') return undefined;
  const report = process.report as unknown as { excludeNetwork: boolean; getReport(): { header: { glibcVersionRuntime?: string } } };
  const before = report.excludeNetwork;
  report.excludeNetwork = true;
  try {
    return report.getReport().header.glibcVersionRuntime;
  } finally {
    report.excludeNetwork = before;
  }
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
