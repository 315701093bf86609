import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Signal } from '../../../contracts/index.ts';
import { openOutbox, type Outbox } from '../../outbox/outbox.ts';
import { testLogger } from '../../../test/helpers/log.ts';
import type { DriverContext } from '../driver.ts';
import type { LineParams } from '../simulator/line-model.ts';
import { opcuaConfigSchema, type OpcuaConfig } from './config.ts';

/** Shared pieces of the OPC UA driver tests: a real outbox as the commit target, and polling. */

export const fastLine: LineParams = {
  intervalMs: 100,
  partsPerTick: 5,
  scrapEvery: 20,
  orderSize: 200,
  firstOrder: 1000100,
  operation: '0010',
  counterBits: 32,
};

export interface TestCtx {
  ctx: DriverContext;
  outbox: Outbox;
  stateDir: string;
  /** signals in commit order, appended only after the outbox commit resolved */
  committed: Signal[];
  /** make emit fail with OUTBOX_FULL-like errors while set */
  failEmit: { on: boolean; calls: number };
  close(): void;
}

export function testCtx(stateDir = mkdtempSync(join(tmpdir(), 'pb-opcua-'))): TestCtx {
  const outbox = openOutbox({ path: join(stateDir, 'outbox.db'), synchronous: 'normal' });
  const committed: Signal[] = [];
  const failEmit = { on: false, calls: 0 };
  const ctx: DriverContext = {
    agentId: 'test-agent',
    plant: '1000',
    stateDir,
    log: testLogger(),
    async emit(signals) {
      failEmit.calls++;
      if (failEmit.on) {
        const { PlantBridgeError } = await import('../../../contracts/index.ts');
        throw new PlantBridgeError('OUTBOX_FULL', 'outbox full: test');
      }
      await outbox.append(signals);
      committed.push(...signals);
    },
    deadLetter() {},
  };
  return {
    ctx,
    outbox,
    stateDir,
    committed,
    failEmit,
    close() {
      outbox.close();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** A driver config through the real schema (defaults applied), insecure allowed unless given. */
export function opcuaConfig(overrides: Record<string, unknown>): OpcuaConfig {
  return opcuaConfigSchema.parse({
    type: 'opcua',
    name: 'line1-plc',
    securityMode: 'None',
    securityPolicy: 'None',
    allowInsecure: true,
    publishingInterval: 100,
    reconnectMaxDelay: 500,
    ...overrides,
  }) as OpcuaConfig;
}

export async function waitFor(what: string, cond: () => boolean, timeoutMs = 20_000, stepMs = 25): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
