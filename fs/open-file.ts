/**
 * A file open for writing: what it holds now, as chunk ids of the store plus the chunks changed
 * since they were read, never a local copy of the whole file (DESIGN §10).
 *
 * Every chunk but the last is chunk_size_bytes long, in the store as here, so byte offsets map to
 * chunk indexes by division. Chunk i is, in order of precedence: dirty (a pooled buffer with its
 * whole current content), being sent (putChunk under way; its id comes back), stored (an id of
 * the version the file was opened at, or of a chunk sent since), or a hole (zeros). A write loads
 * the chunk it changes (one read), changes it, and sends it as soon as the write reaches the
 * chunk's end; at most `max_dirty_chunks` stay dirty (random writes) and `upload_window` are sent
 * at once (sequential writes), so memory per open file is bounded whatever its size.
 *
 * commit() (close, fsync) sends what is left and writes one manifest: a 4 KiB write into a 1 GiB
 * file stores one chunk and one manifest. While every write so far appended to a file that was
 * empty, the content's sha256 is computed on the way and is the version's ETag, as an HTTP upload
 * of the same bytes would have; otherwise the ETag is the hash of the chunk ids (types.ts).
 *
 * Calls are serialised per file (a promise chain): the kernel may send writes, truncates and
 * flushes of one file from several threads at once.
 */
import { createHash, type Hash } from 'node:crypto';
import type { BlobVersion, FileMeta, StoreClient } from '../engine/store/types.js';
import { assert } from '../engine/util/assert.js';
import type { ChunkPool } from './chunk-pool.js';
import { ERRNO, fsError } from './errno.js';
import type { FsMetrics } from './metrics.js';

export interface OpenFileDeps {
  store: StoreClient;
  pool: ChunkPool;
  metrics: FsMetrics;
  /** Chunks sent at once per file. */
  upload_window: number;
  /** Chunks kept changed but unsent per file (random writes) before the oldest is sent. */
  max_dirty_chunks: number;
  /** Largest file ([HTTP] max_blob_size): writes past it fail EFBIG. */
  max_size_bytes: number;
}

/** What a file is opened from: its current version, or nothing (a new or truncated file). */
export interface OpenFileBase {
  key: string;
  version: BlobVersion | null;
  meta: FileMeta;
  content_type: string;
}

