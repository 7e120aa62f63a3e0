/**
 * The few file operations the log needs, on raw file descriptors through the callback API (the
 * cheapest way from JS to the libuv thread pool: no FileHandle objects, one request per call).
 * Partial reads and writes are completed here, so callers see all-or-error.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TempestError } from '../util/errors.js';

export function open(file: string, flags: string): Promise<number> {
  return new Promise((resolve, reject) => fs.open(file, flags, 0o644, (err, fd) => (err ? reject(err) : resolve(fd))));
}

export function close(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}

/** Writes all `length` bytes of `buf` from `offset` at file position `position`. */
export function pwriteAll(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (off: number, len: number, pos: number): void => {
      fs.write(fd, buf, off, len, pos, (err, written) => {
        if (err) return reject(err);
        if (written === len) return resolve();
        if (written <= 0) return reject(Object.assign(new Error('write wrote nothing'), { code: 'EIO' }));
        step(off + written, len - written, pos + written);
      });
    };
    step(offset, length, position);
  });
}

/** Reads up to `length` bytes at `position`; fewer only at the end of the file. */
export function pread(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let total = 0;
    const step = (): void => {
      fs.read(fd, buf, offset + total, length - total, position + total, (err, n) => {
        if (err) return reject(err);
        total += n;
        if (n === 0 || total === length) return resolve(total);
        step();
      });
    };
    step();
  });
}

export function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

export function fsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
}

export function ftruncate(fd: number, length: number): Promise<void> {
  return new Promise((resolve, reject) => fs.ftruncate(fd, length, (err) => (err ? reject(err) : resolve())));
}

export function fstatSize(fd: number): Promise<number> {
  return new Promise((resolve, reject) => fs.fstat(fd, (err, st) => (err ? reject(err) : resolve(st.size))));
}

/** Makes creations, renames and unlinks in `dir` durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fd = await open(dir, 'r');
  try {
    await fsync(fd);
  } finally {
    await close(fd);
  }
}

/** Writes `data` to `file` atomically: temp file, fsync, rename, fsync of the directory. */
export async function writeFileAtomic(file: string, data: Buffer): Promise<void> {
  const tmp = `${file}.tmp`;
  const fd = await open(tmp, 'w');
  try {
    await pwriteAll(fd, data, 0, data.length, 0);
    await fsync(fd);
  } finally {
    await close(fd);
  }
  await fs.promises.rename(tmp, file);
  await fsyncDir(path.dirname(file));
}

export function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** ERR_PERSIST_IO for a failed file operation: `what` failed, and why. */
export function ioError(what: string, err: unknown): TempestError {
  return new TempestError('ERR_PERSIST_IO', `${what}: ${(err as Error).message ?? String(err)}`, { cause: err });
}
