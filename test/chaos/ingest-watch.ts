import type { Rig } from './rig.ts';
import { sleep } from './rig.ts';

/**
 * Watches the agent from outside every 100 ms: the number of cycle events its outbox holds (each one was
 * acknowledged to the broker right after its commit) and whether /healthz reports the outbox full.
 */
export class IngestWatch {
  readonly samples: Array<{ t: number; events: number; full: boolean }> = [];
  #stop = false;
  #done: Promise<void>;

  constructor(rig: Rig) {
    this.#done = (async () => {
      while (!this.#stop) {
        const a = rig.agentCounts();
        const h = await fetch(`http://127.0.0.1:${rig.statusPort}/healthz`).then((r) => r.text()).catch(() => '');
        if (a) this.samples.push({ t: Date.now(), events: a.events, full: /OUTBOX_FULL|OUTBOX_IO/.test(h) });
        await sleep(100);
      }
    })();
  }

  /** first time the agent reported its outbox full / failing */
  firstFull(after = 0): number | undefined {
    return this.samples.find((s) => s.t >= after && s.full)?.t;
  }

  /** events committed at time t (the last sample at or before t) */
  eventsAt(t: number): number {
    let n = 0;
    for (const s of this.samples) if (s.t <= t) n = s.events;
    return n;
  }

  /** first time after t the event count grew past what it was at t */
  firstGrowthAfter(t: number): number | undefined {
    const base = this.eventsAt(t);
    return this.samples.find((s) => s.t > t && s.events > base)?.t;
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await this.#done;
  }
}
