import { pino, type Logger } from 'pino';

/** A silent logger for tests, or a real one with PLANTBRIDGE_TEST_LOG=debug. */
export function testLogger(): Logger {
  return pino({ level: process.env.PLANTBRIDGE_TEST_LOG ?? 'silent' });
}
