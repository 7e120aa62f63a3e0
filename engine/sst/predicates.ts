/**
 * Predicates over the table and their triggers (Derecho's SST predicates). Evaluated whenever a
 * row changes, never by polling. Because columns only grow, a monotone predicate that became true
 * stays true; `once` predicates fire exactly once, `transition` ones on each false -> true edge,
 * `recurrent` ones on every evaluation that finds them true.
 */
export type PredicateKind = 'once' | 'recurrent' | 'transition';

export interface PredicateSpec<T> {
  name: string;
  kind: PredicateKind;
  test: (table: T) => boolean;
  trigger: (table: T) => void;
}

interface Entry<T> extends PredicateSpec<T> {
  id: number;
  wasTrue: boolean;
}

export interface PredicateHandle {
  remove(): void;
}

export class PredicateSet<T> {
  private entries: Entry<T>[] = [];
  private nextId = 1;
  /** Evaluations run (for tests and metrics). */
  evaluations = 0;

  add(spec: PredicateSpec<T>): PredicateHandle {
    const entry: Entry<T> = { ...spec, id: this.nextId++, wasTrue: false };
    this.entries.push(entry);
    return { remove: () => this.remove(entry.id) };
  }

  private remove(id: number): void {
    this.entries = this.entries.filter((e) => e.id !== id);
  }

  get size(): number {
    return this.entries.length;
  }

  /** Runs every predicate once against `table`, firing triggers in registration order. */
  evaluate(table: T): void {
    this.evaluations++;
    for (const e of [...this.entries]) {
      const now = e.test(table);
      if (e.kind === 'once') {
        if (now) {
          this.remove(e.id);
          e.trigger(table);
        }
      } else if (e.kind === 'transition') {
        if (now && !e.wasTrue) e.trigger(table);
        e.wasTrue = now;
      } else if (now) {
        e.trigger(table);
      }
    }
  }
}
