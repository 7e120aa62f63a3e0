/**
 * Small promise tools of the persistence layer: a deferred that settles once, and a FIFO mutex
 * with a bounded queue for the log's background work (indexing, retention, truncation).
 */
import { TempestError } from '../util/errors.js';

export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(v: T): void;
  reject(err: unknown): void;
  readonly settled: boolean;
}

export function deferred<T>(): Deferred<T> {
  let res!: (v: T) => void;
  let rej!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => {
    res = a;
    rej = b;
  });
  const d = {
    promise,
    settled: false,
    resolve(v: T) {
      if (d.settled) return;
      d.settled = true;
      res(v);
    },
    reject(e: unknown) {
      if (d.settled) return;
      d.settled = true;
      rej(e);
    },
  };
  return d;
}

export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;

  constructor(private readonly max_waiting = 1024) {}

  /** Runs `fn` after every earlier run() has finished. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.waiting >= this.max_waiting) {
      return Promise.reject(new TempestError('ERR_PERSIST_BACKPRESSURE', `${this.waiting} log maintenance operations already wait`));
    }
    this.waiting++;
    const result = this.tail.then(() => {
      this.waiting--;
      return fn();
    });
    this.tail = result.catch(() => {});
    return result;
  }
}

/** Rejects with ERR_PERSIST_TIMEOUT unless `p` settles within `timeout_ms`. */
export function withTimeout<T>(p: Promise<T>, timeout_ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new TempestError('ERR_PERSIST_TIMEOUT', `${what} did not finish within ${timeout_ms} ms`)), timeout_ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
