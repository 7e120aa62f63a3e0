/**
 * The last view a member installed, kept in data_dir (membership-view.json): a configured leader
 * that restarts while the group runs on asks those members first, instead of starting a second
 * group. Each write replaces the file whole (write, then rename), one at a time, in view order.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { Logger } from '../util/log.js';
import type { Contact } from './join-client.js';
import { isMemberInfo, type MemberInfo, type View } from './view.js';

const VIEW_FILE = 'membership-view.json';

export class RememberedView {
  private readonly file: string;
  private writing: Promise<void> = Promise.resolve();

  constructor(data_dir: string, private readonly log: Logger) {
    this.file = path.join(data_dir, VIEW_FILE);
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
      .then(() => writeFile(tmp, JSON.stringify({ vid: view.vid, members: view.members })))
      .then(() => rename(tmp, this.file))
      .catch((err: Error) => this.log.warn({ err: err.message, file: this.file }, 'could not remember the view'));
  }

  /** Resolves once every write asked for has finished. */
  flushed(): Promise<void> {
    return this.writing;
  }
}
