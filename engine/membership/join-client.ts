/**
 * Asking to be admitted to a group (DESIGN §6): a join request to any member on its gms_port,
 * following redirects to the leader, until the leader answers with the view that admits us (and
 * where to fetch the state of our shards) or the deadline passes. Each attempt is bounded: a
 * leader that fails or loses its majority while holding our request never answers it, and the
 * next attempt reaches whoever leads then.
 */
import { TempestError } from '../util/errors.js';
import { controlRequest } from './control.js';
import type { MemberInfo, View } from './view.js';

export interface Contact {
  ip: string;
  gms_port: number;
}

/** The leader's answer: the view that admits us and, per shard new to us, who sends its state. */
export interface Welcome {
  view: View;
  fetches: { subgroup: number; shard: number; source: number }[];
  /** After a total restart: shards whose state we send to the others (we hold the longest log). */
  offers: { subgroup: number; shard: number }[];
  /** The first view after a total shutdown (installed by all of its members, or by none). */
  restart: boolean;
}

const JOIN_RETRY_MS = 200;
const MAX_REDIRECTS = 8;

export async function requestAdmission(opts: {
  self: MemberInfo;
  contacts: readonly Contact[];
  deadline_ms: number;
  /** Longest one attempt waits for the leader's answer. */
  attempt_ms: number;
  /** Stops trying (the member is closing). */
  stopped: () => boolean;
  /** What we hold from before a shutdown, for a leader restarting the group (restart-plan.ts). */
  restart?: { vid: number; versions: Record<string, string> };
}): Promise<Welcome> {
  let lastError = 'no attempt';
  let i = 0;
  while (Date.now() < opts.deadline_ms && !opts.stopped()) {
    let target = opts.contacts[i++ % opts.contacts.length]!;
    for (let hop = 0; hop < MAX_REDIRECTS && Date.now() < opts.deadline_ms; hop++) {
      let answer: Record<string, unknown>;
      try {
        answer = await controlRequest(target.ip, target.gms_port, { type: 'join', member: opts.self, restart: opts.restart }, Math.max(100, Math.min(opts.deadline_ms - Date.now(), opts.attempt_ms)));
      } catch (err) {
        lastError = `${target.ip}:${target.gms_port}: ${(err as Error).message}`;
        break;
      }
      if (answer.type === 'redirect') {
        target = answer.leader as Contact;
        continue;
      }
      if (answer.type === 'welcome') return { view: answer.view as View, fetches: (answer.fetches as Welcome['fetches']) ?? [], offers: (answer.offers as Welcome['offers']) ?? [], restart: answer.restart === true };
      lastError = `${target.ip}:${target.gms_port}: ${String(answer.reason ?? answer.type)}`;
      break;
    }
    if (opts.stopped()) break;
    await new Promise((r) => setTimeout(r, JOIN_RETRY_MS));
  }
  throw new TempestError('ERR_MEMBERSHIP_JOIN', `member ${opts.self.id} was not admitted to the group: ${lastError}`);
}
