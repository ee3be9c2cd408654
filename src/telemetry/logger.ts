/**
 * The process logger: pino, JSON lines on stdout, secrets redacted wherever they could appear.
 */
import { pino, type Logger } from 'pino';
import type { LogLevel } from '../config/settings.ts';

export type { Logger } from 'pino';

/**
 * Paths pino censors: credentials may sit in request headers, in Secret data read for a sink, or in
 * an error's context. Nothing in the operator logs them on purpose; this catches accidents.
 */
export const REDACTED_PATHS = [
  'token',
  '*.token',
  'password',
  '*.password',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'data',
  '*.data',
  'stringData',
  '*.stringData',
];

/** Creates the root logger; modules take child loggers with their own bindings. */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  const options = {
    level,
    base: { name: 'kube-audit-operator' },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
