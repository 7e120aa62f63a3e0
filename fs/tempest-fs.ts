/**
 * The file-system operations over a StoreClient (DESIGN §10), as fuse-native calls them. Files and
 * blob keys are one namespace: `/a/b` is key `a/b`. A directory is a key with a directory mode
 * (mkdir) or implied by keys below it. Symlinks are keys whose content is the target. History is
 * read-only: `/.snapshot/<time|name>/...` and `path@<time>` (fs-paths.ts).
 *
 * Attributes: a directory listing is one store listing per 1,000 entries (with a delimiter, so one
 * level only), and the attributes it returns answer the kernel's lookups of those entries for
 * LIVE_ATTR_TTL_MS, so `ls -l` of 10,000 files is 10 store calls, not 10,000. A change feed (a
 * store watch of every key, change-feed.ts) drops a cached attribute as soon as any writer makes a
 * new version of it, so the long TTL is only a backstop. History never changes, so its attributes
 * are kept longer (bounded by count).
 */
import { constants as fsConstants } from 'node:fs';
import type { Operations, Stat, StatFs } from 'fuse-native';
import { statfs as statfsAsync } from 'node:fs/promises';
import { isStoreError, StoreError, STORE_ERRORS } from '../engine/store/errors.js';
import { hlcToMs, parseTime } from '../engine/store/time.js';
import type { BlobSummary, BlobVersion, FileMeta, StoreClient, TimePoint } from '../engine/store/types.js';
import type { Logger } from '../engine/util/log.js';
import { kindOf, type Owner, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, statOfImpliedDir, statOfVersion, withoutWrite, BLOCK_SIZE_BYTES } from './attrs.js';
import { ChangeFeed } from './change-feed.js';
import { ChunkPool } from './chunk-pool.js';
import { ERRNO, errnoOf, fsError } from './errno.js';
import { dirPrefix, type MountPath, parseMountPath, SNAPSHOT_DIR, splitAtTime, splitKey } from './fs-paths.js';
import type { FsMetrics } from './metrics.js';
import { OpenFile, type OpenFileDeps } from './open-file.js';
import { ReadHandle } from './read-handle.js';

/** How long a listed or looked-up attribute of the live tree answers lookups (the change feed drops
 * it sooner when anyone writes the key; this bounds staleness should the feed lag). */
const LIVE_ATTR_TTL_MS = 30_000;
/** Attributes kept at most (history and live together); the oldest go first. */
const MAX_CACHED_ATTRS = 200_000;
/** Named snapshots' moments are looked up again after this long (one may be removed and made again). */
const NAMED_SNAPSHOT_TTL_MS = 1_000;
/** Open handles at most; more get EMFILE. */
const MAX_HANDLES = 65_536;
/** Pages of 1,000 entries one readdir reads at most (a million entries). */
const MAX_LIST_PAGES = 1_000;
const LIST_PAGE = 1_000;
/** The content type of files made in the mount. */
const FILE_CONTENT_TYPE = 'application/octet-stream';
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

const O_ACCMODE = 3;
const UTIME_OMIT = 0;
const UTIME_NOW = 1;
const O_TRUNC = fsConstants.O_TRUNC;

export interface TempestFsOptions {
  store: StoreClient;
  log: Logger;
  metrics: FsMetrics;
  /** Largest file ([HTTP] max_blob_size): EFBIG past it. */
  max_file_size_bytes: number;
  /** Chunks of one file in flight at once ([STORE] upload_window). */
  upload_window: number;
  /** Where free space is read from for statfs (the member's data dir; else the working dir). */
  statfs_path: string;
  /** [STORE] chunk_grace_ms: chunks of files open longer than a quarter of it are touched again. */
  chunk_grace_ms: number;
}

type Handle = { kind: 'write'; file: OpenFile; writable: boolean } | { kind: 'read'; reader: ReadHandle };

interface CachedAttr {
  stat: Stat;
  until_ms: number;
}

export class TempestFs {
  private readonly store: StoreClient;
  private readonly log: Logger;
  private readonly metrics: FsMetrics;
  private readonly owner: Owner;
  private readonly files = new Map<string, OpenFile>();
  private readonly handles = new Map<number, Handle>();
  private nextFd = 1;
  private readonly attrs = new Map<string, CachedAttr>();
  private readonly named = new Map<string, { at: TimePoint | null; until_ms: number }>();
  private readonly fileDeps: OpenFileDeps;
  private readonly keepAliveTimer: NodeJS.Timeout;
  private readonly feed: ChangeFeed;

  constructor(private readonly opts: TempestFsOptions) {
    this.store = opts.store;
    this.log = opts.log;
    this.metrics = opts.metrics;
    this.owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    this.fileDeps = {
      store: opts.store,
      pool: new ChunkPool(opts.store.chunk_size_bytes, 4 * opts.upload_window),
      metrics: opts.metrics,
      upload_window: opts.upload_window,
      max_dirty_chunks: 16,
      max_size_bytes: opts.max_file_size_bytes,
    };
    const every_ms = Math.max(1_000, Math.floor(opts.chunk_grace_ms / 4));
    this.keepAliveTimer = setInterval(() => {
      for (const f of this.files.values()) void f.keepAlive(every_ms).catch((err: Error) => this.log.warn({ key: f.key, err: err.message }, 'could not keep the chunks of an open file from collection'));
    }, every_ms);
    this.keepAliveTimer.unref();
    this.feed = new ChangeFeed(opts.store, (key) => this.forget(key), opts.log);
  }

