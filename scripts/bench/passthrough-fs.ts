/**
 * A bare fuse-native passthrough of a directory: the baseline bench:fs measures the Tempest mount
 * against (what FUSE plus a Node daemon cost, with no store behind it). Every operation is the
 * matching node:fs call on the source directory; files are real file descriptors, read and
 * written at the kernel's position (fs.read / fs.write on the fd), fsync is fsync of that fd.
 * Nothing is cached or buffered here.
 *
 *   node dist/scripts/bench/passthrough-fs.js <source-dir> <mountpoint>
 *
 * Runs in the foreground. Prints `mounted <mountpoint>` on stdout once the kernel has sent INIT;
 * on SIGTERM, SIGINT or SIGHUP unmounts and exits 0 (exit 1 if the unmount fails or takes over
 * 10 s; then `fusermount -uz` is tried). Errors go to stderr.
 *
 * Mount options are the ones the Tempest mount uses for throughput, so the comparison is fair:
 * an explicit per-operation timeout (config/local/node0.ini [FUSE] timeout_ms, 30 s; fuse-native's
 * 15 s default would turn a slow fsync into ETIMEDOUT), max_read=131072, and big_writes with
 * max_write=131072, max_readahead=1048576 (see BigWritesFuse); fs/mount.ts is the reference.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import Fuse, { type Operations, type Stat } from 'fuse-native';

/** The FUSE request size both ways, bytes (what Tempest mounts with). */
const FUSE_IO_SIZE = 131072;
/** Per-operation reply deadline, ms: config/local/node0.ini [FUSE] timeout_ms. */
const FUSE_TIMEOUT_MS = 30_000;

/** Kernel read-ahead the Tempest mount asks for, bytes (fs/mount.ts READ_AHEAD_BYTES). */
const READ_AHEAD_BYTES = 1_048_576;

/**
 * fuse-native has no option for big_writes (nor max_write, max_readahead): without big_writes
 * libfuse 2 hands the file system writes of at most 4 KiB (one page), whatever the application
 * writes, and a daemon that answers each request through the Node event loop is then bound by
 * requests per second, not by bytes. `big_writes,max_write=131072` lets the kernel send writes of
 * up to 128 KiB, the size reads come in (max_read); `max_readahead=1048576` lets it keep up to
 * 1 MiB of sequential reads in flight. The Tempest mount (fs/mount.ts) appends exactly these, the
 * same way, so the two differ only in what answers the requests.
 */
class BigWritesFuse extends Fuse {
  override _fuseOptions(): string {
    const base = super._fuseOptions();
    const extra = `big_writes,max_write=${FUSE_IO_SIZE},max_readahead=${READ_AHEAD_BYTES}`;
    return base === '' ? `-o${extra}` : `${base},${extra}`;
  }
}

const errno = osConstants.errno as Record<string, number>;

/** A node:fs error as the negative errno fuse-native expects. */
function code(err: NodeJS.ErrnoException): number {
  if (typeof err.errno === 'number' && err.errno !== 0) return err.errno < 0 ? err.errno : -err.errno;
  const n = err.code !== undefined ? errno[err.code] : undefined;
  return n !== undefined ? -n : -errno.EIO!;
}

/**
 * An error answer for callbacks that otherwise carry a result (a stat, an fd, a listing):
 * fuse-native fills in its defaults for what is left out; fs/fuse-native.d.ts types the result
 * as always given.
 */
const fail = (cb: unknown, err: NodeJS.ErrnoException) => (cb as (c: number) => void)(code(err));

/** Results for operations that answer only a status. */
const status = (cb: (c: number) => void) => (err: NodeJS.ErrnoException | null) => cb(err ? code(err) : 0);

