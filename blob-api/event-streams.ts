/**
 * The open watch streams of an app. An SSE response never ends by itself, so server.close() would
 * wait for its clients forever; the server ends them through this list instead.
 */
export class EventStreams {
  private readonly open = new Set<() => void>();

  /** Remembers how to end one stream; returns the function that forgets it. */
  add(end: () => void): () => void {
    this.open.add(end);
    return () => this.open.delete(end);
  }

  /** Ends every open stream (server shutdown). */
  endAll(): void {
    for (const end of [...this.open]) end();
    this.open.clear();
  }
}
