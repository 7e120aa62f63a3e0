/**
 * The last view a member installed, kept in data_dir (membership-view.json): a configured leader
 * that restarts while the group runs on asks those members first, instead of starting a second
 * group, and after a total shutdown the members restart from it (restart.ts). Each write replaces
 * the file whole (write, fsync, rename), one at a time, in view order.
 *
 * Durable subgroups also log here the last ragged trim this member accepted (ragged-trim.json),
 * synchronously and before it is published (DESIGN §6).
 */
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import * as path from 'node:path';
import type { Logger } from '../util/log.js';
import type { Contact } from './join-client.js';
import { isMemberInfo, type MemberInfo, type View } from './view.js';

const VIEW_FILE = 'membership-view.json';
const TRIM_FILE = 'ragged-trim.json';

/** A ragged trim this member accepted: per shard ("subgroup/shard"), messages per sender to deliver in view vid. */
export interface LoggedTrim {
  vid: number;
  ballot: number;
  /** Member ids that stay. */
  keep: number[];
  trim: Record<string, number[]>;
}

/** A remembered view as stored (layout included, so a total restart knows the shards). */
export interface StoredView {
  vid: number;
  members: MemberInfo[];
  layout?: View['layout'];
}

function writeFileDurablySync(file: string, data: string): void {
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

export class RememberedView {
  private readonly file: string;
  private readonly trimFile: string;
  private writing: Promise<void> = Promise.resolve();

  constructor(data_dir: string, private readonly log: Logger) {
    this.file = path.join(data_dir, VIEW_FILE);
    this.trimFile = path.join(data_dir, TRIM_FILE);
  }

  /** The remembered view, or null (first start, empty data dir, unreadable file). */
  async read(): Promise<StoredView | null> {
    try {
      const v = JSON.parse(await readFile(this.file, 'utf8')) as StoredView;
      if (!Number.isSafeInteger(v.vid) || !Array.isArray(v.members) || !v.members.every(isMemberInfo)) return null;
      return v;
    } catch {
      return null;
    }
  }

  /** Logs an accepted ragged trim durably before it is published (blocks: view changes are rare). */
  logTrim(t: LoggedTrim): void {
    writeFileDurablySync(this.trimFile, JSON.stringify(t));
  }

  /** The last ragged trim logged here, or null. */
  async readTrim(): Promise<LoggedTrim | null> {
    try {
      const t = JSON.parse(await readFile(this.trimFile, 'utf8')) as LoggedTrim;
      return Number.isSafeInteger(t.vid) && typeof t.trim === 'object' && t.trim !== null ? t : null;
    } catch {
      return null;
    }
  }

  /** The members of the remembered view other than `selfId` (none on a first start or an empty data dir). */
  async contacts(selfId: number): Promise<Contact[]> {
    try {
      const v = JSON.parse(await readFile(this.file, 'utf8')) as { members?: unknown };
      if (!Array.isArray(v.members)) return [];
      return v.members.filter((m): m is MemberInfo => isMemberInfo(m) && m.id !== selfId).map((m) => ({ ip: m.ip, gms_port: m.gms_port }));
    } catch {
      return []; // no file, or an unreadable one
    }
  }

  remember(view: View): void {
    const tmp = `${this.file}.tmp`;
    this.writing = this.writing
      .then(() => mkdir(path.dirname(this.file), { recursive: true }))
      .then(async () => {
        const fh = await open(tmp, 'w');
        try {
          await fh.writeFile(JSON.stringify({ vid: view.vid, members: view.members, layout: view.layout.subgroups.length > 0 ? view.layout : (view.basis ?? view.layout) }));
          await fh.sync();
        } finally {
          await fh.close();
        }
      })
      .then(() => rename(tmp, this.file))
      .catch((err: Error) => this.log.warn({ err: err.message, file: this.file }, 'could not remember the view'));
  }

  /** Resolves once every write asked for has finished. */
  flushed(): Promise<void> {
    return this.writing;
  }
}
