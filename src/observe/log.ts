import { pino, type Logger } from 'pino';
import type { LogLevel } from '../config/types.js';

export type { Logger };

/** JSON lines on stdout (or the given destination), ISO timestamps, no hostname noise. */
export function createLogger(level: LogLevel = 'info', destination?: NodeJS.WritableStream): Logger {
  const options = {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  return destination ? pino(options, destination) : pino(options);
}
