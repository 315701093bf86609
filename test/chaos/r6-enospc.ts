import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { IngestWatch } from './ingest-watch.ts';
import { Rig, sleep } from './rig.ts';
import type { Scenario, ScenarioResult } from './scenario.ts';

/**
 * R6: the disk under the agent's state folder fills up for real: a 64 MiB ext4 loop mount, filled with a
 * ballast file to a few MiB free, with minFreeDiskBytes 0 so SQLite itself meets ENOSPC (SQLITE_FULL).
 * Proves: the agent stops acknowledging within 1 s of reporting the error, never exits, and resumes within
 * 10 s after the ballast is removed; the ledger balances. Needs root (losetup/mount).
 */

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? r.stderr}`);
}

export const r6: Scenario = {
  id: 'r6',
  title: 'disk full (ENOSPC) on a loop mount',
  fault: 'ENOSPC under the outbox',
  load: (short) => (short ? '300 events/s, 30 s full' : '300 events/s, 5 min full'),
  async run(ctx): Promise<ScenarioResult> {
    if (process.getuid?.() !== 0) return { metrics: {}, checks: [], skipped: 'not root: a loop mount needs root (CI runs as root)' };
    const fullMs = ctx.short ? 30_000 : 300_000;
    const img = join(ctx.dir, 'disk.img');
    const mnt = join(ctx.dir, 'agent');
    mkdirSync(mnt, { recursive: true });
    run('truncate', ['-s', '64M', img]);
    run('mkfs.ext4', ['-q', '-F', img]);
    run('mount', ['-o', 'loop', img, mnt]);
    const ballast = join(mnt, 'ballast');
    const rig = new Rig({ dir: ctx.dir, agentOutbox: 'minFreeDiskBytes: 0' });
    try {
      await rig.start();
      rig.startHub();
      await rig.hubUp();
      rig.startAgent();
      await rig.agentUp();
      const watch = new IngestWatch(rig);
      let stop = false;
      const published = rig.publish(Number.MAX_SAFE_INTEGER, { perOrder: 600, ratePerS: 300, shouldStop: () => stop });
      await sleep(3_000);
      // leave ~1 MiB: the next WAL growth meets ENOSPC
      const df = spawnSync('df', ['--output=avail', '-B1', mnt], { encoding: 'utf8' }).stdout.trim().split('\n').pop()!;
      run('fallocate', ['-l', String(Math.max(0, Number(df) - 1024 * 1024)), ballast]);
      const tFill = Date.now();
      let tFull: number | undefined;
      while (!tFull && Date.now() - tFill < 300_000) {
        await sleep(500);
        tFull = watch.firstFull(tFill);
      }
      if (!tFull) throw new Error('the agent never reported OUTBOX_IO/OUTBOX_FULL on a full disk');
      ctx.progress(`r6: disk full reported ${Math.round((tFull - tFill) / 1000)} s after the ballast`);
      await sleep(fullMs);
      const acksAfter1s = watch.eventsAt(Date.now()) - watch.eventsAt(tFull + 1000);
      const alive = rig.agent!.proc.exitCode === null && rig.agent!.proc.signalCode === null;
      rmSync(ballast);
      const tBack = Date.now();
      await sleep(15_000);
      const tResume = watch.firstGrowthAfter(tBack);
      const resumeS = tResume ? (tResume - tBack) / 1000 : Number.POSITIVE_INFINITY;
      stop = true;
      await published;
      const drained = await rig.drained(240_000);
      await watch.stop();
      const ledger = await rig.ledger();
      return {
        ledger,
        metrics: { fullAfterS: Math.round((tFull - tFill) / 1000), acksAfterFullPlus1s: acksAfter1s, resumeS: Math.round(resumeS * 10) / 10 },
        checks: [
          { name: 'stops acknowledging < 1 s', ok: acksAfter1s === 0, seen: `${acksAfter1s} events committed later than 1 s after the error` },
          { name: 'never exits', ok: alive, seen: alive ? 'the agent ran throughout' : 'the agent exited' },
          { name: 'resumes <= 10 s', ok: resumeS <= 10, seen: `ingest resumed ${resumeS} s after the space returned` },
          { name: 'drained', ok: drained, seen: drained ? 'agent and hub drained' : 'not drained in time' },
        ],
      };
    } finally {
      await rig.stop();
      spawnSync('umount', ['-l', mnt]);
    }
  },
};
