import { Rig, rssSampler, sleep } from './rig.ts';
import type { Scenario } from './scenario.ts';

/**
 * R4: the hub is unreachable (a partition: connections are accepted and nothing comes back, so the agent
 * times out) while the cell keeps publishing 1k events/s. Then the network returns with ingest still
 * running. Proves: 0 loss, per-order order kept (the ledger's window sequence), the backlog drains at
 * least 3x faster than it grew, and the agent's RSS stays under 256 MB throughout.
 */

export const r4: Scenario = {
  id: 'r4',
  title: 'hub unreachable at 1k events/s, then drain',
  fault: 'partition agent -> hub (blackhole)',
  load: (short) => (short ? '2 min outage, 1k events/s' : '1 h outage, 1k events/s'),
  async run(ctx) {
    const outageMs = ctx.short ? 120_000 : 3_600_000;
    const rate = 1000;
    const rig = new Rig({ dir: ctx.dir, proxyAgentToHub: true });
    const rss = rssSampler(rig);
    try {
      await rig.start();
      rig.startHub();
      await rig.hubUp();
      rig.startAgent();
      await rig.agentUp();
      let stop = false;
      const published = rig.publish(Number.MAX_SAFE_INTEGER, { perOrder: 2000, ratePerS: rate, shouldStop: () => stop });
      await sleep(5_000);
      rig.hubProxy!.setMode('blackhole');
      const a0 = rig.agentCounts()!;
      const t0 = Date.now();
      ctx.progress(`r4: hub unreachable for ${outageMs / 1000} s`);
      while (Date.now() - t0 < outageMs) {
        await sleep(Math.min(30_000, outageMs - (Date.now() - t0)));
        const a = rig.agentCounts();
        ctx.progress(`r4: ${Math.round((Date.now() - t0) / 1000)} s, ${rig.produced.length} events published, ${a?.pending} transactions pending, agent RSS max ${Math.round(rss.max())} MB`);
      }
      const a1 = rig.agentCounts()!;
      const ingestTxPerS = (a1.total - a0.total) / ((Date.now() - t0) / 1000);
      const publishedPerS = rig.produced.length / ((Date.now() - t0 + 5_000) / 1000);
      rig.hubProxy!.setMode('pass');
      const backlog = a1.pending;
      const h1 = rig.hubCounts()!;
      const t1 = Date.now();
      // the backlog drains while the cell keeps publishing
      let drainS = Number.NaN;
      let h2 = h1;
      while (Date.now() - t1 < outageMs + 120_000) {
        await sleep(500);
        const a = rig.agentCounts();
        if (a && a.pending < 50) {
          drainS = (Date.now() - t1) / 1000;
          h2 = rig.hubCounts() ?? h2;
          break;
        }
      }
      const drainTxPerS = (h2.total - h1.total) / drainS;
      stop = true;
      await published;
      const drained = await rig.drained(ctx.short ? 180_000 : 1_800_000);
      const rssMax = rss.stop();
      const ledger = await rig.ledger();
      const ratio = drainTxPerS / ingestTxPerS;
      return {
        ledger,
        metrics: { outageS: outageMs / 1000, publishedPerS: Math.round(publishedPerS), backlogTx: backlog, ingestTxPerS: round(ingestTxPerS), drainTxPerS: round(drainTxPerS), drainS: round(drainS), drainRatio: round(ratio), agentRssMaxMB: Math.round(rssMax) },
        checks: [
          { name: 'load held', ok: publishedPerS >= rate * 0.8, seen: `${Math.round(publishedPerS)} events/s published (asked ${rate})` },
          { name: 'drain >= 3x ingest', ok: ratio >= 3, seen: `drain ${round(drainTxPerS)} tx/s vs ingest ${round(ingestTxPerS)} tx/s (x${round(ratio)}), backlog ${backlog} in ${round(drainS)} s` },
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

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