  // ---- caches ------------------------------------------------------------------------------------

  private cacheAttr(path: string, stat: Stat, ttl_ms: number): void {
    this.attrs.delete(path);
    this.attrs.set(path, { stat, until_ms: Date.now() + ttl_ms });
    while (this.attrs.size > MAX_CACHED_ATTRS) this.attrs.delete(this.attrs.keys().next().value!);
  }

  private cachedAttr(path: string): Stat | undefined {
    const c = this.attrs.get(path);
    if (c === undefined) return undefined;
    if (c.until_ms < Date.now()) {
      this.attrs.delete(path);
      return undefined;
    }
    return c.stat;
  }

  /** After a change at `key`: its attributes, and its ancestors' (a key can imply directories), are
   * looked up again. */
  private forget(key: string): void {
    this.attrs.delete(`/${key}`);
    for (let slash = key.lastIndexOf('/'); slash > 0; slash = key.lastIndexOf('/', slash - 1)) this.attrs.delete(`/${key.slice(0, slash)}`);
    this.attrs.delete('/');
  }

  // ---- resolution --------------------------------------------------------------------------------

  private async head(key: string, at: TimePoint | null): Promise<BlobVersion | null> {
    this.metrics.call('head');
    try {
      const v = await this.store.head(key, at === null ? { kind: 'current' } : { kind: 'at', at });
      return v.deleted ? null : v;
    } catch (err) {
      if (isStoreError(err, STORE_ERRORS.NOT_FOUND)) return null;
      throw err;
    }
  }

  private async anyUnder(key: string, at: TimePoint | null): Promise<BlobSummary | null> {
    this.metrics.call('list');
    const page = await this.store.list({ prefix: dirPrefix(key), limit: 1, ...(at === null ? {} : { at }) });
    return page.entries[0] ?? null;
  }

  /** The moment of `/.snapshot/<which>`: a named snapshot's, else a time; null when neither. */
  private async snapshotAt(which: string): Promise<TimePoint | null> {
    const hit = this.named.get(which);
    if (hit !== undefined && hit.until_ms >= Date.now()) return hit.at;
    let at: TimePoint | null = null;
    const v = validSnapshotName(which) ? await this.head(`${SNAPSHOT_DIR}/${which}`, null) : null;
    if (v !== null) at = { hlc: v.timestamp, ms: hlcToMs(v.timestamp) };
    else {
      try {
        at = parseTime(which);
      } catch (err) {
        if (!isStoreError(err)) throw err;
        return null; // neither a name nor a time (or a future one): no such directory
      }
    }
    this.named.set(which, { at, until_ms: Date.now() + (v !== null ? NAMED_SNAPSHOT_TTL_MS : 0) });
    if (this.named.size > 10_000) this.named.delete(this.named.keys().next().value!);
    return at;
  }

  /** Attributes of `key` in the live tree (at === null) or at a time; null when nothing is there. */
  private async statKey(key: string, at: TimePoint | null): Promise<{ stat: Stat; version: BlobVersion | null } | null> {
    if (at === null) {
      const f = this.files.get(key);
      if (f !== undefined) return { stat: this.statOfOpen(f), version: null };
    }
    this.metrics.call('head');
    const { version: v, child_timestamp } = await this.store.lookup(key, at);
    if (v !== null) return { stat: statOfVersion(v, this.owner), version: v };
    if (child_timestamp !== null) return { stat: statOfImpliedDir(hlcToMs(child_timestamp), this.owner), version: null };
    return null;
  }

  /** An open file's attributes: its last version's while unchanged (tar compares ctimes before and after reading). */
  private statOfOpen(f: OpenFile): Stat {
    const last = f.lastVersion;
    if (!f.changed && last !== null) return statOfVersion(last, this.owner);
    return statOfVersion({ key: f.key, version: 0n, timestamp: 0n, deleted: false, size: f.size, sha256: '', content_type: '', meta: f.meta }, this.owner);
  }

