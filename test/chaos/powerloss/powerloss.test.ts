import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { missing } from '../../helpers/services.ts';
import { powerlossEnv } from './build.ts';

/**
 * The power-loss shim (powerloss.c) must itself be proven: a child writes rows into SQLite behind it and is
 * SIGKILLed. With synchronous=OFF (no fsync) the rows must be gone - the shim dropped the unsynced pages,
 * which plain SIGKILL never does (the control without the shim keeps them). With synchronous=FULL (fsync
 * at each commit) every committed row must survive. While alive, the child reads its own writes back.
 */

const ROOT = join(import.meta.dirname, '..', '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'pb-powerloss-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const CHILD = `
import Database from 'better-sqlite3';
const [path, sync, rows] = process.argv.slice(1);
const db = new Database(path);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = ' + sync);
db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
for (let i = 0; i < Number(rows); i++) ins.run('x'.repeat(200) + i);
const n = db.prepare('SELECT COUNT(*) AS n FROM t').get().n;
console.log('committed ' + n);
setInterval(() => {}, 1000);
`;

/** runs the child until it printed its count, SIGKILLs it, and returns the count it saw */
function runAndKill(path: string, sync: 'OFF' | 'FULL', rows: number, env: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD, path, sync, String(rows)], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let seen = -1;
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^committed (\d+)$/.exec(line);
      if (m) {
        seen = Number(m[1]);
        child.kill('SIGKILL');
      }
    });
    child.on('error', reject);
    child.on('close', (_code, sig) => (sig === 'SIGKILL' && seen >= 0 ? resolve(seen) : reject(new Error(`child ended with ${sig ?? _code}: ${stderr}`))));
  });
}

function rowsOnDisk(path: string): number {
  const db = new Database(path);
  try {
    const ok = db.pragma('integrity_check', { simple: true });
    assert.equal(ok, 'ok', 'the database survives the power cut intact');
    const t = db.prepare("SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 't'").get() as { n: number };
    return t.n === 0 ? 0 : (db.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

// gcc builds the shim; without it (or off Linux) the tests skip with the reason, and fail in CI
const unavailable =
  process.platform !== 'linux' ? missing('the power-loss shim', 'it needs Linux (LD_PRELOAD over glibc)') : spawnSync('gcc', ['--version']).status !== 0 ? missing('gcc', 'apt-get install gcc') : undefined;

void describe('power-loss shim', { skip: unavailable }, () => {
  void it('drops writes that were never synced, so the rows are gone after SIGKILL', async () => {
    const path = join(dir, 'unsynced', 'db.sqlite');
    mkdirSync(join(dir, 'unsynced'));
    const seen = await runAndKill(path, 'OFF', 500, powerlossEnv(join(dir, 'unsynced')));
    assert.equal(seen, 500, 'the child reads its own unsynced writes back');
    assert.equal(rowsOnDisk(path), 0, 'no unsynced row reached the disk');
  });

  void it('control: without the shim, SIGKILL alone keeps the same unsynced rows (the page cache survives)', async () => {
    const path = join(dir, 'control', 'db.sqlite');
    mkdirSync(join(dir, 'control'));
    const seen = await runAndKill(path, 'OFF', 500, {});
    assert.equal(seen, 500);
    assert.equal(rowsOnDisk(path), 500);
  });

  void it('keeps every row committed with fsync (synchronous=FULL), across repeated power cuts', async () => {
    const sub = join(dir, 'synced');
    mkdirSync(sub);
    const path = join(sub, 'db.sqlite');
    let expected = 0;
    for (let i = 0; i < 3; i++) {
      const seen = await runAndKill(path, 'FULL', 200, powerlossEnv(sub));
      expected += 200;
      assert.equal(seen, expected);
      assert.equal(rowsOnDisk(path), expected, `power cut ${i + 1}: every fsynced commit is on disk`);
    }
  });

  void it('in WAL mode, commits without fsync (synchronous=OFF) after a synced base are lost but the database stays intact', async () => {
    const sub = join(dir, 'normal');
    mkdirSync(sub);
    const path = join(sub, 'db.sqlite');
    // first a synced base, then unsynced commits on top
    await runAndKill(path, 'FULL', 100, powerlossEnv(sub));
    const seen = await runAndKill(path, 'OFF', 300, powerlossEnv(sub));
    assert.equal(seen, 400);
    assert.equal(rowsOnDisk(path), 100, 'only the synced base is left');
  });
});
