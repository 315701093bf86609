import { isPlantBridgeError, type Signal } from '../../../contracts/index.ts';
import { HealthTracker, type Driver, type DriverContext } from '../driver.ts';
import type { SimulatorConfig } from './config.ts';
import { lineAt, tickAt, type LineParams } from './line-model.ts';

/**
 * The simulator driver: a small line with good and scrap counters and an order tag (refs `good`,
 * `scrap`, `order`). Each tick's three signals are committed together; a tick that could not be
 * committed (outbox full) is retried on the next timer, like a source that was not acknowledged.
 */
export function create(config: SimulatorConfig, ctx: DriverContext): Driver {
  const health = new HealthTracker(ctx.log);
  const params: LineParams = {
    intervalMs: config.interval,
    partsPerTick: config.partsPerTick,
    scrapEvery: config.scrapEvery,
    orderSize: config.orderSize,
    firstOrder: config.firstOrder,
    operation: config.operation,
    counterBits: config.counterBits,
  };
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let lastTick: number | undefined;

  const signalsFor = (tick: number): Signal[] => {
    const s = lineAt(tick, params);
    const receivedAt = new Date().toISOString();
    const id = (ref: string) => `${config.name}/${ref}/${String(tick).padStart(12, '0')}`;
    const base = { source: config.name, quality: 'good' as const, sourceTime: s.time, receivedAt };
    return [
      { ...base, ref: 'good', value: s.good, sourceId: id('good') },
      { ...base, ref: 'scrap', value: s.scrap, sourceId: id('scrap') },
      { ...base, ref: 'order', value: s.order, sourceId: id('order') },
    ];
  };

  const step = async () => {
    const tick = tickAt(Date.now(), params.intervalMs);
    if (lastTick !== undefined && tick <= lastTick) return;
    try {
      await ctx.emit(signalsFor(tick));
      lastTick = tick;
      health.valueSeen();
      health.set('up');
    } catch (err) {
      health.set('degraded', isPlantBridgeError(err) ? `${err.code}: ${err.message}` : String(err));
    }
  };

  return {
    name: config.name,
    type: 'simulator',
    async start() {
      health.set('up');
      timer = setInterval(() => {
        if (!running) running = step().finally(() => (running = undefined));
      }, Math.max(10, Math.floor(params.intervalMs / 4)));
    },
    async stop() {
      clearInterval(timer);
      await running;
      health.set('stopped');
    },
    health: () => health.get(),
  };
}