  private async getattrOf(path: string): Promise<Stat> {
    const p = parseMountPath(path);
    switch (p.kind) {
      case 'root':
        return statOfImpliedDir(Date.now(), this.owner);
      case 'snapshots':
        return withoutWrite(statOfImpliedDir(Date.now(), this.owner));
      case 'snapshot': {
        const cached = this.cachedAttr(path);
        if (cached !== undefined) return cached;
        const at = await this.snapshotAt(p.which);
        if (at === null) throw fsError(ERRNO.ENOENT, `no snapshot ${p.which}`);
        const s = p.key === '' ? statOfImpliedDir(at.ms, this.owner) : (await this.statKey(p.key, at))?.stat;
        if (s === undefined) throw fsError(ERRNO.ENOENT, `nothing at ${path}`);
        const ro = withoutWrite(s);
        // A time's snapshot never changes; a named one may be removed, so only briefly.
        const named = (this.named.get(p.which)?.until_ms ?? 0) > Date.now();
        this.cacheAttr(path, ro, named ? NAMED_SNAPSHOT_TTL_MS : 3_600_000);
        return ro;
      }
      case 'live': {
        const open = this.files.get(p.key);
        if (open !== undefined) return this.statOfOpen(open);
        const cached = this.cachedAttr(path);
        if (cached !== undefined) return cached;
        const found = await this.statKey(p.key, null);
        if (found !== null) {
          this.cacheAttr(path, found.stat, LIVE_ATTR_TTL_MS);
          return found.stat;
        }
        // `name@<time>`: the file as it was (only when no live key has that name).
        const past = await this.pastFile(p.key);
        if (past !== null) return withoutWrite(statOfVersion(past, this.owner));
        throw fsError(ERRNO.ENOENT, `no ${path}`);
      }
    }
  }

  /** For `a/b@<time>`: the version of `a/b` at that time; null when the name is not of that form. */
  private async pastFile(key: string): Promise<BlobVersion | null> {
    const split = splitAtTime(key);
    if (split === null) return null;
    let at: TimePoint;
    try {
      at = parseTime(split.time);
    } catch {
      return null;
    }
    const v = await this.head(split.key, at);
    return v !== null && kindOf(v) !== 'dir' ? v : null;
  }

  // ---- listing -----------------------------------------------------------------------------------

  /** Names in directory `key` (live or at a time), caching each entry's attributes. */
  private async list(dirKey: string, at: TimePoint | null, pathOf: (name: string) => string, ro: boolean): Promise<string[]> {
    const prefix = dirPrefix(dirKey);
    const names: string[] = [];
    const seen = new Set<string>();
    const ttl = at === null ? LIVE_ATTR_TTL_MS : 3_600_000;
    let after: string | undefined;
    for (let page = 0; page < MAX_LIST_PAGES; page++) {
      this.metrics.call('list');
      const r = await this.store.list({ prefix, limit: LIST_PAGE, delimiter: '/', ...(after !== undefined ? { after } : {}), ...(at === null ? {} : { at }) });
      for (const e of r.entries) {
        const name = e.key.slice(prefix.length);
        if (dirKey === '' && name === SNAPSHOT_DIR) continue;
        seen.add(name);
        names.push(name);
        const s = statOfVersion(e, this.owner);
        this.cacheAttr(pathOf(name), ro ? withoutWrite(s) : s, ttl);
      }
      for (const p of r.prefixes) {
        const name = p.slice(prefix.length, -1);
        if (dirKey === '' && name === SNAPSHOT_DIR) continue;
        if (seen.has(name)) continue; // a directory marker and keys under it: one entry
        seen.add(name);
        names.push(name);
        const s = statOfImpliedDir(at?.ms ?? Date.now(), this.owner);
        this.cacheAttr(pathOf(name), ro ? withoutWrite(s) : s, ttl);
      }
      if (r.next_after === null) break;
      after = r.next_after;
    }
    if (at === null) {
      // Files created here and not yet closed (not in the store yet).
      for (const f of this.files.values()) {
        const { parent, name } = splitKey(f.key);
        if (parent === dirKey && !seen.has(name)) {
          seen.add(name);
          names.push(name);
        }
      }
    }
    return names;
  }

  private async readdirOf(path: string): Promise<string[]> {
    const p = parseMountPath(path);
    switch (p.kind) {
      case 'root':
        return this.list('', null, (n) => `/${n}`, false);
      case 'snapshots': {
        // The named snapshots: keys .snapshot/<name>; their moment is their version's time.
        const names: string[] = [];
        let after: string | undefined;
        for (let page = 0; page < MAX_LIST_PAGES; page++) {
          this.metrics.call('list');
          const r = await this.store.list({ prefix: `${SNAPSHOT_DIR}/`, limit: LIST_PAGE, delimiter: '/', ...(after !== undefined ? { after } : {}) });
          for (const e of r.entries) {
            const name = e.key.slice(SNAPSHOT_DIR.length + 1);
            if (!validSnapshotName(name)) continue;
            names.push(name);
            const ms = hlcToMs(e.timestamp);
            this.named.set(name, { at: { hlc: e.timestamp, ms }, until_ms: Date.now() + NAMED_SNAPSHOT_TTL_MS });
            this.cacheAttr(`/${SNAPSHOT_DIR}/${name}`, withoutWrite(statOfImpliedDir(ms, this.owner)), NAMED_SNAPSHOT_TTL_MS);
          }
          if (r.next_after === null) break;
          after = r.next_after;
        }
        return names;
      }
      case 'snapshot': {
        const at = await this.snapshotAt(p.which);
        if (at === null) throw fsError(ERRNO.ENOENT, `no snapshot ${p.which}`);
        const base = `/${SNAPSHOT_DIR}/${p.which}`;
        if (p.key !== '') await this.requireDir(p.key, at);
        return this.list(p.key, at, (n) => (p.key === '' ? `${base}/${n}` : `${base}/${p.key}/${n}`), true);
      }
      case 'live': {
        await this.requireDir(p.key, null);
        return this.list(p.key, null, (n) => `/${p.key}/${n}`, false);
      }
    }
  }

