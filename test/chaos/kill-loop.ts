import type { Rig } from './rig.ts';
import { sleep } from './rig.ts';
import type { ScenarioContext } from './scenario.ts';

export interface KillLoopResult {
  kills: number;
  /** exits the harness did not cause (a crash loop shows here) */
  earlyExits: number;
  /** longest time from a restart to healthy again */
  restartMaxS: number;
}

/**
 * SIGKILLs `which` (agent, hub, or each in turn) `kills` times at seeded random points 0.3-3.3 s apart and
 * starts it again at once; every 5th kill lands during start-up, before it answers healthy.
 */
export async function killLoop(rig: Rig, which: 'agent' | 'hub' | 'alternate', kills: number, rnd: (n: number) => number, ctx: ScenarioContext, label: string): Promise<KillLoopResult> {
  let earlyExits = 0;
  let killed = 0;
  const restartMs: number[] = [];
  while (killed < kills) {
    const target = which === 'alternate' ? (killed % 2 === 0 ? 'agent' : 'hub') : which;
    const child = target === 'agent' ? rig.agent! : rig.hub!;
    const ended = await Promise.race([sleep(300 + rnd(3000)).then(() => undefined), child.exited]);
    if (ended) earlyExits++;
    await child.kill('SIGKILL');
    killed++;
    const t0 = Date.now();
    if (target === 'agent') rig.startAgent();
    else rig.startHub();
    if (killed % 5 === 0) continue;
    if (target === 'agent') await rig.agentUp();
    else await rig.hubUp();
    restartMs.push(Date.now() - t0);
    if (killed % 10 === 0) ctx.progress(`${label}: ${killed}/${kills} kills, ${rig.produced.length} events published`);
  }
  // the last one started during start-up may still be coming up
  await rig.hubUp();
  await rig.agentUp();
  return { kills: killed, earlyExits, restartMaxS: Math.max(0, ...restartMs) / 1000 };
}
