/**
 * The koffi binding of native/tempest_fabric.h. This is the only module in Tempest that imports
 * koffi; everything above it sees the typed `NativeFabricLib` interface.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import koffi from 'koffi';
import { TempestError } from '../util/errors.js';

/** Opaque native handles (koffi 3 represents pointers as BigInt). */
export type CtxHandle = bigint & { readonly __brand: 'tf_ctx' };
export type MrHandle = bigint & { readonly __brand: 'tf_mr' };

export interface NativeFabricLib {
  tf_open(
    provider: string,
    domain: string,
    node: string,
    service: string,
    tx_depth: number,
    rx_depth: number,
    ring_capacity: number,
    errbuf: Buffer,
    errbuf_len: number,
  ): CtxHandle | null;
  tf_attach_loop(ctx: CtxHandle): number;
  tf_start_progress(ctx: CtxHandle): number;
  /**
   * Loop mode: `wake` runs on the main thread, from libuv's poll callback, when completions are
   * queued. Returns a function that detaches and releases it (call before tf_close).
   */
  registerLoopWake(ctx: CtxHandle, wake: () => void): () => void;
  tf_close(ctx: CtxHandle): void;
  tf_provider_name(ctx: CtxHandle): string;
  tf_domain_name(ctx: CtxHandle): string;
  tf_cq_data_size(ctx: CtxHandle): number;
  tf_local_address(ctx: CtxHandle, out: Buffer, out_len: number): number;
  tf_av_insert(ctx: CtxHandle, addr: Buffer, addr_len: number): number | bigint;
  tf_av_remove(ctx: CtxHandle, fi_addr: number): number;
  tf_mr_register(ctx: CtxHandle, buf: Buffer, len: number, key: number, errbuf: Buffer, errbuf_len: number): MrHandle | null;
  tf_mr_key(mr: MrHandle): number | bigint;
  tf_mr_remote_base(mr: MrHandle): number | bigint;
  tf_mr_close(mr: MrHandle): void;
  tf_post_recv(ctx: CtxHandle, peer: number, mr: MrHandle, offset: number, len: number, handler: number, tag: number): number;
  tf_send(
    ctx: CtxHandle,
    peer: number,
    mr: MrHandle,
    offset: number,
    len: number,
    data: number,
    with_data: number,
    handler: number,
    tag: number,
  ): number;
  tf_write(
    ctx: CtxHandle,
    peer: number,
    mr: MrHandle,
    offset: number,
    len: number,
    remote_addr: number,
    remote_key: number,
    data: number,
    with_data: number,
    handler: number,
    tag: number,
  ): number;
  tf_poll(ctx: CtxHandle, out: Buffer, max: number): number;
  tf_notify_fd(ctx: CtxHandle): number;
  tf_strerror(err: number): string;
}

/** Size of one tf_completion record in bytes; keep in step with the C struct. */
export const COMPLETION_SIZE_BYTES = 32;

export const enum CompletionKind {
  Send = 1,
  Recv = 2,
  Write = 3,
  RemoteWrite = 4,
  Error = 5,
}

/** libfabric's FI_EAGAIN, as the shim returns it: the op pool or provider queue is full. */
export const FI_EAGAIN = -11;

const here = dirname(fileURLToPath(import.meta.url));

/** native/build is found from the source tree and from dist/ alike. */
function libraryPath(): string {
  const candidates = [
    process.env.TEMPEST_NATIVE_LIB,
    join(here, '../../native/build/libtempest_fabric.so'),
    join(here, '../../../native/build/libtempest_fabric.so'),
  ];
  for (const c of candidates) if (c && existsSync(c)) return c;
  throw new TempestError(
    'ERR_TRANSPORT_NATIVE_MISSING',
    'the libfabric shim native/build/libtempest_fabric.so is not built: run "npm run setup" (it needs Debian libfabric-dev and a C compiler)',
  );
}

let lib: NativeFabricLib | undefined;