  private async requireDir(key: string, at: TimePoint | null): Promise<void> {
    const s = await this.statKey(key, at);
    if (s === null) throw fsError(ERRNO.ENOENT, `no directory ${key}`);
    if ((s.stat.mode & S_IFMT) !== S_IFDIR) throw fsError(ERRNO.ENOTDIR, `${key} is not a directory`);
  }

  // ---- opening, reading, writing ---------------------------------------------------------------

  private addHandle(h: Handle): number {
    if (this.handles.size >= MAX_HANDLES) throw fsError(ERRNO.EMFILE, `more than ${MAX_HANDLES} open files`);
    while (this.handles.has(this.nextFd)) this.nextFd = (this.nextFd % 0x7fffffff) + 1;
    const fd = this.nextFd;
    this.nextFd = (this.nextFd % 0x7fffffff) + 1;
    this.handles.set(fd, h);
    return fd;
  }

  private handle(fd: number): Handle {
    const h = this.handles.get(fd);
    if (h === undefined) throw fsError(ERRNO.EBADF, `no open file ${fd}`);
    return h;
  }

  /** The open file of `key`, opened from its current version when no handle has it yet. */
  private async openFile(key: string, truncate: boolean): Promise<OpenFile> {
    let f = this.files.get(key);
    if (f === undefined) {
      const v = await this.head(key, null);
      if (v === null) throw fsError(ERRNO.ENOENT, `no file ${key}`);
      if (kindOf(v) === 'dir') throw fsError(ERRNO.EISDIR, `${key} is a directory`);
      const meta: FileMeta = v.meta ?? { mode: S_IFREG | 0o644, uid: this.owner.uid, gid: this.owner.gid, mtime_ms: hlcToMs(v.timestamp), ctime_ms: hlcToMs(v.timestamp) };
      f = this.files.get(key); // another thread may have opened it meanwhile
      if (f === undefined) {
        f = new OpenFile(this.fileDeps, { key, version: v, meta, content_type: v.content_type || FILE_CONTENT_TYPE }, truncate);
        this.files.set(key, f);
      }
    }
    if (truncate) await f.truncate(0);
    f.refs++;
    return f;
  }

  private async openOf(path: string, flags: number): Promise<number> {
    const writable = (flags & O_ACCMODE) !== fsConstants.O_RDONLY;
    const p = parseMountPath(path);
    if (p.kind === 'snapshot') {
      if (writable) throw fsError(ERRNO.EROFS, `${path} is history: read-only`);
      const at = await this.snapshotAt(p.which);
      const v = at === null || p.key === '' ? null : await this.head(p.key, at);
      if (v === null) throw fsError(ERRNO.ENOENT, `nothing at ${path}`);
      return this.addHandle({ kind: 'read', reader: new ReadHandle(v, this.store, this.metrics) });
    }
    if (p.kind !== 'live') throw fsError(ERRNO.EISDIR, `${path} is a directory`);
    const open = this.files.get(p.key);
    if (!writable && open === undefined) {
      const v = (await this.head(p.key, null)) ?? (await this.pastFile(p.key));
      if (v === null) throw fsError(ERRNO.ENOENT, `no file ${path}`);
      if (kindOf(v) === 'dir') throw fsError(ERRNO.EISDIR, `${path} is a directory`);
      return this.addHandle({ kind: 'read', reader: new ReadHandle(v, this.store, this.metrics) });
    }
    if (writable && open === undefined && (await this.head(p.key, null)) === null && (await this.pastFile(p.key)) !== null) {
      throw fsError(ERRNO.EROFS, `${path} is history: read-only`);
    }
    const f = await this.openFile(p.key, writable && (flags & O_TRUNC) !== 0);
    return this.addHandle({ kind: 'write', file: f, writable });
  }

  private async createOf(path: string, mode: number): Promise<number> {
    const p = this.livePath(path);
    const existing = this.files.get(p.key);
    if (existing !== undefined) {
      await existing.truncate(0);
      existing.refs++;
      return this.addHandle({ kind: 'write', file: existing, writable: true });
    }
    await this.requireParent(p.key);
    const meta: FileMeta = { mode: S_IFREG | (mode & 0o7777), uid: this.owner.uid, gid: this.owner.gid, mtime_ms: Date.now(), ctime_ms: Date.now() };
    const f = new OpenFile(this.fileDeps, { key: p.key, version: null, meta, content_type: FILE_CONTENT_TYPE }, true);
    f.refs++;
    this.files.set(p.key, f);
    this.forget(p.key);
    return this.addHandle({ kind: 'write', file: f, writable: true });
  }

  /** A live path, or EROFS for history (anything under .snapshot). */
  private livePath(path: string): { kind: 'live'; key: string } {
    const p = parseMountPath(path);
    if (p.kind === 'live') return p;
    if (p.kind === 'root') throw fsError(ERRNO.EEXIST, 'the root exists');
    throw fsError(ERRNO.EROFS, `${path} is history: read-only`);
  }

