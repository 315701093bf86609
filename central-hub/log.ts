import { pino, type DestinationStream, type Logger } from 'pino';

export const HUB_REDACT_PATHS = [
  'token',
  'password',
  'secret',
  'authorization',
  '*.token',
  '*.password',
  '*.secret',
  '*.authorization',
  'req.headers.authorization',
  'headers.authorization',
];

export function createHubLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    { level, base: { component: 'hub' }, redact: { paths: HUB_REDACT_PATHS, censor: '[secret]' }, timestamp: pino.stdTimeFunctions.isoTime },
    destination,
  );
}
