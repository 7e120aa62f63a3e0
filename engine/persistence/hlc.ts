/**
 * Hybrid logical clock (Kulkarni et al.): timestamps that follow real time closely, never go
 * backwards, and order causally related events. A timestamp packs microseconds since the Unix
 * epoch with a 10-bit logical counter: `(us << 10) | logical`. When the counter would overflow
 * within one microsecond the packed value just keeps incrementing (carrying into the
 * microseconds), so it stays strictly monotonic and at most a few microseconds ahead of real time
 * even at millions of events per second.
 */
import { assert } from '../util/assert.js';

export type Hlc = bigint;

export const HLC_LOGICAL_BITS = 10n;
/** The logical part of a timestamp: `h & HLC_LOGICAL_MASK`. */
export const HLC_LOGICAL_MASK: Hlc = (1n << HLC_LOGICAL_BITS) - 1n;

/** Physical time in whole microseconds since the Unix epoch. */
export type PhysicalClockUs = () => bigint;

/** Re-anchor the fine-grained clock on the wall clock this often, so that it follows NTP steps. */
const REANCHOR_INTERVAL_NS = 1_000_000_000n;

/**
 * Wall-clock microseconds: Date.now() only has millisecond resolution, so it is combined with the
 * monotonic high-resolution clock, re-anchored every second (HLC's monotonicity hides the small
 * jumps a re-anchor can cause).
 */
export function systemClockUs(): PhysicalClockUs {
  let anchorWallUs = BigInt(Date.now()) * 1000n;
  let anchorHr = process.hrtime.bigint();
  return () => {
    const hr = process.hrtime.bigint();
    if (hr - anchorHr >= REANCHOR_INTERVAL_NS) {
      anchorWallUs = BigInt(Date.now()) * 1000n;
      anchorHr = hr;
      return anchorWallUs;
    }
    return anchorWallUs + (hr - anchorHr) / 1000n;
  };
}

export class HybridClock {
  private last: Hlc = 0n;

  constructor(private readonly physicalUs: PhysicalClockUs = systemClockUs()) {}

  /** A timestamp strictly greater than every earlier now() and every observed value, and >= physical time. */
  now(): Hlc {
    const physical = this.physicalUs() << HLC_LOGICAL_BITS;
    const next = physical > this.last ? physical : this.last + 1n;
    this.last = next;
    return next;
  }

  /** Merges a timestamp seen from elsewhere (a message, a log being reopened). */
  observe(ts: Hlc): void {
    if (ts > this.last) this.last = ts;
  }

  /** The largest timestamp handed out or observed so far (0n before any). */
  get current(): Hlc {
    return this.last;
  }
}

/** The first timestamp of a real-time instant (logical counter 0); fractions below 1 us are dropped. */
export function hlcFromMs(ms: number): Hlc {
  assert(Number.isFinite(ms) && ms >= 0, `a time in ms since the epoch is finite and >= 0, not ${ms}`);
  return BigInt(Math.floor(ms * 1000)) << HLC_LOGICAL_BITS;
}

export function hlcPhysicalUs(h: Hlc): bigint {
  return h >> HLC_LOGICAL_BITS;
}

/** Milliseconds since the epoch (with microsecond fractions); the logical part is dropped. */
export function hlcToMs(h: Hlc): number {
  return Number(hlcPhysicalUs(h)) / 1000;
}

/** ISO 8601 UTC with microseconds, e.g. `2026-11-23T10:15:00.250123Z`. */
export function hlcToIso(h: Hlc): string {
  const us = hlcPhysicalUs(h);
  const ms = us / 1000n;
  const iso = new Date(Number(ms)).toISOString(); // ...ss.mmmZ
  const micro = (us % 1000n).toString().padStart(3, '0');
  return `${iso.slice(0, -1)}${micro}Z`;
}