  private async requireParent(key: string): Promise<void> {
    const { parent } = splitKey(key);
    if (parent !== '') await this.requireDir(parent, null);
  }

  private async readOf(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handle(fd);
    return h.kind === 'read' ? h.reader.read(buf, len, pos) : h.file.read(buf, len, pos);
  }

  private async writeOf(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handle(fd);
    if (h.kind !== 'write' || !h.writable) throw fsError(ERRNO.EBADF, 'the file is not open for writing');
    return h.file.write(buf.subarray(0, len), pos);
  }

  /** Commits the file of handle `fd` (close and fsync): the new version is stable once this returns. */
  private async commitOf(fd: number): Promise<void> {
    const h = this.handle(fd);
    if (h.kind !== 'write') return;
    const v = await h.file.commit();
    if (v !== null) this.forget(h.file.key);
  }

  private async releaseOf(fd: number): Promise<void> {
    const h = this.handles.get(fd);
    this.handles.delete(fd);
    if (h === undefined || h.kind !== 'write') return;
    const f = h.file;
    f.refs--;
    if (f.refs > 0) return;
    try {
      // Normally flush committed already; this catches a file changed after its last flush.
      if (f.changed && !f.unlinked) await f.commit();
    } catch (err) {
      this.log.warn({ key: f.key, err: (err as Error).message }, 'a file closed with changes that could not be committed');
    } finally {
      f.discard();
      if (this.files.get(f.key) === f) this.files.delete(f.key);
      this.forget(f.key);
    }
  }

  private async truncateOf(path: string, size: number): Promise<void> {
    const p = this.livePath(path);
    const open = this.files.get(p.key);
    if (open !== undefined) {
      await open.truncate(size);
      return;
    }
    const f = await this.openFile(p.key, false);
    try {
      await f.truncate(size);
      await f.commit();
    } finally {
      f.refs--;
      f.discard();
      if (f.refs === 0 && this.files.get(p.key) === f) this.files.delete(p.key);
      this.forget(p.key);
    }
  }

  // ---- metadata versions -----------------------------------------------------------------------

  /** A new version of `key` with the same content and changed attributes (no data copied). */
  private async changeMeta(path: string, change: Partial<FileMeta>): Promise<void> {
    const p = this.livePath(path);
    const open = this.files.get(p.key);
    if (open !== undefined) {
      // With data pending, the change goes with it at close; else it is a version now, as for a
      // closed file (tar sets times after close, before the kernel releases the file).
      const pending = open.changed;
      await open.setMeta(change);
      if (!pending) {
        await open.commit();
        this.forget(p.key);
      }
      return;
    }
    const v = await this.head(p.key, null);
    if (v === null) {
      // An implied directory has no key to change: give it a marker with the new attributes.
      if ((await this.anyUnder(p.key, null)) === null) throw fsError(ERRNO.ENOENT, `no ${path}`);
      await this.commitMeta(p.key, null, { mode: S_IFDIR | 0o755, uid: this.owner.uid, gid: this.owner.gid, mtime_ms: Date.now(), ...change, ctime_ms: Date.now() });
      return;
    }
    const meta: FileMeta = { ...(v.meta ?? { mode: S_IFREG | 0o644, uid: this.owner.uid, gid: this.owner.gid, mtime_ms: hlcToMs(v.timestamp), ctime_ms: 0 }), ...change, ctime_ms: Date.now() };
    await this.commitMeta(p.key, v, meta);
  }

  private async commitMeta(key: string, v: BlobVersion | null, meta: FileMeta): Promise<void> {
    this.metrics.call('commit');
    await this.store.commit(key, { chunks: v?.chunks ?? [], chunk_sizes: v?.chunk_sizes ?? [], sha256: v?.sha256 ?? EMPTY_SHA256, content_type: v?.content_type || FILE_CONTENT_TYPE, meta });
    this.forget(key);
  }

  private async mkdirOf(path: string, mode: number): Promise<void> {
    const p = parseMountPath(path);
    if (p.kind === 'snapshot' && p.key === '') return this.pinSnapshot(p.which);
    const live = this.livePath(path);
    if (this.files.has(live.key) || (await this.statKey(live.key, null)) !== null) throw fsError(ERRNO.EEXIST, `${path} exists`);
    await this.requireParent(live.key);
    this.metrics.call('commit');
    await this.store.commit(live.key, { chunks: [], chunk_sizes: [], sha256: EMPTY_SHA256, meta: { mode: S_IFDIR | (mode & 0o7777), uid: this.owner.uid, gid: this.owner.gid, mtime_ms: Date.now(), ctime_ms: Date.now() } }, { if_none_match_any: true });
    this.forget(live.key);
  }

