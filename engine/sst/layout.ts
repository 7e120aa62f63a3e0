/**
 * Row layout of the shared state table. Columns are grouped; each group is framed by a push
 * sequence number at its head and its tail, so a reader can tell a group copied whole from one
 * a concurrent RMA write was still landing in (see table.ts). A push sends one group, or the
 * whole row, as one contiguous RMA write.
 */
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';

/** i64: a safe-integer counter (|v| < 2^53) stored as 64 bits. u8: a flag or small value. */
export type ColumnType = 'i64' | 'u8';

export interface ColumnSpec {
  name: string;
  type: ColumnType;
  /** Elements (e.g. one per member); default 1. */
  count?: number;
  /** Push group; default "main". */
  group?: string;
}

export interface ColumnLayout {
  name: string;
  type: ColumnType;
  count: number;
  group: number;
  /** Byte offset within the row. */
  offset: number;
}

export interface GroupLayout {
  name: string;
  index: number;
  /** Byte offset of the head sequence number within the row. */
  offset: number;
  /** Bytes including the head and tail sequence numbers. */
  length: number;
}

const SEQ_BYTES = 8;

function align8(n: number): number {
  return (n + 7) & ~7;
}

export class RowLayout {
  readonly columns = new Map<string, ColumnLayout>();
  readonly groups: GroupLayout[] = [];
  readonly rowBytes: number;

  constructor(specs: ColumnSpec[]) {
    const byGroup = new Map<string, ColumnSpec[]>();
    for (const s of specs) {
      if (this.columns.has(s.name) || [...byGroup.values()].some((g) => g.some((c) => c.name === s.name))) {
        throw new TempestError('ERR_SST_COLUMN', `column "${s.name}" is declared twice`);
      }
      const count = s.count ?? 1;
      if (!Number.isInteger(count) || count < 1) throw new TempestError('ERR_SST_COLUMN', `column "${s.name}" needs a count >= 1`);
      const g = s.group ?? 'main';
      if (!byGroup.has(g)) byGroup.set(g, []);
      byGroup.get(g)!.push(s);
    }
    assert(byGroup.size <= 255, 'at most 255 push groups (index 255 means the whole row)');
    let offset = 0;
    for (const [name, cols] of byGroup) {
      const start = offset;
      offset += SEQ_BYTES;
      // 64-bit columns first keeps them 8-byte aligned.
      const ordered = [...cols.filter((c) => c.type === 'i64'), ...cols.filter((c) => c.type === 'u8')];
      for (const c of ordered) {
        const count = c.count ?? 1;
        this.columns.set(c.name, { name: c.name, type: c.type, count, group: this.groups.length, offset });
        offset += count * (c.type === 'i64' ? 8 : 1);
      }
      offset = align8(offset);
      offset += SEQ_BYTES;
      this.groups.push({ name, index: this.groups.length, offset: start, length: offset - start });
    }
    this.rowBytes = offset;
  }

  column(name: string): ColumnLayout {
    const c = this.columns.get(name);
    if (c === undefined) throw new TempestError('ERR_SST_COLUMN', `no SST column "${name}"`);
    return c;
  }

  group(name: string): GroupLayout {
    const g = this.groups.find((x) => x.name === name);
    if (g === undefined) throw new TempestError('ERR_SST_COLUMN', `no SST push group "${name}"`);
    return g;
  }
}
