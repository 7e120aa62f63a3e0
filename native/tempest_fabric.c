/* Tempest libfabric shim: see tempest_fabric.h for the contract. */
#define _GNU_SOURCE
#include "tempest_fabric.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

/*
 * libuv, as exported by the node executable this library is loaded into. Declared here rather than
 * taken from uv.h so the build needs no Node headers; these calls and constants are stable across
 * libuv 1.x. Handles are allocated with uv_handle_size, so their layout is never assumed.
 */
typedef void uv_loop_t;
typedef void uv_poll_t;
typedef void uv_handle_t;
typedef void (*uv_poll_cb)(uv_poll_t *handle, int status, int events);
typedef void (*uv_close_cb)(uv_handle_t *handle);
extern uv_loop_t *uv_default_loop(void) __attribute__((weak));
extern size_t uv_handle_size(int type) __attribute__((weak));
extern int uv_poll_init(uv_loop_t *loop, uv_poll_t *handle, int fd) __attribute__((weak));
extern int uv_poll_start(uv_poll_t *handle, int events, uv_poll_cb cb) __attribute__((weak));
extern int uv_poll_stop(uv_poll_t *handle) __attribute__((weak));
extern void uv_close(uv_handle_t *handle, uv_close_cb cb) __attribute__((weak));
extern void *uv_handle_get_data(const uv_handle_t *handle) __attribute__((weak));
extern void uv_handle_set_data(uv_handle_t *handle, void *data) __attribute__((weak));
#define TF_UV_POLL 8 /* UV_POLL in uv_handle_type */
#define TF_UV_READABLE 1

#define TF_FI_VERSION FI_VERSION(1, 14)
#define TF_CQ_BATCH 64
#define TF_SREAD_TIMEOUT_MS 200

/* One posted operation. The fi_context2 must be first: libfabric hands back its address. */
typedef struct tf_op {
  struct fi_context2 fctx;
  uint32_t handler;
  uint32_t tag;
  uint32_t kind;
  int32_t next_free;
} tf_op;

struct tf_mr {
  tf_ctx *ctx;
  char *base;
  uint64_t len;
  struct fid_mr *mr;
  void *desc;
  uint64_t key;
  uint64_t remote_base;
};

struct tf_ctx {
  struct fi_info *info;
  struct fid_fabric *fabric;
  struct fid_domain *domain;
  struct fid_av *av;
  struct fid_cq *cq;
  struct fid_ep *ep;
  int cq_waitable; /* fi_cq_sread works; otherwise poll with back-off */

  /* Bounded pool of operation contexts: bounds the work in flight, no allocation per op. */
  pthread_mutex_t op_lock;
  tf_op *ops;
  uint32_t op_count;
  int32_t op_free_head;

  /* Completion ring handed to JS. */
  pthread_mutex_t ring_lock;
  pthread_cond_t ring_space;
  tf_completion *ring;
  uint32_t ring_capacity;
  uint64_t ring_head; /* next to read (JS) */
  uint64_t ring_tail; /* next to write (progress thread) */
  int armed;          /* JS found the ring empty and waits for a wake-up byte */
  int notify_rd;
  int notify_wr;
  int notify_rd_given; /* the read end belongs to the caller once tf_notify_fd handed it out */

  pthread_t progress_thread;
  atomic_int running;
  int thread_started;

  /* Loop mode: the CQ's wait fd is watched by libuv on Node's main thread (no progress thread). */
  int cq_wait_fd;
  uv_poll_t *uv_poll;
  /* Loop mode: JS function (registered with koffi) run on the main thread when completions are
   * queued, instead of a pipe byte and another loop turn. */
  void (*loop_wake)(void);
};

static void set_err(char *errbuf, uint32_t errbuf_len, const char *what, int err) {
  if (errbuf == NULL || errbuf_len == 0) return;
  snprintf(errbuf, errbuf_len, "%s: %s (%d)", what, fi_strerror(err < 0 ? -err : err), err);
}

const char *tf_strerror(int32_t err) { return fi_strerror(err < 0 ? -err : err); }

