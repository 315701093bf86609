import { pino, type DestinationStream, type Logger } from 'pino';

/**
 * The one logger factory of the agent and the hub (DESIGN.md §9: pino JSON, one child logger per
 * component). Secrets are `Secret` objects that print as `[secret]`; the redaction list below is the
 * second line of defence, for a value logged by mistake under a secret's usual name. One list for both
 * sides, so they cannot drift apart again. Creating the logger is the only thing this module does.
 */

/** Key names whose values are never printed, at the top of a log object and one level down. */
export const SECRET_KEYS = ['token', 'password', 'secret', 'authorization', 'credential', 'clientSecret', 'apiKey', 'cookie', 'passphrase', 'privateKey'] as const;

/** pino redact paths: every secret key name at the top and one level down, plus the places HTTP headers and configs put them deeper. */
export const REDACT_PATHS: readonly string[] = [
  ...SECRET_KEYS.flatMap((k) => [k, `*.${k}`]),
  'req.headers.authorization',
  'req.headers.cookie',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["set-cookie"]',
  'res.headers["set-cookie"]',
  'config.hub.token',
  'config.erp.auth.password',
  'config.erp.auth.clientSecret',
];

export const REDACTED = '[secret]';

export interface LoggerOptions {
  level: string;
  /** bound to every line: `{ agentId }` on the agent, `{ component: 'hub' }` on the hub */
  base: Record<string, unknown>;
  destination?: DestinationStream;
}

export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    { level: opts.level, base: opts.base, redact: { paths: [...REDACT_PATHS], censor: REDACTED }, timestamp: pino.stdTimeFunctions.isoTime },
    opts.destination,
  );
}