  /** `mkdir /.snapshot/<name>`: the present moment, under a name, as key `.snapshot/<name>`. */
  private async pinSnapshot(name: string): Promise<void> {
    if (!validSnapshotName(name)) throw fsError(ERRNO.EINVAL, `a snapshot name has no ':' and is not itself a time: ${name}`);
    this.metrics.call('commit');
    await this.store.commit(`${SNAPSHOT_DIR}/${name}`, { chunks: [], chunk_sizes: [], sha256: EMPTY_SHA256, meta: { mode: S_IFDIR | 0o555, uid: this.owner.uid, gid: this.owner.gid, mtime_ms: Date.now(), ctime_ms: Date.now() } }, { if_none_match_any: true });
    this.named.delete(name);
  }

  private async rmdirOf(path: string): Promise<void> {
    const p = parseMountPath(path);
    if (p.kind === 'snapshot' && p.key === '' && validSnapshotName(p.which) && (await this.head(`${SNAPSHOT_DIR}/${p.which}`, null)) !== null) {
      // Removing a named snapshot forgets the name; the history it named stays.
      this.metrics.call('delete');
      await this.store.delete(`${SNAPSHOT_DIR}/${p.which}`);
      this.named.delete(p.which);
      return;
    }
    const live = this.livePath(path);
    const v = await this.head(live.key, null);
    if (v !== null && kindOf(v) !== 'dir') throw fsError(ERRNO.ENOTDIR, `${path} is not a directory`);
    if ((await this.anyUnder(live.key, null)) !== null || [...this.files.keys()].some((k) => k.startsWith(`${live.key}/`))) throw fsError(ERRNO.ENOTEMPTY, `${path} is not empty`);
    if (v === null) throw fsError(ERRNO.ENOENT, `no directory ${path}`);
    this.metrics.call('delete');
    await this.store.delete(live.key);
    this.forget(live.key);
  }

  private async unlinkOf(path: string): Promise<void> {
    const p = this.livePath(path);
    const open = this.files.get(p.key);
    const v = await this.head(p.key, null);
    if (v !== null && kindOf(v) === 'dir') throw fsError(ERRNO.EISDIR, `${path} is a directory`);
    if (open !== undefined) {
      open.unlinked = true;
      this.files.delete(p.key);
    }
    if (v === null) {
      if (open !== undefined) return; // created here, never committed
      throw fsError(ERRNO.ENOENT, `no ${path}`);
    }
    this.metrics.call('delete');
    await this.store.delete(p.key);
    this.forget(p.key);
  }

  private async symlinkOf(target: string, path: string): Promise<void> {
    const p = this.livePath(path);
    if (this.files.has(p.key) || (await this.statKey(p.key, null)) !== null) throw fsError(ERRNO.EEXIST, `${path} exists`);
    await this.requireParent(p.key);
    const bytes = Buffer.from(target, 'utf8');
    if (bytes.length === 0 || bytes.length > 4096) throw fsError(ERRNO.EINVAL, 'a symlink target is 1..4096 bytes');
    this.metrics.call('commit');
    await this.store.putSmall(p.key, bytes, { content_type: 'text/plain; charset=utf-8', meta: { mode: S_IFLNK | 0o777, uid: this.owner.uid, gid: this.owner.gid, mtime_ms: Date.now(), ctime_ms: Date.now() } });
    this.forget(p.key);
  }

  private async readlinkOf(path: string): Promise<string> {
    const p = parseMountPath(path);
    let v: BlobVersion | null;
    if (p.kind === 'snapshot') {
      const at = await this.snapshotAt(p.which);
      v = at === null || p.key === '' ? null : await this.head(p.key, at);
    } else if (p.kind === 'live') v = (await this.head(p.key, null)) ?? (await this.pastFile(p.key));
    else v = null;
    if (v === null) throw fsError(ERRNO.ENOENT, `no ${path}`);
    if (kindOf(v) !== 'symlink') throw fsError(ERRNO.EINVAL, `${path} is not a symlink`);
    const parts: Buffer[] = [];
    for (let i = 0; i < v.chunks.length; i++) {
      this.metrics.call('read');
      parts.push(await this.store.readChunk(v.key, v.chunks[i]!, v.chunk_sizes[i]!));
    }
    return Buffer.concat(parts).toString('utf8');
  }