static tf_op *op_acquire(tf_ctx *ctx, uint32_t kind, uint32_t handler, uint32_t tag) {
  pthread_mutex_lock(&ctx->op_lock);
  int32_t i = ctx->op_free_head;
  tf_op *op = NULL;
  if (i >= 0) {
    op = &ctx->ops[i];
    ctx->op_free_head = op->next_free;
  }
  pthread_mutex_unlock(&ctx->op_lock);
  if (op != NULL) {
    op->kind = kind;
    op->handler = handler;
    op->tag = tag;
    op->next_free = -1;
  }
  return op;
}

static void op_release(tf_ctx *ctx, tf_op *op) {
  pthread_mutex_lock(&ctx->op_lock);
  op->next_free = ctx->op_free_head;
  ctx->op_free_head = (int32_t)(op - ctx->ops);
  pthread_mutex_unlock(&ctx->op_lock);
}

static int op_valid(tf_ctx *ctx, void *p) {
  tf_op *op = (tf_op *)p;
  return op >= ctx->ops && op < ctx->ops + ctx->op_count;
}

/* Appends completions to the ring, waiting for space (JS drains it), and wakes JS if it asked. */
static void ring_push(tf_ctx *ctx, const tf_completion *recs, uint32_t n) {
  int wake = 0;
  pthread_mutex_lock(&ctx->ring_lock);
  for (uint32_t i = 0; i < n; i++) {
    while (ctx->ring_tail - ctx->ring_head >= ctx->ring_capacity && atomic_load(&ctx->running)) {
      /* Ring full: make sure JS is awake, then wait for it to drain. */
      if (ctx->armed) {
        ctx->armed = 0;
        ssize_t w = write(ctx->notify_wr, "!", 1);
        (void)w;
      }
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_nsec += 50 * 1000 * 1000;
      if (until.tv_nsec >= 1000000000L) {
        until.tv_sec += 1;
        until.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&ctx->ring_space, &ctx->ring_lock, &until);
    }
    if (!atomic_load(&ctx->running)) break;
    ctx->ring[ctx->ring_tail % ctx->ring_capacity] = recs[i];
    ctx->ring_tail++;
  }
  if (ctx->armed && ctx->ring_tail != ctx->ring_head && ctx->loop_wake == NULL) {
    ctx->armed = 0;
    wake = 1;
  }
  pthread_mutex_unlock(&ctx->ring_lock);
  if (wake) {
    ssize_t w = write(ctx->notify_wr, "!", 1); /* EAGAIN: a byte is already pending; fine */
    (void)w;
  }
}

static void convert_entry(tf_ctx *ctx, const struct fi_cq_data_entry *e, tf_completion *out) {
  memset(out, 0, sizeof(*out));
  if ((e->flags & FI_REMOTE_WRITE) && !(e->flags & FI_RECV)) {
    out->kind = TF_COMP_REMOTE_WRITE;
    out->len = e->len;
    out->data = (uint32_t)e->data;
    return;
  }
  if (!op_valid(ctx, e->op_context)) {
    out->kind = TF_COMP_ERROR;
    out->err = -FI_EOTHER;
    return;
  }
  tf_op *op = (tf_op *)e->op_context;
  out->handler = op->handler;
  out->tag = op->tag;
  out->kind = op->kind;
  if (op->kind == TF_COMP_RECV) {
    out->len = e->len;
    if (e->flags & FI_REMOTE_CQ_DATA) out->data = (uint32_t)e->data;
  }
  op_release(ctx, op);
}

static void report_cq_error(tf_ctx *ctx) {
  struct fi_cq_err_entry err;
  memset(&err, 0, sizeof(err));
  ssize_t r = fi_cq_readerr(ctx->cq, &err, 0);
  if (r < 0) return;
  tf_completion rec;
  memset(&rec, 0, sizeof(rec));
  rec.kind = TF_COMP_ERROR;
  rec.err = -(int32_t)(err.err != 0 ? err.err : FI_EOTHER);
  if (op_valid(ctx, err.op_context)) {
    tf_op *op = (tf_op *)err.op_context;
    rec.handler = op->handler;
    rec.tag = op->tag;
    rec.op_kind = op->kind;
    op_release(ctx, op);
  }
  ring_push(ctx, &rec, 1);
}

