/**
 * One bash process fed command lines one at a time, as a user pastes them into a terminal: shell
 * variables set by one line are seen by the next. Each line's output and exit status are framed
 * by a marker line printed after it.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface LineResult {
  output: string;
  status: number;
}

export class ShellSession {
  private readonly child: ChildProcess;
  private buffer = '';
  private seq = 0;

  constructor(cwd: string, env: NodeJS.ProcessEnv = {}) {
    this.child = spawn('bash', ['--norc', '--noprofile'], { cwd, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    // stderr is folded into the output stream so a failing line shows its message.
    const onData = (s: string): void => {
      this.buffer += s;
    };
    this.child.stdout!.setEncoding('utf8').on('data', onData);
    this.child.stderr!.setEncoding('utf8').on('data', onData);
  }

  /** Runs one line; rejects when it does not finish within timeout_ms (or bash died). */
  async run(line: string, timeout_ms: number): Promise<LineResult> {
    this.seq += 1;
    const marker = `__tour_line_${this.seq}_done__`;
    const start = this.buffer.length;
    this.child.stdin!.write(`${line}\nprintf '\\n${marker} %d\\n' "$?"\n`);
    const deadline = Date.now() + timeout_ms;
    const pattern = new RegExp(`\\n${marker} (\\d+)\\n`);
    for (;;) {
      const m = pattern.exec(this.buffer.slice(start));
      if (m !== null) {
        const output = this.buffer.slice(start, start + m.index);
        return { output, status: Number(m[1]) };
      }
      if (this.child.exitCode !== null) throw new Error(`bash exited (code ${this.child.exitCode}) during: ${line}\n${this.buffer.slice(start)}`);
      if (Date.now() > deadline) throw new Error(`not done within ${timeout_ms} ms: ${line}\noutput so far:\n${this.buffer.slice(start)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  close(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

/** A command of a README block with the output the README promises for it (`# → text`). */
export interface TourLine {
  command: string;
  expect: string | null;
}

/**
 * The ```sh <tag> blocks of a README, in order (`tour` by default): each non-empty, non-comment
 * line is a command; a trailing `# → text` says what its output contains.
 */
export function tourBlocks(markdown: string, tag = 'tour'): TourLine[][] {
  if (!/^[a-z]+$/.test(tag)) throw new Error(`tourBlocks: bad tag ${JSON.stringify(tag)}`);
  const blocks: TourLine[][] = [];
  const fence = new RegExp(`^\`\`\`sh ${tag}\\n([\\s\\S]*?)^\`\`\`$`, 'gm');
  for (let m = fence.exec(markdown); m !== null; m = fence.exec(markdown)) {
    const lines: TourLine[] = [];
    for (const raw of m[1]!.split('\n')) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      const arrow = line.indexOf('# →');
      if (arrow < 0) lines.push({ command: line, expect: null });
      else lines.push({ command: line.slice(0, arrow).trim(), expect: line.slice(arrow + 3).trim() });
    }
    blocks.push(lines);
  }
  return blocks;
}
