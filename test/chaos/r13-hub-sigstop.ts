import { Rig, rssSampler, sleep } from './rig.ts';
import type { Scenario } from './scenario.ts';

/**
 * R13: the hub is frozen with SIGSTOP for 60 s (its sockets stay open, nothing answers) and then
 * continued. Proves: the agent times out and retries without losing or doubling anything, and its memory
 * stays bounded while the hub is frozen.
 */

export const r13: Scenario = {
  id: 'r13',
  title: 'hub SIGSTOP 60 s',
  fault: 'hub SIGSTOP / SIGCONT',
  load: (short) => (short ? '60 s stop, 300 events/s' : '60 s stop x3, 300 events/s'),
  async run(ctx) {
    const stops = ctx.short ? 1 : 3;
    const rig = new Rig({ dir: ctx.dir, erpLatencyMs: 20 });
    const rss = rssSampler(rig);
    try {
      await rig.start();
      rig.startHub();
      await rig.hubUp();
      rig.startAgent();
      await rig.agentUp();
      let stop = false;
      const published = rig.publish(Number.MAX_SAFE_INTEGER, { perOrder: 500, ratePerS: 300, shouldStop: () => stop });
      const recovery: number[] = [];
      for (let i = 0; i < stops; i++) {
        await sleep(10_000);
        rig.hub!.proc.kill('SIGSTOP');
        ctx.progress(`r13: hub stopped (${i + 1}/${stops})`);
        await sleep(60_000);
        rig.hub!.proc.kill('SIGCONT');
        const t = Date.now();
        await rig.hubUp();
        // recovered when the hub has taken what piled up meanwhile
        const end = Date.now() + 120_000;
        while (Date.now() < end && (rig.agentCounts()?.pending ?? 1e9) > 50) await sleep(250);
        recovery.push((Date.now() - t) / 1000);
      }
      await sleep(5_000);
      stop = true;
      await published;
      const drained = await rig.drained(180_000);
      const rssMax = rss.stop();
      const ledger = await rig.ledger();
      return {
        ledger,
        metrics: { stops, recoveryMaxS: Math.max(...recovery), agentRssMaxMB: Math.round(rssMax) },
        checks: [
          { name: 'recovered', ok: recovery.every((r) => r < 120), seen: `backlog taken ${recovery.map((r) => `${r.toFixed(1)} s`).join(', ')} after SIGCONT` },
          { name: 'agent RSS < 256 MB', ok: rssMax < 256, seen: `max ${Math.round(rssMax)} MB` },
          { name: 'drained', ok: drained, seen: drained ? 'agent and hub drained' : 'not drained in time' },
        ],
      };
    } finally {
      rss.stop();
      await rig.stop();
    }
  },
};
