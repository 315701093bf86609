import type { DriverConfig } from '../config/schema.ts';
import type { Driver, DriverContext, DriverModule } from './driver.ts';

/**
 * Drivers are loaded lazily: node-opcua alone takes ~2 s to import, and `--version`, `--help` and
 * `check-config` must answer at once.
 */
const loaders: Record<DriverConfig['type'], () => Promise<DriverModule<any>>> = {
  simulator: () => import('./simulator/simulator-driver.ts'),
  opcua: () => import('./opcua/opcua-driver.ts'),
  mqtt: () => import('./mqtt/mqtt-driver.ts'),
  sparkplug: () => import('./sparkplug/sparkplug-driver.ts'),
};

export async function createDriver(config: DriverConfig, ctx: DriverContext): Promise<Driver> {
  const mod = await loaders[config.type]();
  return mod.create(config, ctx);
}
