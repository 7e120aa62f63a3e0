/** The one reply a benchmark sender waits for (a stream's ack or a ping-pong echo). */
export class ReplyLatch {
  private waiter: (() => void) | null = null;

  /** Resolves at the next fire(). */
  wait(): Promise<void> {
    return new Promise((resolve) => (this.waiter = resolve));
  }

  /** Resolves the waiting sender, if any; false when nobody waits (so this is not a reply). */
  fire(): boolean {
    const w = this.waiter;
    if (w === null) return false;
    this.waiter = null;
    w();
    return true;
  }
}
