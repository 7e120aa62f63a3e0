/** EventQueue: the simulators' binary min-heap of events on (time, seq), so ties run in insertion order. */

export class EventQueue<E extends { time: number; seq: number }> {
  private readonly heap: E[] = [];
  private seqNo = 0;

  get size(): number {
    return this.heap.length;
  }

  /** The next insertion number, for an event's seq. */
  nextSeq(): number {
    return this.seqNo++;
  }

  push(ev: E): void {
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i]!, h[p]!)) break;
      swap(h, i, p);
      i = p;
    }
  }

  pop(): E | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length === 0 || last === undefined) return top;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && before(h[l]!, h[m]!)) m = l;
      if (r < h.length && before(h[r]!, h[m]!)) m = r;
      if (m === i) break;
      swap(h, i, m);
      i = m;
    }
    return top;
  }
}

function before(a: { time: number; seq: number }, b: { time: number; seq: number }): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}

function swap<T>(xs: T[], i: number, j: number): void {
  const tmp = xs[i]!;
  xs[i] = xs[j]!;
  xs[j] = tmp;
}