  /**
   * rename: the versions at the new names reuse the chunks (no data copied, unless the new name
   * is in another shard), then the old names get delete markers. A directory moves key by key.
   */
  private async renameOf(from: string, to: string): Promise<void> {
    const src = this.livePath(from);
    const dst = this.livePath(to);
    if (src.key === dst.key) return;
    if (dst.key.startsWith(`${src.key}/`)) throw fsError(ERRNO.EINVAL, `cannot move ${from} into itself`);
    const open = this.files.get(src.key);
    if (open !== undefined) await open.commit();
    const v = await this.head(src.key, null);
    const isDir = v === null ? (await this.anyUnder(src.key, null)) !== null : kindOf(v) === 'dir';
    if (v === null && !isDir) throw fsError(ERRNO.ENOENT, `no ${from}`);
    await this.requireParent(dst.key);
    const target = await this.statKey(dst.key, null);
    if (target !== null) {
      const targetIsDir = (target.stat.mode & S_IFMT) === S_IFDIR;
      if (targetIsDir && !isDir) throw fsError(ERRNO.EISDIR, `${to} is a directory`);
      if (!targetIsDir && isDir) throw fsError(ERRNO.ENOTDIR, `${to} is not a directory`);
      if (targetIsDir && (await this.anyUnder(dst.key, null)) !== null) throw fsError(ERRNO.ENOTEMPTY, `${to} is not empty`);
    }
    if (isDir) {
      // Everything under the directory, page by page (keys only grow under `to`, so no page repeats).
      let after: string | undefined;
      for (let page = 0; page < MAX_LIST_PAGES; page++) {
        this.metrics.call('list');
        const r = await this.store.list({ prefix: `${src.key}/`, limit: LIST_PAGE, ...(after !== undefined ? { after } : {}) });
        for (const e of r.entries) await this.moveKey(e.key, `${dst.key}/${e.key.slice(src.key.length + 1)}`);
        if (r.next_after === null) break;
        after = r.next_after;
      }
      if (v !== null) await this.moveKey(src.key, dst.key);
      else if (target !== null && target.version !== null) {
        this.metrics.call('delete');
        await this.store.delete(dst.key); // an empty directory marker replaced by an implied directory
      }
    } else {
      await this.moveKey(src.key, dst.key);
    }
    if (open !== undefined && this.files.get(src.key) === open) {
      this.files.delete(src.key);
      open.key = dst.key;
      this.files.set(dst.key, open);
    }
    this.forget(src.key);
    this.forget(dst.key);
  }

  private async moveKey(from: string, to: string): Promise<void> {
    if (await this.store.sameShard(from, to)) {
      // One update: the new name gets the content, the old one a delete marker, atomically.
      this.metrics.call('commit');
      try {
        await this.store.move(from, to);
      } catch (err) {
        if (!isStoreError(err, STORE_ERRORS.NOT_FOUND)) throw err;
      }
      return;
    }
    const v = await this.head(from, null);
    if (v === null) return;
    {
      // The new name's shard does not hold these chunks: store them there (chunk by chunk).
      for (let i = 0; i < v.chunks.length; i++) {
        this.metrics.call('read');
        const bytes = await this.store.readChunk(from, v.chunks[i]!, v.chunk_sizes[i]!);
        this.metrics.call('chunk');
        await this.store.putChunk(to, bytes);
      }
    }
    this.metrics.call('commit');
    await this.store.commit(to, { chunks: v.chunks, chunk_sizes: v.chunk_sizes, sha256: v.sha256, content_type: v.content_type, meta: v.meta });
    this.metrics.call('delete');
    await this.store.delete(from);
  }

  private async statfsOf(): Promise<StatFs> {
    const s = await statfsAsync(this.opts.statfs_path).catch(() => null);
    const bsize = BLOCK_SIZE_BYTES;
    const scale = (n: number | bigint, unit: number | bigint) => Math.floor((Number(n) * Number(unit)) / bsize);
    return {
      bsize,
      frsize: bsize,
      blocks: s === null ? 0 : scale(s.blocks, s.bsize),
      bfree: s === null ? 0 : scale(s.bfree, s.bsize),
      bavail: s === null ? 0 : scale(s.bavail, s.bsize),
      files: 1_000_000_000,
      ffree: 1_000_000_000,
      favail: 1_000_000_000,
      fsid: 0x7e57,
      flag: 0,
      namemax: 255,
    };
  }

  // ---- the operations table --------------------------------------------------------------------

  /** Runs an operation and answers fuse with its value or errno; unexpected errors are logged. */
  private answer<T>(op: string, run: () => Promise<T>, reply: (err: number, value?: T) => void): void {
    run().then(
      (value) => {
        this.metrics.op(op, 'ok');
        reply(0, value);
      },
      (err: unknown) => {
        const errno = errnoOf(err);
        this.metrics.op(op, errnoName(errno));
        if (errno === ERRNO.EIO) this.log.warn({ op, err: (err as Error)?.message ?? String(err) }, 'a file-system operation failed');
        else this.log.debug({ op, errno, err: (err as Error)?.message }, 'a file-system operation was refused');
        reply(errno);
      },
    );
  }