export function nativeFabric(): NativeFabricLib {
  if (lib) return lib;
  const path = libraryPath();
  // Debian's libfabric links QLogic's libinfinipath (PSM), whose load-time constructor replaces
  // the SIGINT and SIGTERM handlers with its own, which exit(1) past Node: Ctrl-C and clean
  // shutdown would be lost. This documented switch stops it; set before the library loads.
  process.env.IPATH_NO_BACKTRACE ??= '1';
  // ofi_rxm over tcp posts 4,096 shared receive bounce buffers of 16 KiB by default and touches
  // them all: 64 MiB resident per member before any traffic. Our two-sided traffic is credit
  // bounded (messenger windows) and everything else is RMA, so a smaller pool costs nothing
  // measurable (bench:multicast) and keeps a member near 70 MiB at rest.
  process.env.FI_OFI_RXM_MSG_RX_SIZE ??= '1024';
  let so: ReturnType<typeof koffi.load>;
  try {
    so = koffi.load(path);
  } catch (err) {
    throw new TempestError(
      'ERR_TRANSPORT_NATIVE_LOAD',
      `cannot load ${path}: ${(err as Error).message} (is Debian libfabric1 installed? "npm run setup" installs it)`,
      { cause: err },
    );
  }
  koffi.opaque('tf_ctx');
  koffi.opaque('tf_mr');
  const f = (proto: string) => so.func(proto);
  const wakeType = koffi.pointer(koffi.proto('void tf_loop_wake_cb(void)'));
  const setLoopWake = so.func('void tf_set_loop_wake(tf_ctx *ctx, tf_loop_wake_cb *wake)');
  lib = {
    tf_open: f(
      'tf_ctx *tf_open(const char *provider, const char *domain, const char *node, const char *service, uint32_t tx_depth, uint32_t rx_depth, uint32_t ring_capacity, void *errbuf, uint32_t errbuf_len)',
    ),
    tf_attach_loop: f('int32_t tf_attach_loop(tf_ctx *ctx)'),
    tf_start_progress: f('int32_t tf_start_progress(tf_ctx *ctx)'),
    registerLoopWake: (ctx: CtxHandle, wake: () => void) => {
      const cb = koffi.register(wake, wakeType);
      setLoopWake(ctx, cb);
      return () => {
        setLoopWake(ctx, null);
        koffi.unregister(cb);
      };
    },
    tf_close: f('void tf_close(tf_ctx *ctx)'),
    tf_provider_name: f('const char *tf_provider_name(tf_ctx *ctx)'),
    tf_domain_name: f('const char *tf_domain_name(tf_ctx *ctx)'),
    tf_cq_data_size: f('uint32_t tf_cq_data_size(tf_ctx *ctx)'),
    tf_local_address: f('int32_t tf_local_address(tf_ctx *ctx, void *out, uint32_t out_len)'),
    tf_av_insert: f('int64_t tf_av_insert(tf_ctx *ctx, void *addr, uint32_t addr_len)'),
    tf_av_remove: f('int32_t tf_av_remove(tf_ctx *ctx, int64_t fi_addr)'),
    tf_mr_register: f('tf_mr *tf_mr_register(tf_ctx *ctx, void *buf, uint64_t len, uint64_t requested_key, void *errbuf, uint32_t errbuf_len)'),
    tf_mr_key: f('uint64_t tf_mr_key(tf_mr *mr)'),
    tf_mr_remote_base: f('uint64_t tf_mr_remote_base(tf_mr *mr)'),
    tf_mr_close: f('void tf_mr_close(tf_mr *mr)'),
    tf_post_recv: f('int32_t tf_post_recv(tf_ctx *ctx, int64_t peer, tf_mr *mr, uint64_t offset, uint64_t len, uint32_t handler, uint32_t tag)'),
    tf_send: f(
      'int32_t tf_send(tf_ctx *ctx, int64_t peer, tf_mr *mr, uint64_t offset, uint64_t len, uint32_t data, uint32_t with_data, uint32_t handler, uint32_t tag)',
    ),
    tf_write: f(
      'int32_t tf_write(tf_ctx *ctx, int64_t peer, tf_mr *mr, uint64_t offset, uint64_t len, uint64_t remote_addr, uint64_t remote_key, uint32_t data, uint32_t with_data, uint32_t handler, uint32_t tag)',
    ),
    tf_poll: f('int32_t tf_poll(tf_ctx *ctx, void *out, uint32_t max)'),
    tf_notify_fd: f('int32_t tf_notify_fd(tf_ctx *ctx)'),
    tf_strerror: f('const char *tf_strerror(int32_t err)'),
  } as NativeFabricLib;
  return lib;
}
