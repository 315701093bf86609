import Database from 'better-sqlite3';
import { killLoop } from './kill-loop.ts';
import { powerlossEnv } from './powerloss/build.ts';
import { Rig, seeded } from './rig.ts';
import type { Scenario } from './scenario.ts';

/**
 * R3: power loss. The agent's outbox and the hub's database sit behind the power-loss shim
 * (powerloss/powerloss.c): every write not yet fsynced lives only in the process, so each SIGKILL is a
 * power cut for that machine. The cuts alternate between the agent and the hub during MQTT ingest and
 * posting. Afterwards: nothing the broker had acknowledged to the machine is lost, nothing is doubled,
 * both databases pass integrity_check, and neither process got into a crash loop.
 */

function integrity(path: string): string {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return String(db.pragma('integrity_check', { simple: true }));
  } finally {
    db.close();
  }
}

export const r3: Scenario = {
  id: 'r3',
  title: 'power loss (unsynced writes lost) on agent and hub',
  fault: 'power cut: SIGKILL + unsynced pages dropped (LD_PRELOAD shim)',
  load: (short) => (short ? '10 cuts, 3k events' : '50 cuts, 20k events'),
  async run(ctx) {
    const cuts = ctx.short ? 10 : 50;
    const events = ctx.short ? 3_000 : 20_000;
    const rate = Math.round(events / (cuts * 1.8));
    const dir = ctx.dir;
    const rig = new Rig({ dir, erpLatencyMs: 20, agentEnv: powerlossEnv(`${dir}/agent/outbox.db`), hubEnv: powerlossEnv(`${dir}/hub/hub.db`) });
    try {
      await rig.start();
      rig.startHub();
      await rig.hubUp();
      rig.startAgent();
      await rig.agentUp();
      const published = rig.publish(events, { perOrder: 300, ratePerS: rate });
      const k = await killLoop(rig, 'alternate', cuts, seeded(23_003), ctx, 'r3');
      await published;
      const drained = await rig.drained(ctx.short ? 120_000 : 600_000);
      const ledger = await rig.ledger();
      const agentIntegrity = integrity(rig.agentDb);
      const hubIntegrity = integrity(rig.hubDb);
      const shimmed = { agent: rig.log('agent').split('powerloss: active for').length - 1, hub: rig.log('hub').split('powerloss: active for').length - 1 };
      const starts = rig.starts();
      return {
        ledger,
        metrics: { cuts: k.kills, events: rig.produced.length, restartMaxS: k.restartMaxS, earlyExits: k.earlyExits },
        checks: [
          { name: 'drained', ok: drained, seen: drained ? 'agent and hub drained' : 'not drained in time' },
          { name: 'no crash loop', ok: k.earlyExits === 0, seen: `${k.earlyExits} exits not caused by the harness` },
          { name: 'shim in place', ok: shimmed.agent === starts.agent && shimmed.hub === starts.hub, seen: `shim loaded in ${shimmed.agent}/${starts.agent} agent and ${shimmed.hub}/${starts.hub} hub starts` },
          { name: 'agent integrity_check', ok: agentIntegrity === 'ok', seen: agentIntegrity },
          { name: 'hub integrity_check', ok: hubIntegrity === 'ok', seen: hubIntegrity },
        ],
      };
    } finally {
      await rig.stop();
    }
  },
};
