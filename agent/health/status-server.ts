import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';

export interface StatusSource {
  metrics(): Promise<string>;
  metricsContentType: string;
  health(): { ok: boolean };
}

/**
 * The agent's local status port: GET /metrics (Prometheus text) and GET /healthz (JSON; 200 when every
 * driver is up and the outbox accepts data, else 503 with the reasons). Bound to loopback by default.
 */
export function startStatusServer(src: StatusSource, host: string, port: number, log: Logger): Promise<Server> {
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    if (url === '/metrics') {
      src.metrics().then(
        (text) => res.writeHead(200, { 'content-type': src.metricsContentType }).end(text),
        (err) => {
          log.warn({ err }, 'metrics collection failed');
          res.writeHead(500).end();
        },
      );
      return;
    }
    if (url === '/healthz' || url === '/') {
      const h = src.health();
      res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(h, null, 2));
      return;
    }
    res.writeHead(404).end();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