static void *progress_main(void *arg) {
  tf_ctx *ctx = (tf_ctx *)arg;
  struct fi_cq_data_entry entries[TF_CQ_BATCH];
  tf_completion recs[TF_CQ_BATCH];
  uint32_t idle_polls = 0;
  while (atomic_load(&ctx->running)) {
    ssize_t n;
    if (ctx->cq_waitable) {
      n = fi_cq_sread(ctx->cq, entries, TF_CQ_BATCH, NULL, TF_SREAD_TIMEOUT_MS);
    } else {
      n = fi_cq_read(ctx->cq, entries, TF_CQ_BATCH);
    }
    if (n > 0) {
      idle_polls = 0;
      for (ssize_t i = 0; i < n; i++) convert_entry(ctx, &entries[i], &recs[i]);
      ring_push(ctx, recs, (uint32_t)n);
    } else if (n == -FI_EAVAIL) {
      report_cq_error(ctx);
    } else if (!ctx->cq_waitable || (n != -FI_EAGAIN && n != -FI_ETIMEDOUT && n != -FI_ECANCELED)) {
      /* No wait object (or an unexpected error): back off from 2 us up to 1 ms, never spin. */
      uint32_t us = idle_polls < 10 ? 2u << idle_polls : 1000;
      if (us > 1000) us = 1000;
      idle_polls++;
      struct timespec ts = {0, (long)us * 1000L};
      nanosleep(&ts, NULL);
    }
  }
  return NULL;
}

static const char *nonempty(const char *s) { return (s != NULL && s[0] != '\0') ? s : NULL; }

