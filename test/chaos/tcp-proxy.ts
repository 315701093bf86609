import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy between two parts (agent -> hub, hub -> ERP) that the scenarios turn into a bad network:
 * - `pass`: forwards both ways, optionally delaying every chunk by `delayMs` (latency; this kernel has no
 *   sch_netem);
 * - `blackhole`: accepts and holds connections, forwarding nothing (a partition: the client times out);
 * - `refuse`: closes new connections at once (a host that is down).
 * Switching modes cuts the connections that are open, as a partition does to established flows.
 */

export type ProxyMode = 'pass' | 'blackhole' | 'refuse';

export interface Proxy {
  port: number;
  url: string;
  mode: ProxyMode;
  setMode(mode: ProxyMode): void;
  setDelay(ms: number): void;
  /** connections accepted so far */
  accepted(): number;
  close(): Promise<void>;
}

export async function startProxy(targetPort: number, opts: { delayMs?: number; host?: string } = {}): Promise<Proxy> {
  const host = opts.host ?? '127.0.0.1';
  let mode: ProxyMode = 'pass';
  let delayMs = opts.delayMs ?? 0;
  let accepted = 0;
  const open = new Set<Socket>();

  const relay = (from: Socket, to: Socket) => {
    from.on('data', (chunk) => {
      if (delayMs <= 0) {
        if (!to.destroyed) to.write(chunk);
        return;
      }
      // a fixed delay per chunk keeps the stream's order (timers of equal delay fire in order)
      from.pause();
      setTimeout(() => {
        if (!to.destroyed) to.write(chunk);
        from.resume();
      }, delayMs);
    });
  };

  const server: Server = createServer((client) => {
    accepted++;
    open.add(client);
    client.on('close', () => open.delete(client));
    client.on('error', () => {});
    if (mode === 'refuse') return client.destroy();
    if (mode === 'blackhole') return; // held open, nothing forwarded, until the mode changes
    const upstream = connect({ host, port: targetPort });
    open.add(upstream);
    upstream.on('close', () => {
      open.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    relay(client, upstream);
    relay(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    url: `http://${host}:${port}`,
    get mode() {
      return mode;
    },
    setMode(m) {
      if (m === mode) return;
      mode = m;
      for (const s of open) s.destroy();
      open.clear();
    },
    setDelay(ms) {
      delayMs = ms;
    },
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
