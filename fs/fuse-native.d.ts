/** The parts of fuse-native (CommonJS, untyped) that fs/ uses. */
declare module 'fuse-native' {
  type Cb<T extends unknown[] = []> = (err: number, ...out: T) => void;
  export interface Stat {
    mode: number;
    uid: number;
    gid: number;
    size: number;
    dev?: number;
    nlink: number;
    ino?: number;
    rdev?: number;
    blksize?: number;
    blocks?: number;
    atime: Date | number;
    mtime: Date | number;
    ctime: Date | number;
  }
  export interface StatFs {
    bsize: number;
    frsize: number;
    blocks: number;
    bfree: number;
    bavail: number;
    files: number;
    ffree: number;
    favail: number;
    fsid: number;
    flag: number;
    namemax: number;
  }
  export interface Operations {
    init?(cb: Cb): void;
    statfs?(path: string, cb: Cb<[StatFs]>): void;
    getattr?(path: string, cb: Cb<[Stat]>): void;
    fgetattr?(path: string, fd: number, cb: Cb<[Stat]>): void;
    access?(path: string, mode: number, cb: Cb): void;
    open?(path: string, flags: number, cb: Cb<[number]>): void;
    opendir?(path: string, flags: number, cb: Cb<[number]>): void;
    create?(path: string, mode: number, cb: Cb<[number]>): void;
    utimens?(path: string, atime: number, mtime: number, cb: Cb): void;
    release?(path: string, fd: number, cb: Cb): void;
    releasedir?(path: string, fd: number, cb: Cb): void;
    read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytes: number) => void): void;
    write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytes: number) => void): void;
    readdir?(path: string, cb: (err: number, names?: string[], stats?: Stat[]) => void): void;
    flush?(path: string, fd: number, cb: Cb): void;
    fsync?(path: string, datasync: boolean, fd: number, cb: Cb): void;
    fsyncdir?(path: string, datasync: boolean, fd: number, cb: Cb): void;
    truncate?(path: string, size: number, cb: Cb): void;
    ftruncate?(path: string, fd: number, size: number, cb: Cb): void;
    readlink?(path: string, cb: Cb<[string]>): void;
    chown?(path: string, uid: number, gid: number, cb: Cb): void;
    chmod?(path: string, mode: number, cb: Cb): void;
    mknod?(path: string, mode: number, dev: number, cb: Cb): void;
    unlink?(path: string, cb: Cb): void;
    rename?(src: string, dest: string, cb: Cb): void;
    link?(src: string, dest: string, cb: Cb): void;
    symlink?(target: string, path: string, cb: Cb): void;
    mkdir?(path: string, mode: number, cb: Cb): void;
    rmdir?(path: string, cb: Cb): void;
  }
  export interface FuseOptions {
    timeout?: number | false | Record<string, number | false>;
    force?: boolean;
    mkdir?: boolean;
    debug?: boolean;
    maxRead?: number;
    fsname?: string;
    subtype?: string;
    attrTimeout?: number;
    entryTimeout?: number;
    autoCache?: boolean;
    defaultPermissions?: boolean;
    allowOther?: boolean;
  }
  class Fuse {
    constructor(mnt: string, ops: Operations, opts?: FuseOptions);
    readonly mnt: string;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    /** The -o option string libfuse gets (overridden to add options fuse-native has no flag for). */
    _fuseOptions(): string;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
    static isConfigured(cb: (err: Error | null, configured: boolean) => void): void;
  }
  export default Fuse;
}