tf_ctx *tf_open(const char *provider, const char *domain, const char *node, const char *service,
                uint32_t tx_depth, uint32_t rx_depth, uint32_t ring_capacity, char *errbuf,
                uint32_t errbuf_len) {
  if (errbuf && errbuf_len) errbuf[0] = '\0';
  if (tx_depth == 0 || rx_depth == 0 || ring_capacity == 0) {
    set_err(errbuf, errbuf_len, "tf_open: depths and ring capacity must be > 0", -FI_EINVAL);
    return NULL;
  }
  tf_ctx *ctx = calloc(1, sizeof(*ctx));
  if (ctx == NULL) return NULL;
  ctx->notify_rd = ctx->notify_wr = -1;
  pthread_mutex_init(&ctx->op_lock, NULL);
  pthread_mutex_init(&ctx->ring_lock, NULL);
  pthread_cond_init(&ctx->ring_space, NULL);

  struct fi_info *hints = fi_allocinfo();
  if (hints == NULL) goto fail_nomem;
  hints->ep_attr->type = FI_EP_RDM;
  hints->caps = FI_MSG | FI_RMA;
  hints->mode = FI_CONTEXT | FI_CONTEXT2;
  hints->addr_format = FI_FORMAT_UNSPEC;
  hints->domain_attr->threading = FI_THREAD_SAFE;
  hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
  hints->domain_attr->av_type = FI_AV_TABLE;
  /* Ordering the protocols rely on: sends in order, writes in order, and a send after a write
   * (a notification after the data it announces). */
  hints->tx_attr->msg_order = FI_ORDER_SAS | FI_ORDER_WAW | FI_ORDER_SAW | FI_ORDER_WAS;
  hints->rx_attr->msg_order = FI_ORDER_SAS | FI_ORDER_WAW | FI_ORDER_SAW | FI_ORDER_WAS;
  hints->fabric_attr->prov_name = strdup(provider);
  if (nonempty(domain)) hints->domain_attr->name = strdup(domain);

  int rc = fi_getinfo(TF_FI_VERSION, nonempty(node), nonempty(service), FI_SOURCE, hints, &ctx->info);
  fi_freeinfo(hints);
  if (rc != 0 || ctx->info == NULL) {
    char what[256];
    snprintf(what, sizeof what, "no libfabric provider \"%s\"%s%s offers reliable datagrams with RMA at %s:%s",
             provider, nonempty(domain) ? " on domain " : "", nonempty(domain) ? domain : "",
             node ? node : "*", service ? service : "*");
    set_err(errbuf, errbuf_len, what, rc != 0 ? rc : -FI_ENODATA);
    goto fail;
  }
  struct fi_info *info = ctx->info;
  if (info->tx_attr->size > tx_depth) info->tx_attr->size = tx_depth;
  if (info->rx_attr->size > rx_depth) info->rx_attr->size = rx_depth;

  rc = fi_fabric(info->fabric_attr, &ctx->fabric, NULL);
  if (rc) { set_err(errbuf, errbuf_len, "fi_fabric", rc); goto fail; }
  rc = fi_domain(ctx->fabric, info, &ctx->domain, NULL);
  if (rc) { set_err(errbuf, errbuf_len, "fi_domain", rc); goto fail; }

  struct fi_av_attr av_attr = {0};
  av_attr.type = FI_AV_TABLE;
  rc = fi_av_open(ctx->domain, &av_attr, &ctx->av, NULL);
  if (rc) { set_err(errbuf, errbuf_len, "fi_av_open", rc); goto fail; }

  struct fi_cq_attr cq_attr = {0};
  cq_attr.format = FI_CQ_FORMAT_DATA;
  cq_attr.size = (size_t)tx_depth + rx_depth + 64;
  cq_attr.wait_cond = FI_CQ_COND_NONE;
  /* Prefer a wait fd (Node's loop can watch it), then any wait object (for the progress thread's
   * fi_cq_sread), then none (the progress thread polls with back-off). */
  const enum fi_wait_obj waits[] = {FI_WAIT_FD, FI_WAIT_UNSPEC, FI_WAIT_NONE};
  ctx->cq_wait_fd = -1;
  rc = -FI_ENOSYS;
  for (int w = 0; w < 3 && rc != 0; w++) {
    cq_attr.wait_obj = waits[w];
    rc = fi_cq_open(ctx->domain, &cq_attr, &ctx->cq, NULL);
    if (rc == 0) {
      ctx->cq_waitable = waits[w] != FI_WAIT_NONE;
      if (waits[w] == FI_WAIT_FD && fi_control(&ctx->cq->fid, FI_GETWAIT, &ctx->cq_wait_fd) != 0) ctx->cq_wait_fd = -1;
    }
  }
  if (rc) { set_err(errbuf, errbuf_len, "fi_cq_open", rc); goto fail; }

  rc = fi_endpoint(ctx->domain, info, &ctx->ep, NULL);
  if (rc) { set_err(errbuf, errbuf_len, "fi_endpoint", rc); goto fail; }
  rc = fi_ep_bind(ctx->ep, &ctx->av->fid, 0);
  if (rc) { set_err(errbuf, errbuf_len, "fi_ep_bind(av)", rc); goto fail; }
  rc = fi_ep_bind(ctx->ep, &ctx->cq->fid, FI_TRANSMIT | FI_RECV);
  if (rc) { set_err(errbuf, errbuf_len, "fi_ep_bind(cq)", rc); goto fail; }
  rc = fi_enable(ctx->ep);
  if (rc) { set_err(errbuf, errbuf_len, "fi_enable (is the port in use?)", rc); goto fail; }

  ctx->op_count = tx_depth + rx_depth;
  ctx->ops = calloc(ctx->op_count, sizeof(tf_op));
  if (ctx->ops == NULL) goto fail_nomem;
  for (uint32_t i = 0; i < ctx->op_count; i++) ctx->ops[i].next_free = (i + 1 < ctx->op_count) ? (int32_t)(i + 1) : -1;
  ctx->op_free_head = 0;

  ctx->ring_capacity = ring_capacity;
  ctx->ring = calloc(ring_capacity, sizeof(tf_completion));
  if (ctx->ring == NULL) goto fail_nomem;
  ctx->armed = 1;

  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    set_err(errbuf, errbuf_len, "pipe2", -errno);
    goto fail;
  }
  ctx->notify_rd = fds[0];
  ctx->notify_wr = fds[1];

  return ctx;

fail_nomem:
  set_err(errbuf, errbuf_len, "out of memory", -FI_ENOMEM);
