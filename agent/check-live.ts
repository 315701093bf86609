import type { AgentConfig } from './config/schema.ts';

/**
 * `check-config --live`: contract testing before a rollout. Each driver connects once and checks what
 * it will rely on (OPC UA: the nodes exist with readable values; MQTT / Sparkplug: the broker accepts
 * the subscriptions and what the filters match maps cleanly), then the hub is asked, read-only, whether it
 * accepts the agent's credential over the configured TLS trust. Nothing is written anywhere.
 */
export async function checkLiveAll(config: AgentConfig, opts: { durationMs?: number; checkHub?: boolean } = {}): Promise<{ ok: boolean; lines: string[] }> {
  const lines: string[] = [];
  let ok = true;
  for (const d of config.drivers) {
    try {
      switch (d.type) {
        case 'opcua': {
          const { checkLive } = await import('./drivers/opcua/check-live.ts');
          const r = await checkLive(d, config.agent.stateDir);
          ok &&= r.ok;
          lines.push(`${d.name} (opcua ${d.endpoint}): ${r.ok ? 'ok' : 'FAILED'}`, ...r.lines.map((l) => `  ${l}`));
          break;
        }
        case 'mqtt': {
          const { checkLive } = await import('./drivers/mqtt/check-live.ts');
          const r = await checkLive(d, { durationMs: opts.durationMs ?? 3000 });
          ok &&= r.ok;
          lines.push(`${d.name} (mqtt ${r.url}): ${r.ok ? 'ok' : 'FAILED'}${r.error ? ` — ${r.error}` : ''}`);
          for (const f of r.filters) {
            lines.push(
              `  ${f.filter}: ${f.granted ? 'subscribed' : 'NOT GRANTED'}, ${f.matched} message(s) in ${Math.round(r.durationMs / 1000)} s (${f.valid} valid, ${f.invalid} would be dead-lettered, ${f.retained} retained)` +
                (f.topics.length ? `; topics: ${f.topics.join(', ')}` : '') +
                (f.firstProblem ? `; first problem: ${f.firstProblem}` : ''),
            );
          }
          break;
        }
        case 'sparkplug': {
          const { checkLive } = await import('./drivers/sparkplug/check-live.ts');
          const r = await checkLive(d, { durationMs: opts.durationMs ?? 3000 });
          ok &&= r.ok;
          lines.push(`${d.name} (sparkplug ${r.url}): ${r.ok ? 'ok' : 'FAILED'}${r.error ? ` — ${r.error}` : ''}`);
          for (const g of r.filters) {
            const types = Object.entries(g.byType).map(([k, n]) => `${k} ${n}`).join(', ');
            lines.push(
              `  ${g.filter}: ${g.granted ? 'subscribed' : 'NOT GRANTED'}, ${g.matched} message(s)${types ? ` (${types})` : ''}` +
                (g.nodes.length ? `; nodes: ${g.nodes.join(', ')}` : '') +
                (g.invalid ? `; ${g.invalid} undecodable` : '') +
                (g.firstProblem ? `; first problem: ${g.firstProblem}` : ''),
            );
          }
          break;
        }
        case 'simulator':
          lines.push(`${d.name} (simulator): nothing to connect to`);
          break;
      }
    } catch (err) {
      ok = false;
      lines.push(`${d.name} (${d.type}): FAILED — ${(err as Error).message}`);
    }
  }
  if (opts.checkHub !== false) {
    // the forwarder's own client: same TLS trust (CA or pinned fingerprint) and credential as in operation
    const { Forwarder } = await import('./forwarder/forwarder.ts');
    const { forwarderOptionsFromConfig } = await import('./forwarder/options.ts');
    const { pino } = await import('pino');
    const fw = new Forwarder({ ...forwarderOptionsFromConfig(config), outbox: undefined as never, log: pino({ level: 'silent' }) });
    try {
      const r = await fw.checkHub();
      ok &&= r.ok;
      lines.push(`hub ${config.hub.url}: ${r.ok ? 'ok' : 'FAILED'} — ${r.message}`);
    } finally {
      await fw.stop();
    }
  }
  return { ok, lines };
}
