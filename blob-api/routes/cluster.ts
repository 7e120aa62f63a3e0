/** GET /v1/cluster (the view, members, layout) and GET /healthz (200 while the store answers). */
import type { RequestHandler } from 'express';
import type { BlobContext } from '../context.js';
import { toErrorReply } from '../errors.js';

export function clusterInfo(ctx: BlobContext): RequestHandler {
  return async (_req, res) => {
    res.json(await ctx.store.cluster());
  };
}

export function healthz(ctx: BlobContext): RequestHandler {
  return async (_req, res) => {
    try {
      await ctx.store.cluster();
    } catch (err) {
      // Probes come every few seconds: a failing store is reported by the store's own logs.
      ctx.log.debug({ err }, 'health check failed');
      const r = toErrorReply(err);
      res.status(503).json({ ok: false, error: r.error, message: r.message });
      return;
    }
    res.json({ ok: true });
  };
}