export class OpenFile {
  key: string;
  /** Handles open on this file (the kernel's file descriptors). */
  refs = 0;
  /** Unlinked while open: nothing is committed any more. */
  unlinked = false;
  size: number;
  meta: FileMeta;
  /** Data or metadata changed since the last commit. */
  changed: boolean;
  /** The version the file was opened at or last committed as (null for a new file not yet committed). */
  lastVersion: BlobVersion | null;
  private readonly content_type: string;
  private readonly C: number;
  private readonly ids: (string | null)[] = [];
  private readonly idLen: number[] = [];
  private readonly dirty = new Map<number, Buffer>();
  private readonly sending = new Map<number, Promise<string>>();
  private readonly window: Promise<unknown>[] = [];
  private failed: Error | null = null;
  /** Ids sent since the last commit (no version refers to them yet), and when the first was. */
  private readonly uncommitted = new Set<string>();
  private uncommittedSince_ms = 0;
  private hash: Hash | null;
  private hashed = 0;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly deps: OpenFileDeps,
    base: OpenFileBase,
    /** True for a new file or one opened with O_TRUNC: it must be committed even if never written. */
    fresh: boolean,
  ) {
    this.key = base.key;
    this.meta = { ...base.meta };
    this.content_type = base.content_type;
    this.C = deps.store.chunk_size_bytes;
    const v = base.version;
    if (v !== null && !fresh) {
      this.size = v.size;
      v.chunks.forEach((id, i) => {
        this.ids.push(id);
        this.idLen.push(v.chunk_sizes[i]!);
      });
      this.hash = null;
    } else {
      this.size = 0;
      this.hash = createHash('sha256');
    }
    this.changed = fresh;
    this.lastVersion = v;
  }

  /** Runs `fn` after every call before it on this file. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn);
    this.chain = p.catch(() => {});
    return p;
  }

  private lenOf(i: number): number {
    return Math.max(0, Math.min(this.C, this.size - i * this.C));
  }

  /** Chunk i as a dirty buffer (loaded from the store, or zeros for a hole). */
  private async materialize(i: number): Promise<Buffer> {
    const d = this.dirty.get(i);
    if (d !== undefined) return d;
    const pending = this.sending.get(i);
    if (pending !== undefined) await pending;
    const buf = this.deps.pool.take();
    const id = this.ids[i];
    if (id !== null && id !== undefined) {
      this.deps.metrics.call('read');
      const bytes = await this.deps.store.readChunk(this.key, id, this.idLen[i]!);
      // A stored chunk longer than the file now (after a truncate) keeps only what is inside it.
      bytes.copy(buf, 0, 0, Math.min(bytes.length, this.lenOf(i)));
    }
    this.dirty.set(i, buf);
    return buf;
  }

  /** Sends dirty chunk i (its bytes are copied into the request before putChunk returns). */
  private async send(i: number): Promise<void> {
    const buf = this.dirty.get(i);
    assert(buf !== undefined, 'only a dirty chunk is sent');
    this.dirty.delete(i);
    const len = this.lenOf(i);
    if (len === 0) {
      this.deps.pool.give(buf);
      return;
    }
    this.deps.metrics.call('chunk');
    const p = this.deps.store.putChunk(this.key, buf.subarray(0, len));
    this.deps.pool.give(buf);
    this.sending.set(i, p);
    const done = p.then(
      (id) => {
        if (this.sending.get(i) === p) {
          this.sending.delete(i);
          this.ids[i] = id;
          this.idLen[i] = len;
        }
        if (this.uncommitted.size === 0) this.uncommittedSince_ms = Date.now();
        this.uncommitted.add(id);
      },
      (err: Error) => {
        if (this.sending.get(i) === p) this.sending.delete(i);
        this.failed ??= err;
      },
    );
    this.window.push(done);
    while (this.window.length >= this.deps.upload_window) await this.window.shift();
  }

  private check(): void {
    if (this.failed !== null) throw this.failed;
  }

  /** Writes `data` at `pos`; resolves once it is in the file's chunks (not yet committed). */
  write(data: Buffer, pos: number): Promise<number> {
    return this.run(async () => {
      this.check();
      const end = pos + data.length;
      if (end > this.deps.max_size_bytes) throw fsError(ERRNO.EFBIG, `${this.key} would be over ${this.deps.max_size_bytes} bytes`);
      if (this.hash !== null) {
        if (pos === this.hashed && pos >= this.size) {
          this.hash.update(data);
          this.hashed = end;
        } else this.hash = null;
      }
      if (end > this.size) this.size = end;
      for (let at = pos; at < end; ) {
        const i = Math.floor(at / this.C);
        const off = at - i * this.C;
        const n = Math.min(this.C - off, end - at);
        const buf = await this.materialize(i);
        data.copy(buf, off, at - pos, at - pos + n);
        at += n;
        if (off + n === this.C) await this.send(i);
      }
      while (this.dirty.size > this.deps.max_dirty_chunks) await this.send(this.dirty.keys().next().value!);
      this.meta.mtime_ms = this.meta.ctime_ms = Date.now();
      this.changed = true;
      this.check();
      return data.length;
    });
  }

  /** Reads up to `len` bytes at `pos` into `out`; how many. */
  read(out: Buffer, len: number, pos: number): Promise<number> {
    return this.run(async () => {
      const end = Math.min(pos + len, this.size);
      let copied = 0;
      for (let at = pos; at < end; ) {
        const i = Math.floor(at / this.C);
        const off = at - i * this.C;
        const n = Math.min(this.C - off, end - at);
        const d = this.dirty.get(i);
        if (d !== undefined) d.copy(out, copied, off, off + n);
        else {
          const pending = this.sending.get(i);
          if (pending !== undefined) await pending;
          this.check();
          const id = this.ids[i];
          if (id === null || id === undefined) out.fill(0, copied, copied + n);
          else {
            this.deps.metrics.call('read');
            const bytes = await this.deps.store.readChunk(this.key, id, this.idLen[i]!);
            const have = Math.max(0, Math.min(n, bytes.length - off));
            bytes.copy(out, copied, off, off + have);
            out.fill(0, copied + have, copied + n);
          }
        }
        copied += n;
        at += n;
      }
      return copied;
    });
  }

  truncate(newSize: number): Promise<void> {
    return this.run(async () => {
      this.check();
      if (newSize > this.deps.max_size_bytes) throw fsError(ERRNO.EFBIG, `${this.key} would be over ${this.deps.max_size_bytes} bytes`);
      if (newSize === this.size) return;
      if (newSize === 0) {
        for (const b of this.dirty.values()) this.deps.pool.give(b);
        this.dirty.clear();
        this.ids.length = 0;
        this.idLen.length = 0;
        this.hash = createHash('sha256');
        this.hashed = 0;
      } else {
        if (this.hash !== null && newSize !== this.hashed) this.hash = null;
        if (newSize < this.size) {
          const keep = Math.ceil(newSize / this.C);
          for (const [i, b] of this.dirty) {
            if (i >= keep) {
              this.deps.pool.give(b);
              this.dirty.delete(i);
            }
          }
          this.ids.length = Math.min(this.ids.length, keep);
          this.idLen.length = Math.min(this.idLen.length, keep);
          // The new last chunk is cut inside: load it now so that growing the file later reads zeros there.
          const tail = newSize % this.C;
          if (tail !== 0) {
            const buf = await this.materialize(keep - 1);
            buf.fill(0, tail);
          }
        }
      }
      this.size = newSize;
      this.meta.mtime_ms = this.meta.ctime_ms = Date.now();
      this.changed = true;
    });
  }

  /** Changes attributes (chmod, chown, utimens on an open file): committed with the data. */
  setMeta(change: Partial<FileMeta>): Promise<void> {
    return this.run(async () => {
      Object.assign(this.meta, change);
      this.meta.ctime_ms = Date.now();
      this.changed = true;
    });
  }

  /**
   * Sends every changed chunk and commits one version (close, fsync); the version, or null when
   * nothing changed. Resolves once the version is stable and persisted on the shard's replicas.
   */
  commit(): Promise<BlobVersion | null> {
    return this.run(async () => {
      this.check();
      if (!this.changed || this.unlinked) return null;
      const n = Math.ceil(this.size / this.C);
      const sha = (): string | null => (this.hash !== null && this.hashed === this.size ? this.hash.copy().digest('hex') : null);
      const small = n === 1 ? this.dirty.get(0) : undefined;
      if (small !== undefined && this.sending.size === 0) {
        // One chunk, changed here: stored and committed in one update.
        this.deps.metrics.call('commit');
        const v = await this.deps.store.putSmall(this.key, small.subarray(0, this.size), { ...(sha() !== null ? { sha256: sha()! } : {}), content_type: this.content_type, meta: { ...this.meta } });
        this.dirty.delete(0);
        this.deps.pool.give(small);
        this.ids[0] = v.chunks[0]!;
        this.idLen[0] = this.size;
        this.ids.length = 1;
        this.idLen.length = 1;
        this.changed = false;
        this.lastVersion = v;
        this.uncommitted.clear();
        return v;
      }
      for (let i = 0; i < n; i++) {
        if (this.dirty.has(i)) await this.send(i);
        else if (this.sending.has(i)) continue;
        else if (this.ids[i] === null || this.ids[i] === undefined || this.idLen[i] !== this.lenOf(i)) {
          // A hole, or a stored chunk whose length changed (the file grew past it or was cut).
          await this.materialize(i);
          await this.send(i);
        }
      }
      await Promise.all(this.window.splice(0));
      this.check();
      const chunks = this.ids.slice(0, n) as string[];
      const chunk_sizes = this.idLen.slice(0, n);
      assert(chunks.length === n && chunks.every((id) => typeof id === 'string'), 'every chunk is stored before the commit');
      const sha256 = sha() ?? chunkListEtag(chunks);
      this.deps.metrics.call('commit');
      const v = await this.deps.store.commit(this.key, { chunks, chunk_sizes, sha256, content_type: this.content_type, meta: { ...this.meta } });
      this.changed = false;
      this.lastVersion = v;
      this.uncommitted.clear();
      return v;
    });
  }

  /**
   * Chunks sent but not yet in a version are unreferenced in the store and collected after its
   * grace period: a file kept open longer than `older_than_ms` has them touched again.
   */
  async keepAlive(older_than_ms: number): Promise<void> {
    if (this.uncommitted.size === 0 || Date.now() - this.uncommittedSince_ms < older_than_ms) return;
    const ids = [...this.uncommitted];
    await this.deps.store.touchChunks(this.key, ids);
    this.uncommittedSince_ms = Date.now();
  }

  /** Gives back the buffers of an abandoned file (unlinked, or closed after a failure). */
  discard(): void {
    for (const b of this.dirty.values()) this.deps.pool.give(b);
    this.dirty.clear();
  }
}

/** The ETag of content known by its chunks: sha256 of the ids, then `-<count>` (types.ts). */
export function chunkListEtag(ids: string[]): string {
  const h = createHash('sha256');
  for (const id of ids) h.update(Buffer.from(id, 'hex'));
  return `${h.digest('hex')}-${ids.length}`;
}
