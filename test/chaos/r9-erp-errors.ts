import { Rig, sleep } from './rig.ts';
import type { Scenario } from './scenario.ts';

/**
 * R9: the ERP answers 500 to everything for a while, and 1 % of the orders are closed in the ERP (a
 * business error: rejected, never retried). Proves: nothing is lost across the outage, the closed orders'
 * rows fail with their business code and nothing else fails, and they do not hold up other orders: once
 * the ERP is back, every other order posts.
 */

const FIRST_ORDER = 4_100_000;

export const r9: Scenario = {
  id: 'r9',
  title: 'ERP 500s with 1% business errors',
  fault: 'ERP HTTP 500 + closed orders',
  load: (short) => (short ? '1 min of 500s, 300 events/s' : '10 min of 500s, 300 events/s'),
  async run(ctx) {
    const faultMs = ctx.short ? 60_000 : 600_000;
    const rate = 300;
    const perOrder = 60;
    const orders = Math.ceil(((faultMs + 40_000) / 1000) * (rate / perOrder)) + 10;
    // every 100th order is closed in the ERP
    const closed = Array.from({ length: orders }, (_, i) => i).filter((i) => i % 100 === 37).map((i) => String(FIRST_ORDER + i));
    const rig = new Rig({ dir: ctx.dir, closedOrders: closed });
    try {
      await rig.start();
      rig.startHub();
      await rig.hubUp();
      rig.startAgent();
      await rig.agentUp();
      let stop = false;
      const published = rig.publish(Number.MAX_SAFE_INTEGER, { perOrder, ratePerS: rate, firstOrder: FIRST_ORDER, shouldStop: () => stop });
      await sleep(10_000);
      rig.sap.setFault({ kind: 'status', status: 500, forMs: faultMs });
      ctx.progress(`r9: ERP answers 500 for ${faultMs / 1000} s; closed orders ${closed.join(', ')}`);
      await sleep(faultMs);
      const t1 = Date.now();
      await sleep(20_000);
      stop = true;
      await published;
      const drained = await rig.drained(ctx.short ? 180_000 : 900_000);
      const recoveryS = (Date.now() - t1) / 1000;
      const ledger = await rig.ledger();
      const producedOrders = new Set(rig.produced.map((f) => f.order));
      const closedHit = closed.filter((o) => producedOrders.has(o));
      return {
        ledger,
        metrics: { faultS: faultMs / 1000, closedOrders: closedHit.length, orders: producedOrders.size, recoveryS: Math.round(recoveryS) },
        checks: [
          { name: 'closed orders produced', ok: closedHit.length > 0, seen: `${closedHit.length} of ${producedOrders.size} orders closed in the ERP` },
          { name: 'drained', ok: drained, seen: drained ? 'every other order posted after the outage' : 'not drained in time (head-of-line blocking?)' },
        ],
      };
    } finally {
      await rig.stop();
    }
  },
};
