import type { AgentConfig } from './config/schema.ts';
import { buildAgent } from './build-agent.ts';
import { createLogger } from '../contracts/log.ts';

/**
 * Runs the agent until SIGINT / SIGTERM, then stops it gracefully: drivers drain, the in-flight commit
 * finishes, the forwarder settles what it has in flight, and the database is closed.
 */
export async function runAgent(config: AgentConfig, configVersion: string, stopSignal: Promise<string>, nativeBinding?: string): Promise<number> {
  const log = createLogger({ level: config.log.level, base: { agentId: config.agent.id } });
  // node-opcua's own messages would go to stdout between the JSON lines: into the log instead
  if (config.drivers.some((d) => d.type === 'opcua')) (await import('./drivers/opcua/library-log.ts')).routeNodeOpcuaLog(log.child({ component: 'node-opcua' }));
  const agent = buildAgent({ config, configVersion, log, ...(nativeBinding ? { nativeBinding } : {}) });
  const done = stopSignal.then((sig) => log.info({ signal: sig }, 'Stopping'));
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'Uncaught exception: stopping');
    void agent.stop().finally(() => process.exit(2));
  });
  try {
    await agent.start();
  } catch (err) {
    log.fatal({ err }, 'Agent failed to start');
    await agent.stop().catch(() => {});
    return 2;
  }
  await done;
  await agent.stop();
  log.info('Stopped');
  return 0;
}
