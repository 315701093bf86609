import { Rig, rssSampler, sleep } from './rig.ts';
import type { Scenario } from './scenario.ts';

/**
 * R14: the hub is slow: every chunk between agent and hub is held 1 s (so each request takes seconds)
 * while the cell publishes. Proves: the agent's memory stays bounded (the backlog waits on disk, not in
 * memory) and the ledger balances once the hub is fast again.
 */

export const r14: Scenario = {
  id: 'r14',
  title: 'slow hub (1 s per request)',
  fault: '1 s delay agent <-> hub (proxy)',
  load: (short) => (short ? '1 min slow, 500 events/s' : '10 min slow, 500 events/s'),
  async run(ctx) {
    const slowMs = ctx.short ? 60_000 : 600_000;
    const rig = new Rig({ dir: ctx.dir, proxyAgentToHub: true, agentRequestTimeout: '30s' });
    const rss = rssSampler(rig);
    try {
      await rig.start();
      rig.startHub();
      await rig.hubUp();
      rig.startAgent();
      await rig.agentUp();
      let stop = false;
      const published = rig.publish(Number.MAX_SAFE_INTEGER, { perOrder: 1000, ratePerS: 500, shouldStop: () => stop });
      await sleep(10_000);
      const rssBefore = rss.max();
      rig.hubProxy!.setDelay(1000);
      ctx.progress(`r14: hub slow for ${slowMs / 1000} s`);
      const t0 = Date.now();
      while (Date.now() - t0 < slowMs) await sleep(Math.min(30_000, slowMs - (Date.now() - t0)));
      const pendingAtEnd = rig.agentCounts()?.pending ?? -1;
      rig.hubProxy!.setDelay(0);
      stop = true;
      await published;
      const drained = await rig.drained(180_000);
      const rssMax = rss.stop();
      const ledger = await rig.ledger();
      return {
        ledger,
        metrics: { slowS: slowMs / 1000, pendingAtEnd, agentRssBeforeMB: Math.round(rssBefore), agentRssMaxMB: Math.round(rssMax) },
        checks: [
          { name: 'agent RSS < 256 MB', ok: rssMax < 256, seen: `max ${Math.round(rssMax)} MB (before the slow hub ${Math.round(rssBefore)} MB)` },
          { name: 'drained', ok: drained, seen: drained ? 'agent and hub drained' : 'not drained in time' },
        ],
      };
    } finally {
      rss.stop();
      await rig.stop();
    }
  },
};
