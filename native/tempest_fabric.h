/*
 * Tempest's only C: a thin shim over libfabric. libfabric's data-path calls (fi_send, fi_write,
 * fi_cq_read, ...) are static inline functions, so they cannot be reached through an FFI; this
 * library exports plain functions around them. It moves bytes and reports completions; every
 * protocol decision lives in TypeScript (engine/transport and above).
 *
 * Completions are queued as 32-byte records in a bounded ring; one byte is written to a pipe when
 * JS has drained the ring and asked to be woken. JS reads the pipe from its event loop and drains
 * records in batches with tf_poll, so JS never spins and is woken once per batch. The ring is
 * filled either from Node's own loop watching the CQ's wait fd (tf_attach_loop) or by a progress
 * thread blocked in fi_cq_sread (tf_start_progress); both also drive providers whose data
 * progress is manual, such as tcp.
 */
#ifndef TEMPEST_FABRIC_H
#define TEMPEST_FABRIC_H

#include <stddef.h>
#include <stdint.h>

typedef struct tf_ctx tf_ctx;
typedef struct tf_mr tf_mr;

/* Completion kinds in tf_completion.kind. */
enum {
  TF_COMP_SEND = 1,
  TF_COMP_RECV = 2,
  TF_COMP_WRITE = 3,        /* local completion of an RMA write issued here */
  TF_COMP_REMOTE_WRITE = 4, /* a peer's RMA write with immediate data landed here */
  TF_COMP_ERROR = 5,        /* an operation issued here failed; err holds -errno */
};

/* One completion as JS reads it: 32 bytes, little endian, no pointers. */
typedef struct tf_completion {
  uint32_t handler; /* JS dispatch slot given when the op was posted (0 for remote writes) */
  uint32_t tag;     /* JS tag given when the op was posted */
  uint32_t kind;    /* TF_COMP_* */
  int32_t err;      /* 0, or a negative libfabric error code for TF_COMP_ERROR */
  uint64_t len;     /* bytes received (recv) or written (remote write) */
  uint32_t data;    /* immediate data (recv / remote write) */
  uint32_t op_kind; /* for TF_COMP_ERROR: the TF_COMP_* kind of the failed operation */
} tf_completion;

/*
 * Opens fabric, domain, address vector, completion queue and one reliable-datagram endpoint bound
 * to node:service, and starts the progress thread. provider: "tcp" (tcp;ofi_rxm), "sockets",
 * "verbs" (verbs;ofi_rxm) or a full libfabric provider string. domain may be NULL or "".
 * ring_capacity bounds the completions queued for JS. Returns NULL and fills errbuf on failure.
 */
tf_ctx *tf_open(const char *provider, const char *domain, const char *node, const char *service,
                uint32_t tx_depth, uint32_t rx_depth, uint32_t ring_capacity, char *errbuf,
                uint32_t errbuf_len);
/* Completions reach JS in one of two ways, chosen once after tf_open:
 * - tf_attach_loop: Node's own event loop (libuv, main thread) watches the completion queue's wait
 *   fd; no extra thread, one wake-up per arrival. Needs a wait fd and a libuv host process.
 * - tf_start_progress: a progress thread blocks in fi_cq_sread (or polls with back-off).
 * Either way JS is signalled through the notify pipe and drains with tf_poll. */
int32_t tf_attach_loop(tf_ctx *ctx);
int32_t tf_start_progress(tf_ctx *ctx);
/* Loop mode only: a function the libuv callback calls on the main thread when completions are
 * queued (JS drains at once, no pipe round trip). NULL falls back to the pipe. */
void tf_set_loop_wake(tf_ctx *ctx, void (*wake)(void));
/* Stops completion delivery and closes everything. MRs must be closed first. */
void tf_close(tf_ctx *ctx);

/* The libfabric provider actually in use, e.g. "tcp;ofi_rxm". */
const char *tf_provider_name(tf_ctx *ctx);
/* The domain name actually in use, e.g. "lo". */
const char *tf_domain_name(tf_ctx *ctx);
/* Width in bytes of the immediate data the provider carries with a send or RMA write. */
uint32_t tf_cq_data_size(tf_ctx *ctx);

/* This endpoint's address (opaque bytes to give peers). Returns its length, or a negative error. */
int32_t tf_local_address(tf_ctx *ctx, uint8_t *out, uint32_t out_len);
/* Inserts a peer address; returns its fi_addr (>= 0) or a negative error. */
int64_t tf_av_insert(tf_ctx *ctx, const uint8_t *addr, uint32_t addr_len);
/* Removes a peer from the address vector; ofi_rxm then closes its connection and frees it. */
int32_t tf_av_remove(tf_ctx *ctx, int64_t fi_addr);

/* Memory registration: once per buffer, reused for every operation on it. */
tf_mr *tf_mr_register(tf_ctx *ctx, void *buf, uint64_t len, uint64_t requested_key, char *errbuf,
                      uint32_t errbuf_len);
uint64_t tf_mr_key(tf_mr *mr);
/* What peers add an offset to when they write into this region (virtual address or 0). */
uint64_t tf_mr_remote_base(tf_mr *mr);
void tf_mr_close(tf_mr *mr);

/* Operations. Each returns 0 when posted, -FI_EAGAIN (-11) when the op pool or provider queue is
 * full (retry after completions), or another negative libfabric error. */
int32_t tf_post_recv(tf_ctx *ctx, int64_t peer, tf_mr *mr, uint64_t offset, uint64_t len,
                     uint32_t handler, uint32_t tag);
int32_t tf_send(tf_ctx *ctx, int64_t peer, tf_mr *mr, uint64_t offset, uint64_t len, uint32_t data,
                uint32_t with_data, uint32_t handler, uint32_t tag);
int32_t tf_write(tf_ctx *ctx, int64_t peer, tf_mr *mr, uint64_t offset, uint64_t len,
                 uint64_t remote_addr, uint64_t remote_key, uint32_t data, uint32_t with_data,
                 uint32_t handler, uint32_t tag);

/* Copies up to max queued completions to out; returns how many. When it returns fewer than max,
 * the ring is empty and the next completion writes a wake-up byte to the notify pipe. */
int32_t tf_poll(tf_ctx *ctx, tf_completion *out, uint32_t max);
/* Read end of the wake-up pipe (non-blocking), for the JS event loop. Ownership passes to the
 * caller, who closes it (after tf_close). */
int32_t tf_notify_fd(tf_ctx *ctx);
/* Human-readable text of a (negative or positive) libfabric error code. */
const char *tf_strerror(int32_t err);

#endif