function passthroughOps(source: string): Operations {
  const real = (p: string) => path.join(source, p);
  const PERM = 0o7777;
  return {
    getattr(p, cb) {
      fs.lstat(real(p), (err, st) => (err ? fail(cb, err) : cb(0, st as unknown as Stat)));
    },
    readdir(p, cb) {
      fs.readdir(real(p), (err, names) => (err ? fail(cb, err) : cb(0, ['.', '..', ...names])));
    },
    open(p, flags, cb) {
      // The kernel's open flags as they are (O_CREAT / O_EXCL are handled before open).
      fs.open(real(p), flags, (err, fd) => (err ? fail(cb, err) : cb(0, fd)));
    },
    create(p, mode, cb) {
      // fuse-native passes create only the mode, not the open flags; the kernel sends create
      // after a failed lookup, so the file is new: read-write suits any access mode asked for.
      fs.open(real(p), fs.constants.O_CREAT | fs.constants.O_RDWR, mode & PERM, (err, fd) => (err ? fail(cb, err) : cb(0, fd)));
    },
    read(_p, fd, buf, len, pos, cb) {
      // A short answer is end of file to FUSE: keep reading until len or a real end of file.
      let done = 0;
      const more = () =>
        fs.read(fd, buf, done, len - done, pos + done, (err, n) => {
          if (err) return cb(code(err));
          done += n;
          if (n === 0 || done === len) return cb(done);
          more();
        });
      more();
    },
    write(_p, fd, buf, len, pos, cb) {
      let done = 0;
      const more = () =>
        fs.write(fd, buf, done, len - done, pos + done, (err, n) => {
          if (err) return cb(code(err));
          done += n;
          if (done === len) return cb(done);
          more();
        });
      more();
    },
    release(_p, fd, cb) {
      fs.close(fd, status(cb));
    },
    flush(_p, _fd, cb) {
      // Called on every close(2) of the file; nothing is buffered here, the data is in the fd.
      cb(0);
    },
    fsync(_p, datasync, fd, cb) {
      if (datasync) fs.fdatasync(fd, status(cb));
      else fs.fsync(fd, status(cb));
    },
    truncate(p, size, cb) {
      fs.truncate(real(p), size, status(cb));
    },
    ftruncate(_p, fd, size, cb) {
      fs.ftruncate(fd, size, status(cb));
    },
    unlink(p, cb) {
      fs.unlink(real(p), status(cb));
    },
    mkdir(p, mode, cb) {
      fs.mkdir(real(p), { mode: mode & PERM }, status(cb));
    },
    rmdir(p, cb) {
      fs.rmdir(real(p), status(cb));
    },
    rename(src, dest, cb) {
      fs.rename(real(src), real(dest), status(cb));
    },
    utimens(p, atime, mtime, cb) {
      // fuse-native 2.2.6 hands both arguments the access time (a bug in its native layer), in
      // ms; passed on as they come.
      fs.utimes(real(p), atime / 1000, mtime / 1000, status(cb));
    },
    chmod(p, mode, cb) {
      fs.chmod(real(p), mode & PERM, status(cb));
    },
    statfs(_p, cb) {
      fs.statfs(source, (err, s) => {
        if (err) return fail(cb, err);
        // fuse-native carries these as 32-bit numbers: scale the block size up until they fit.
        let bsize = s.bsize;
        let scale = 1;
        while (Math.max(s.blocks, s.bfree, s.bavail) / scale > 0xffffffff) {
          scale *= 2;
          bsize *= 2;
        }
        const clamp = (x: number) => Math.min(x, 0xffffffff);
        cb(0, {
          bsize,
          frsize: bsize,
          blocks: Math.floor(s.blocks / scale),
          bfree: Math.floor(s.bfree / scale),
          bavail: Math.floor(s.bavail / scale),
          files: clamp(s.files),
          ffree: clamp(s.ffree),
          favail: clamp(s.ffree),
          fsid: 0,
          flag: 0,
          namemax: 255,
        });
      });
    },
  };
}

function main(): void {
  const [sourceArg, mntArg] = process.argv.slice(2);
  if (!sourceArg || !mntArg) {
    process.stderr.write('usage: node dist/scripts/bench/passthrough-fs.js <source-dir> <mountpoint>\n');
    process.exit(2);
  }
  const source = path.resolve(sourceArg);
  const mnt = path.resolve(mntArg);
  if (!fs.statSync(source).isDirectory()) throw new Error(`${source} is not a directory`);

  const fuse = new BigWritesFuse(mnt, passthroughOps(source), { timeout: FUSE_TIMEOUT_MS, maxRead: FUSE_IO_SIZE });
  let mounted = false;
  let stopping = false;

  const lastResort = () => {
    try {
      execFileSync('fusermount', ['-uz', mnt], { stdio: 'ignore', timeout: 5_000 });
    } catch {
      // nothing mounted (any more), or fusermount failed too
    }
  };
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    if (!mounted) {
      // The mount may be half made (mounted, INIT not yet answered): take it down if so.
      lastResort();
      process.exit(0);
    }
    const timer = setTimeout(() => {
      process.stderr.write(`passthrough-fs: unmount of ${mnt} did not finish within 10 s after ${signal}; fusermount -uz\n`);
      lastResort();
      process.exit(1);
    }, 10_000);
    fuse.unmount((err) => {
      clearTimeout(timer);
      if (err) {
        process.stderr.write(`passthrough-fs: unmount of ${mnt} failed: ${err.message}; fusermount -uz\n`);
        lastResort();
        process.exit(1);
      }
      process.exit(0);
    });
  };
  for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(s, () => stop(s));

  fuse.mount((err) => {
    if (err) {
      process.stderr.write(`passthrough-fs: mounting ${source} at ${mnt} failed: ${err.message}\n`);
      process.exit(1);
    }
    mounted = true;
    process.stdout.write(`mounted ${mnt}\n`);
  });
}

main();
