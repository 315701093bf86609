import { spawnSync } from 'node:child_process';
import { Rig, seeded, sleep } from './rig.ts';
import type { Check, Scenario } from './scenario.ts';

/**
 * R12: a bad network on both hops. Partitions between agent and hub and between hub and ERP flap every
 * 2-6 s (the harness's TCP proxies: blackhole, then pass again, cutting open connections), every chunk is
 * delayed 100 ms each way (200 ms round trip; this kernel has no sch_netem), and 5 % of the packets to
 * and from the hub's and the ERP's ports are dropped by nftables (`numgen random mod 100 < 5`, root only).
 * Proves: 0 loss, 0 duplicates.
 */

function nft(args: string[]): { ok: boolean; err: string } {
  const r = spawnSync('nft', args, { encoding: 'utf8' });
  return { ok: r.status === 0, err: r.error?.message ?? r.stderr };
}

export const r12: Scenario = {
  id: 'r12',
  title: 'flapping partitions, 5% packet loss, 200 ms latency',
  fault: 'proxies flap agent<->hub and hub<->ERP; nftables drops 5 %',
  load: (short) => (short ? '1 min, 300 events/s' : '10 min, 300 events/s'),
  async run(ctx) {
    const root = process.getuid?.() === 0;
    const durationMs = ctx.short ? 60_000 : 600_000;
    const rnd = seeded(23_012);
    const rig = new Rig({ dir: ctx.dir, proxyAgentToHub: true, proxyHubToErp: true, erpLatencyMs: 5 });
    const table = `pbchaos${process.pid}`;
    let dropping = false;
    try {
      await rig.start();
      if (root) {
        const ports = `{ ${rig.hubPort}, ${new URL(rig.sap.url).port} }`;
        const steps = [
          ['add', 'table', 'inet', table],
          ['add', 'chain', 'inet', table, 'input', '{ type filter hook input priority 0; policy accept; }'],
          ['add', 'rule', 'inet', table, 'input', 'tcp', 'dport', ports, 'numgen', 'random', 'mod', '100', '<', '5', 'drop'],
          ['add', 'rule', 'inet', table, 'input', 'tcp', 'sport', ports, 'numgen', 'random', 'mod', '100', '<', '5', 'drop'],
        ];
        for (const s of steps) {
          const r = nft(s);
          if (!r.ok) throw new Error(`nft ${s.join(' ')}: ${r.err}`);
        }
        dropping = true;
      } else ctx.progress('r12: not root: no nftables packet loss, partitions and latency only (the result says so)');
      rig.hubProxy!.setDelay(100);
      rig.erpProxy!.setDelay(100);
      rig.startHub();
      await rig.hubUp();
      rig.startAgent();
      await rig.agentUp();
      let stop = false;
      const published = rig.publish(Number.MAX_SAFE_INTEGER, { perOrder: 600, ratePerS: 300, shouldStop: () => stop });
      const t0 = Date.now();
      let flaps = 0;
      while (Date.now() - t0 < durationMs) {
        const p = rnd(2) === 0 ? rig.hubProxy! : rig.erpProxy!;
        p.setMode('blackhole');
        await sleep(1000 + rnd(3000));
        p.setMode('pass');
        flaps++;
        await sleep(1000 + rnd(3000));
      }
      stop = true;
      await published;
      const drained = await rig.drained(240_000);
      const ledger = await rig.ledger();
      const checks: Check[] = [
        { name: 'drained', ok: drained, seen: drained ? 'agent and hub drained' : 'not drained in time' },
        { name: 'packet loss applied', ok: dropping, seen: dropping ? '5 % drop on the hub and ERP ports (nftables)' : 'not root: no packet loss' },
      ];
      return { ledger, metrics: { durationS: durationMs / 1000, flaps, erpPosts: rig.sap.stats().posts, erpLookups: rig.sap.stats().gets }, checks };
    } finally {
      if (dropping) nft(['delete', 'table', 'inet', table]);
      await rig.stop();
    }
  },
};
