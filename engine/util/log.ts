/**
 * Structured logging: one pino root per process, one child logger per layer.
 * Logs go to stderr so that command output on stdout stays clean; pretty in a terminal.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

function makeRoot(): Logger {
  const level = process.env.TEMPEST_LOG_LEVEL ?? 'info';
  if (process.stderr.isTTY && process.env.TEMPEST_LOG_FORMAT !== 'json') {
    return pino({
      level,
      transport: { target: 'pino-pretty', options: { destination: 2, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } },
    });
  }
  // Synchronous: logs are rare (never per message), and nothing is lost when the process exits.
  return pino({ level }, pino.destination({ dest: 2, sync: true }));
}

let root: Logger | undefined;

export function rootLogger(): Logger {
  root ??= makeRoot();
  return root;
}

/** The logger of one layer (`transport`, `sst`, `config`, ...), with optional extra bindings. */
export function layerLogger(layer: string, bindings: Record<string, unknown> = {}): Logger {
  return rootLogger().child({ layer, ...bindings });
}
