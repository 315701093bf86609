import { pino, type DestinationStream, type Logger } from 'pino';

/** Paths pino must never print, whatever a component logs by mistake. */
export const REDACT_PATHS = [
  'token',
  'password',
  'secret',
  'authorization',
  '*.token',
  '*.password',
  '*.secret',
  '*.authorization',
  '*.headers.authorization',
  'config.hub.token',
  'req.headers.authorization',
];

export function createLogger(opts: { level: string; agentId: string; destination?: DestinationStream }): Logger {
  return pino(
    {
      level: opts.level,
      base: { agentId: opts.agentId },
      redact: { paths: REDACT_PATHS, censor: '[secret]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.destination,
  );
}