fail:
  tf_close(ctx);
  return NULL;
}

int32_t tf_start_progress(tf_ctx *ctx) {
  if (ctx->thread_started || ctx->uv_poll != NULL) return -FI_EALREADY;
  atomic_store(&ctx->running, 1);
  if (pthread_create(&ctx->progress_thread, NULL, progress_main, ctx) != 0) {
    atomic_store(&ctx->running, 0);
    return -FI_ENOMEM;
  }
  ctx->thread_started = 1;
  return 0;
}

/* Loop mode: reads the CQ into the ring without ever waiting (this is Node's main thread), then
 * re-arms the wait fd with fi_trywait. Stops early when the ring is full; JS drains it and calls
 * again through tf_poll. */
static void loop_progress(tf_ctx *ctx) {
  struct fi_cq_data_entry entries[TF_CQ_BATCH];
  tf_completion recs[TF_CQ_BATCH];
  for (int round = 0; round < 64; round++) {
    pthread_mutex_lock(&ctx->ring_lock);
    uint64_t space = ctx->ring_capacity - (ctx->ring_tail - ctx->ring_head);
    pthread_mutex_unlock(&ctx->ring_lock);
    if (space == 0) return;
    ssize_t n = fi_cq_read(ctx->cq, entries, space < TF_CQ_BATCH ? space : TF_CQ_BATCH);
    if (n > 0) {
      for (ssize_t i = 0; i < n; i++) convert_entry(ctx, &entries[i], &recs[i]);
      ring_push(ctx, recs, (uint32_t)n);
      continue;
    }
    if (n == -FI_EAVAIL) {
      report_cq_error(ctx);
      continue;
    }
    struct fid *fids[1] = {&ctx->cq->fid};
    if (fi_trywait(ctx->fabric, fids, 1) == -FI_EAGAIN) continue; /* more arrived meanwhile */
    return;
  }
}

static void on_cq_readable(uv_poll_t *handle, int status, int events) {
  (void)status;
  (void)events;
  tf_ctx *ctx = (tf_ctx *)uv_handle_get_data(handle);
  if (ctx == NULL) return;
  loop_progress(ctx);
  if (ctx->loop_wake == NULL) return;
  pthread_mutex_lock(&ctx->ring_lock);
  int pending = ctx->ring_tail != ctx->ring_head;
  if (pending) ctx->armed = 0; /* JS drains now; no pipe byte needed */
  pthread_mutex_unlock(&ctx->ring_lock);
  if (pending) ctx->loop_wake();
}

void tf_set_loop_wake(tf_ctx *ctx, void (*wake)(void)) { ctx->loop_wake = wake; }

static void free_uv_handle(uv_handle_t *handle) { free(handle); }

int32_t tf_attach_loop(tf_ctx *ctx) {
  if (uv_default_loop == NULL || uv_handle_size == NULL || uv_poll_init == NULL || uv_poll_start == NULL ||
      uv_poll_stop == NULL || uv_close == NULL || uv_handle_get_data == NULL || uv_handle_set_data == NULL) {
    return -FI_ENOSYS; /* not loaded into a libuv process */
  }
  if (ctx->cq_wait_fd < 0 || ctx->thread_started || ctx->uv_poll != NULL) return -FI_ENOSYS;
  uv_poll_t *h = calloc(1, uv_handle_size(TF_UV_POLL));
  if (h == NULL) return -FI_ENOMEM;
  if (uv_poll_init(uv_default_loop(), h, ctx->cq_wait_fd) != 0) {
    free(h);
    return -FI_EOTHER;
  }
  uv_handle_set_data(h, ctx);
  ctx->uv_poll = h;
  atomic_store(&ctx->running, 1);
  loop_progress(ctx);
  if (uv_poll_start(h, TF_UV_READABLE, on_cq_readable) != 0) {
    uv_handle_set_data(h, NULL);
    uv_close(h, free_uv_handle);
    ctx->uv_poll = NULL;
    atomic_store(&ctx->running, 0);
    return -FI_EOTHER;
  }
  return 0;
}

