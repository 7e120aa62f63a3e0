/**
 * Bytes given whole or in pieces (a header and a borrowed body, a batch's framing around its
 * updates), for the layers that copy them once into their own buffer instead of gathering them
 * first.
 */

export type Pieces = Uint8Array | readonly Uint8Array[];

/** Bytes in `p`. */
export function piecesLength(p: Pieces): number {
  if (p instanceof Uint8Array) return p.length;
  let n = 0;
  for (const x of p) n += x.length;
  return n;
}

/** Copies `p` into `dst` at `at`, in order; returns where the copy ends. */
export function copyPieces(dst: Uint8Array, at: number, p: Pieces): number {
  if (p instanceof Uint8Array) {
    dst.set(p, at);
    return at + p.length;
  }
  for (const x of p) {
    dst.set(x, at);
    at += x.length;
  }
  return at;
}
