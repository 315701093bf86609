import { readdirSync, statSync } from 'node:fs';
import { Rig, rssMB, sleep } from './rig.ts';
import type { Scenario } from './scenario.ts';

/**
 * R15: soak. Steady ingest and posting for a long time with nothing broken. Every 10 s the agent's and
 * the hub's RSS, open file handles and WAL sizes are sampled. Proves: after a warm-up (the first fifth of
 * the run) RSS grows less than 10 %, file handles stay flat, the WALs stay bounded, and the ledger balances.
 */

function fds(pid: number | undefined): number {
  try {
    return pid ? readdirSync(`/proc/${pid}/fd`).length : 0;
  } catch {
    return 0;
  }
}

function size(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

interface Sample {
  t: number;
  agentRss: number;
  hubRss: number;
  agentFds: number;
  hubFds: number;
  agentWal: number;
  hubWal: number;
}

export const r15: Scenario = {
  id: 'r15',
  title: 'soak: steady load, resources bounded',
  fault: 'none (time)',
  load: (short) => (short ? '10 min, 300 events/s' : '24 h, 300 events/s'),
  async run(ctx) {
    const durationMs = ctx.short ? 600_000 : 24 * 3_600_000;
    const rig = new Rig({ dir: ctx.dir, erpLatencyMs: 10 });
    try {
      await rig.start();
      rig.startHub();
      await rig.hubUp();
      rig.startAgent();
      await rig.agentUp();
      let stop = false;
      const published = rig.publish(Number.MAX_SAFE_INTEGER, { perOrder: 1000, ratePerS: 300, shouldStop: () => stop });
      const samples: Sample[] = [];
      const t0 = Date.now();
      while (Date.now() - t0 < durationMs) {
        await sleep(10_000);
        const a = rig.agent!.proc.pid;
        const h = rig.hub!.proc.pid;
        samples.push({
          t: Date.now() - t0,
          agentRss: rssMB(a) ?? 0,
          hubRss: rssMB(h) ?? 0,
          agentFds: fds(a),
          hubFds: fds(h),
          agentWal: size(`${rig.agentDb}-wal`) / 2 ** 20,
          hubWal: size(`${rig.hubDb}-wal`) / 2 ** 20,
        });
        if (samples.length % 6 === 0) {
          const s = samples.at(-1)!;
          ctx.progress(`r15: ${Math.round(s.t / 1000)} s, agent ${s.agentRss.toFixed(0)} MB ${s.agentFds} fds WAL ${s.agentWal.toFixed(1)} MB, hub ${s.hubRss.toFixed(0)} MB ${s.hubFds} fds WAL ${s.hubWal.toFixed(1)} MB`);
        }
      }
      stop = true;
      await published;
      const drained = await rig.drained(180_000);
      const ledger = await rig.ledger();
      // after warm-up: the mean of the first third of the rest against the mean of its last third
      const rest = samples.slice(Math.floor(samples.length / 5));
      const third = Math.max(1, Math.floor(rest.length / 3));
      const mean = (xs: Sample[], k: keyof Sample) => xs.reduce((s, x) => s + x[k], 0) / xs.length;
      const growth = (k: keyof Sample) => mean(rest.slice(-third), k) / mean(rest.slice(0, third), k) - 1;
      const max = (k: keyof Sample) => Math.max(...rest.map((s) => s[k]));
      const min = (k: keyof Sample) => Math.min(...rest.map((s) => s[k]));
      const agentGrowth = growth('agentRss');
      const hubGrowth = growth('hubRss');
      const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
      return {
        ledger,
        metrics: {
          durationS: durationMs / 1000,
          events: rig.produced.length,
          agentRssGrowthPct: Math.round(agentGrowth * 1000) / 10,
          hubRssGrowthPct: Math.round(hubGrowth * 1000) / 10,
          agentRssMaxMB: Math.round(max('agentRss')),
          hubRssMaxMB: Math.round(max('hubRss')),
          agentFdsMax: max('agentFds'),
          hubFdsMax: max('hubFds'),
          agentWalMaxMB: Math.round(max('agentWal') * 10) / 10,
          hubWalMaxMB: Math.round(max('hubWal') * 10) / 10,
        },
        checks: [
          { name: 'agent RSS growth < 10 %', ok: agentGrowth < 0.1, seen: pct(agentGrowth) },
          { name: 'hub RSS growth < 10 %', ok: hubGrowth < 0.1, seen: pct(hubGrowth) },
          { name: 'file handles flat', ok: max('agentFds') - min('agentFds') <= 5 && max('hubFds') - min('hubFds') <= 5, seen: `agent ${min('agentFds')}-${max('agentFds')}, hub ${min('hubFds')}-${max('hubFds')}` },
          { name: 'WAL bounded', ok: max('agentWal') < 64 && max('hubWal') < 64, seen: `agent max ${max('agentWal').toFixed(1)} MB, hub max ${max('hubWal').toFixed(1)} MB` },
          { name: 'drained', ok: drained, seen: drained ? 'agent and hub drained' : 'not drained in time' },
        ],
      };
    } finally {
      await rig.stop();
    }
  },
};