void tf_close(tf_ctx *ctx) {
  if (ctx == NULL) return;
  atomic_store(&ctx->running, 0);
  if (ctx->uv_poll != NULL) {
    /* libuv frees the handle on a later loop turn; it no longer points at ctx. */
    uv_poll_stop(ctx->uv_poll);
    uv_handle_set_data(ctx->uv_poll, NULL);
    uv_close(ctx->uv_poll, free_uv_handle);
    ctx->uv_poll = NULL;
  }
  if (ctx->thread_started) {
    atomic_store(&ctx->running, 0);
    pthread_mutex_lock(&ctx->ring_lock);
    pthread_cond_broadcast(&ctx->ring_space);
    pthread_mutex_unlock(&ctx->ring_lock);
    if (ctx->cq_waitable) fi_cq_signal(ctx->cq);
    pthread_join(ctx->progress_thread, NULL);
  }
  if (ctx->ep) fi_close(&ctx->ep->fid);
  if (ctx->av) fi_close(&ctx->av->fid);
  if (ctx->cq) fi_close(&ctx->cq->fid);
  if (ctx->domain) fi_close(&ctx->domain->fid);
  if (ctx->fabric) fi_close(&ctx->fabric->fid);
  if (ctx->info) fi_freeinfo(ctx->info);
  if (ctx->notify_rd >= 0 && !ctx->notify_rd_given) close(ctx->notify_rd);
  if (ctx->notify_wr >= 0) close(ctx->notify_wr);
  free(ctx->ops);
  free(ctx->ring);
  pthread_mutex_destroy(&ctx->op_lock);
  pthread_mutex_destroy(&ctx->ring_lock);
  pthread_cond_destroy(&ctx->ring_space);
  free(ctx);
}

const char *tf_provider_name(tf_ctx *ctx) { return ctx->info->fabric_attr->prov_name; }
const char *tf_domain_name(tf_ctx *ctx) { return ctx->info->domain_attr->name; }
uint32_t tf_cq_data_size(tf_ctx *ctx) { return (uint32_t)ctx->info->domain_attr->cq_data_size; }

int32_t tf_local_address(tf_ctx *ctx, uint8_t *out, uint32_t out_len) {
  size_t len = out_len;
  int rc = fi_getname(&ctx->ep->fid, out, &len);
  if (rc) return rc;
  return (int32_t)len;
}

int64_t tf_av_insert(tf_ctx *ctx, const uint8_t *addr, uint32_t addr_len) {
  (void)addr_len;
  fi_addr_t fa = FI_ADDR_UNSPEC;
  int n = fi_av_insert(ctx->av, addr, 1, &fa, 0, NULL);
  if (n != 1) return n < 0 ? n : -FI_EINVAL;
  return (int64_t)fa;
}

int32_t tf_av_remove(tf_ctx *ctx, int64_t fi_addr) {
  fi_addr_t fa = (fi_addr_t)fi_addr;
  return fi_av_remove(ctx->av, &fa, 1, 0);
}

tf_mr *tf_mr_register(tf_ctx *ctx, void *buf, uint64_t len, uint64_t requested_key, char *errbuf,
                      uint32_t errbuf_len) {
  tf_mr *m = calloc(1, sizeof(*m));
  if (m == NULL) return NULL;
  m->ctx = ctx;
  m->base = (char *)buf;
  m->len = len;
  uint64_t access = FI_SEND | FI_RECV | FI_WRITE | FI_READ | FI_REMOTE_WRITE | FI_REMOTE_READ;
  int rc = fi_mr_reg(ctx->domain, buf, len, access, 0, requested_key, 0, &m->mr, NULL);
  if (rc) {
    set_err(errbuf, errbuf_len, "fi_mr_reg", rc);
    free(m);
    return NULL;
  }
  int mode = ctx->info->domain_attr->mr_mode;
  if (mode & FI_MR_ENDPOINT) {
    rc = fi_mr_bind(m->mr, &ctx->ep->fid, 0);
    if (rc == 0) rc = fi_mr_enable(m->mr);
    if (rc) {
      set_err(errbuf, errbuf_len, "fi_mr_bind", rc);
      fi_close(&m->mr->fid);
      free(m);
      return NULL;
    }
  }
  m->desc = fi_mr_desc(m->mr);
  m->key = fi_mr_key(m->mr);
  m->remote_base = (mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)buf : 0;
  return m;
}

