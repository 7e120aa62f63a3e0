/**
 * The body of an upload as the store takes it: the request's (or a form part's) chunks as they
 * arrive, counted for /metrics, never gathered.
 *
 * The source is iterated with destroyOnReturn false: when the store stops early (a limit, a
 * checksum, the group gone) the request must stay alive so that its 413/400/503 can still be
 * sent; the error handler then reads and drops a bounded rest before closing (error-handler.ts). A client that
 * goes away mid-body destroys the source, so the iteration (and with it the store's put) fails at
 * once rather than waiting for bytes that will never come.
 */
import type { Readable } from 'node:stream';

export async function* countedChunks(source: Readable, onBytes: (n: number) => void): AsyncGenerator<Buffer> {
  for await (const chunk of source.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    onBytes(chunk.length);
    yield chunk;
  }
}