  operations(): Operations {
    return {
      init: (cb) => cb(0),
      statfs: (_path, cb) => this.answer('statfs', () => this.statfsOf(), (e, v) => cb(e, v!)),
      getattr: (path, cb) => this.answer('getattr', () => this.getattrOf(path), (e, v) => cb(e, v!)),
      fgetattr: (path, fd, cb) =>
        this.answer(
          'getattr',
          async () => {
            const h = this.handles.get(fd);
            if (h?.kind === 'write') return this.statOfOpen(h.file);
            return this.getattrOf(path);
          },
          (e, v) => cb(e, v!),
        ),
      access: (_path, _mode, cb) => cb(0),
      readdir: (path, cb) => this.answer('readdir', async () => ['.', '..', ...(await this.readdirOf(path))], (e, v) => cb(e, v)),
      opendir: (path, _flags, cb) =>
        this.answer(
          'opendir',
          async () => {
            const p = parseMountPath(path);
            if (p.kind === 'live') await this.requireDir(p.key, null);
            return 0;
          },
          (e, v) => cb(e, v ?? 0),
        ),
      releasedir: (_path, _fd, cb) => cb(0),
      open: (path, flags, cb) => this.answer('open', () => this.openOf(path, flags), (e, v) => cb(e, v ?? 0)),
      create: (path, mode, cb) => this.answer('create', () => this.createOf(path, mode), (e, v) => cb(e, v ?? 0)),
      read: (_path, fd, buf, len, pos, cb) => this.answer('read', () => this.readOf(fd, buf, len, pos), (e, v) => cb(e !== 0 ? e : v!)),
      write: (_path, fd, buf, len, pos, cb) => this.answer('write', () => this.writeOf(fd, buf, len, pos), (e, v) => cb(e !== 0 ? e : v!)),
      flush: (_path, fd, cb) => this.answer('flush', () => this.commitOf(fd), (e) => cb(e)),
      fsync: (_path, _datasync, fd, cb) => this.answer('fsync', () => this.commitOf(fd), (e) => cb(e)),
      fsyncdir: (_path, _datasync, _fd, cb) => cb(0),
      release: (_path, fd, cb) => this.answer('release', () => this.releaseOf(fd), (e) => cb(e)),
      truncate: (path, size, cb) => this.answer('truncate', () => this.truncateOf(path, size), (e) => cb(e)),
      ftruncate: (path, fd, size, cb) =>
        this.answer(
          'truncate',
          async () => {
            const h = this.handle(fd);
            if (h.kind !== 'write' || !h.writable) throw fsError(ERRNO.EBADF, 'the file is not open for writing');
            await h.file.truncate(size);
          },
          (e) => cb(e),
        ),
      readlink: (path, cb) => this.answer('readlink', () => this.readlinkOf(path), (e, v) => cb(e, v ?? '')),
      chmod: (path, mode, cb) => this.answer('chmod', () => this.changeMode(path, mode), (e) => cb(e)),
      chown: (path, uid, gid, cb) =>
        this.answer(
          'chown',
          async () => {
            // -1 (as an unsigned 32-bit number) leaves that id as it is.
            const st = await this.getattrOf(path);
            const change: Partial<FileMeta> = {};
            if (uid !== 0xffffffff && uid !== -1 && uid !== st.uid) change.uid = uid;
            if (gid !== 0xffffffff && gid !== -1 && gid !== st.gid) change.gid = gid;
            this.livePath(path);
            if (Object.keys(change).length > 0) await this.changeMeta(path, change);
          },
          (e) => cb(e),
        ),
      utimens: (path, _atime, mtime, cb) =>
        // The access time is not kept. The patched addon (scripts/setup.mjs) sends UTIME_OMIT as 0 and UTIME_NOW as 1.
        this.answer('utimens', async () => (mtime === UTIME_OMIT ? undefined : this.changeMeta(path, { mtime_ms: mtime === UTIME_NOW ? Date.now() : mtime })), (e) => cb(e)),
      unlink: (path, cb) => this.answer('unlink', () => this.unlinkOf(path), (e) => cb(e)),
      rename: (src, dest, cb) => this.answer('rename', () => this.renameOf(src, dest), (e) => cb(e)),
      link: (_src, _dest, cb) => cb(ERRNO.EPERM),
      symlink: (target, path, cb) => this.answer('symlink', () => this.symlinkOf(target, path), (e) => cb(e)),
      mkdir: (path, mode, cb) => this.answer('mkdir', () => this.mkdirOf(path, mode), (e) => cb(e)),
      rmdir: (path, cb) => this.answer('rmdir', () => this.rmdirOf(path), (e) => cb(e)),
      mknod: (_path, _mode, _dev, cb) => cb(ERRNO.EPERM),
    };
  }

  private async changeMode(path: string, mode: number): Promise<void> {
    const st = await this.getattrOf(path);
    const next = (st.mode & S_IFMT) | (mode & 0o7777);
    if (next === st.mode) {
      this.livePath(path); // EROFS in history even when nothing would change
      return; // nothing changes: no version
    }
    await this.changeMeta(path, { mode: next });
  }

  /** Commits every open file (unmount) and forgets them. */
  async flushAll(): Promise<void> {
    clearInterval(this.keepAliveTimer);
    await this.feed.close();
    for (const f of [...this.files.values()]) {
      try {
        if (f.changed && !f.unlinked) await f.commit();
      } catch (err) {
        this.log.warn({ key: f.key, err: (err as Error).message }, 'an open file could not be committed at unmount');
      }
      f.discard();
    }
    this.files.clear();
    this.handles.clear();
  }
}

/** A name `mkdir /.snapshot/<name>` accepts: a path segment without ':' that is not itself a time. */
export function validSnapshotName(name: string): boolean {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes(':') || Buffer.byteLength(name) > 255) return false;
  try {
    parseTime(name, Number.MAX_SAFE_INTEGER / 1000);
    return false; // it reads as a time: a name would hide that moment
  } catch (err) {
    return err instanceof StoreError;
  }
}

function errnoName(errno: number): string {
  for (const [name, n] of Object.entries(ERRNO)) if (n === errno) return name;
  return String(-errno);
}