uint64_t tf_mr_key(tf_mr *mr) { return mr->key; }
uint64_t tf_mr_remote_base(tf_mr *mr) { return mr->remote_base; }

void tf_mr_close(tf_mr *mr) {
  if (mr == NULL) return;
  fi_close(&mr->mr->fid);
  free(mr);
}

/* Operations address a registered region by offset; a range outside it is refused, never sent. */
static void *mr_range(tf_mr *mr, uint64_t offset, uint64_t len) {
  if (mr == NULL || offset > mr->len || len > mr->len - offset) return NULL;
  return mr->base + offset;
}

int32_t tf_post_recv(tf_ctx *ctx, int64_t peer, tf_mr *mr, uint64_t offset, uint64_t len,
                     uint32_t handler, uint32_t tag) {
  void *buf = mr_range(mr, offset, len);
  if (buf == NULL) return -FI_EINVAL;
  tf_op *op = op_acquire(ctx, TF_COMP_RECV, handler, tag);
  if (op == NULL) return -FI_EAGAIN;
  ssize_t rc = fi_recv(ctx->ep, buf, len, mr->desc, peer < 0 ? FI_ADDR_UNSPEC : (fi_addr_t)peer, &op->fctx);
  if (rc) op_release(ctx, op);
  return (int32_t)rc;
}

int32_t tf_send(tf_ctx *ctx, int64_t peer, tf_mr *mr, uint64_t offset, uint64_t len, uint32_t data,
                uint32_t with_data, uint32_t handler, uint32_t tag) {
  void *buf = mr_range(mr, offset, len);
  if (buf == NULL) return -FI_EINVAL;
  tf_op *op = op_acquire(ctx, TF_COMP_SEND, handler, tag);
  if (op == NULL) return -FI_EAGAIN;
  ssize_t rc = with_data ? fi_senddata(ctx->ep, buf, len, mr->desc, data, (fi_addr_t)peer, &op->fctx)
                         : fi_send(ctx->ep, buf, len, mr->desc, (fi_addr_t)peer, &op->fctx);
  if (rc) op_release(ctx, op);
  return (int32_t)rc;
}

int32_t tf_write(tf_ctx *ctx, int64_t peer, tf_mr *mr, uint64_t offset, uint64_t len,
                 uint64_t remote_addr, uint64_t remote_key, uint32_t data, uint32_t with_data,
                 uint32_t handler, uint32_t tag) {
  void *buf = mr_range(mr, offset, len);
  if (buf == NULL) return -FI_EINVAL;
  tf_op *op = op_acquire(ctx, TF_COMP_WRITE, handler, tag);
  if (op == NULL) return -FI_EAGAIN;
  ssize_t rc = with_data ? fi_writedata(ctx->ep, buf, len, mr->desc, data, (fi_addr_t)peer, remote_addr,
                                        remote_key, &op->fctx)
                         : fi_write(ctx->ep, buf, len, mr->desc, (fi_addr_t)peer, remote_addr, remote_key, &op->fctx);
  if (rc) op_release(ctx, op);
  return (int32_t)rc;
}

int32_t tf_poll(tf_ctx *ctx, tf_completion *out, uint32_t max) {
  if (ctx->uv_poll != NULL) loop_progress(ctx);
  uint32_t n = 0;
  pthread_mutex_lock(&ctx->ring_lock);
  while (n < max && ctx->ring_head != ctx->ring_tail) {
    out[n++] = ctx->ring[ctx->ring_head % ctx->ring_capacity];
    ctx->ring_head++;
  }
  if (ctx->ring_head == ctx->ring_tail) ctx->armed = 1;
  if (n > 0) pthread_cond_signal(&ctx->ring_space);
  pthread_mutex_unlock(&ctx->ring_lock);
  return (int32_t)n;
}

int32_t tf_notify_fd(tf_ctx *ctx) {
  ctx->notify_rd_given = 1;
  return ctx->notify_rd;
}
