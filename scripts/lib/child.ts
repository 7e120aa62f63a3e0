/**
 * Child processes driven over an IPC channel, for multi-process tests and benchmarks: fork,
 * bounded waits for messages, kill by PID, and loopback ports that are free now.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

/** Ports the OS says are free on 127.0.0.1 now (held open together so they are distinct). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export interface Msg {
  type: string;
  [k: string]: unknown;
}

export class Child {
  readonly inbox: Msg[] = [];
  private waiters: { pred: (m: Msg) => boolean; resolve: (m: Msg) => void }[] = [];
  stderr = '';
  exited: { code: number | null; signal: NodeJS.Signals | null } | null = null;

  constructor(readonly child: ChildProcess) {
    child.on('message', (m: Msg) => {
      this.inbox.push(m);
      for (const w of [...this.waiters]) {
        if (w.pred(m)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-20_000);
    });
    child.on('exit', (code, signal) => {
      this.exited = { code, signal };
    });
  }

  /** Forks `script` with `args` as one JSON argument; stdout ignored, stderr kept (tail). */
  static start(script: string, args: object, env: Record<string, string> = {}): Child {
    const child = fork(script, [JSON.stringify(args)], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: { ...process.env, TEMPEST_LOG_FORMAT: 'json', ...env },
    });
    return new Child(child);
  }

  get pid(): number {
    return this.child.pid!;
  }

  send(m: object): void {
    this.child.send(m);
  }

  /** The first message (already received or future) matching `pred`, within timeout_ms. */
  waitFor(pred: (m: Msg) => boolean, timeout_ms: number, what = 'message'): Promise<Msg> {
    const have = this.inbox.find(pred);
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const entry = { pred, resolve: (m: Msg) => { clearTimeout(timer); resolve(m); } };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(entry), 1);
        reject(new Error(`pid ${this.pid}: no ${what} within ${timeout_ms} ms; exited=${JSON.stringify(this.exited)}; stderr tail:\n${this.stderr.slice(-3000)}`));
      }, timeout_ms);
      this.waiters.push(entry);
    });
  }

  waitType(type: string, timeout_ms: number): Promise<Msg> {
    return this.waitFor((m) => m.type === type, timeout_ms, `"${type}" message`);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.exited === null) {
      try {
        process.kill(this.pid, signal);
      } catch {
        // already gone
      }
    }
  }

  /** Waits (bounded) for the process to exit. */
  waitExit(timeout_ms: number): Promise<void> {
    if (this.exited) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`pid ${this.pid} did not exit within ${timeout_ms} ms`)), timeout_ms);
      this.child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/** Kills every process (SIGKILL) and waits for them, for teardown. */
export async function killAll(procs: Child[]): Promise<void> {
  for (const p of procs) p.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.waitExit(5_000).catch(() => {})));
}
