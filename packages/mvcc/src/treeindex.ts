/**
 * etcd's treeIndex: key -> KeyIndex, answering "which revision of which keys exist at revision R"
 * from memory so Range reads storage only for the values it returns.
 */
import { KeepSet } from './keepset.js';
import { type IndexEntry, KeyIndex, newIndexEntry } from './keyindex.js';
import { KeyTree } from './keytree.js';

/**
 * The upper bound of a range: undefined means the single key, null means every key from the start
 * key on (etcd's range_end "\0"), a string the exclusive end.
 */
export type RangeEnd = string | null | undefined;

export function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

/** etcd's mkGteRange plus gRPC's "absent and empty are the same" for bytes fields. */
export function toRangeEnd(rangeEnd: Uint8Array | undefined): RangeEnd {
  if (rangeEnd === undefined || rangeEnd.length === 0) return undefined;
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return null;
  return latin1(rangeEnd);
}

export class TreeIndex {
  private readonly tree = new KeyTree();

  get size(): number {
    return this.tree.size;
  }

  get(key: string): KeyIndex | undefined {
    return this.tree.get(key);
  }

  put(key: string, main: number, sub: number): KeyIndex {
    let ki = this.tree.get(key);
    if (ki === undefined) {
      ki = new KeyIndex(key);
      this.tree.insert(ki);
    }
    ki.put(main, sub);
    return ki;
  }

  insert(ki: KeyIndex): void {
    this.tree.insert(ki);
  }

  /** False when the key is not live (nothing to delete). */
  tombstone(key: string, main: number, sub: number): boolean {
    const ki = this.tree.get(key);
    return ki !== undefined && ki.tombstone(main, sub);
  }

  /** Calls fn, in key order, for each key in the range that exists at atRev; fn may stop it. */
  visit(key: string, end: RangeEnd, atRev: number, fn: (ki: KeyIndex, at: IndexEntry) => boolean | void): void {
    const at = newIndexEntry();
    if (end === undefined) {
      const ki = this.tree.get(key);
      if (ki !== undefined && ki.get(atRev, at)) fn(ki, at);
      return;
    }
    this.tree.ascend(key, end, (ki) => (ki.get(atRev, at) ? fn(ki, at) : true));
  }

  count(key: string, end: RangeEnd, atRev: number): number {
    let n = 0;
    this.visit(key, end, atRev, () => {
      n++;
    });
    return n;
  }

  /**
   * Compacts up to `limit` keys after `after` (from the start when undefined), dropping keys left
   * with no history. Returns the last key handled, or undefined once the whole index is done, so
   * compaction can yield between chunks while writes go on.
   */
  compactChunk(after: string | undefined, limit: number, atRev: number, available: KeepSet): string | undefined {
    const emptied: string[] = [];
    let last: string | undefined;
    let handled = 0;
    this.tree.ascend(
      after ?? '',
      null,
      (ki) => {
        if (handled === limit) return false;
        ki.compact(atRev, available);
        if (ki.isEmpty()) emptied.push(ki.key);
        last = ki.key;
        handled++;
        return true;
      },
      after !== undefined,
    );
    for (const key of emptied) this.tree.delete(key);
    return handled < limit ? undefined : last;
  }

  keep(atRev: number): KeepSet {
    const available = new KeepSet();
    this.tree.ascend('', null, (ki) => {
      ki.keep(atRev, available);
    });
    return available;
  }

  /** Every key in order, for snapshot-free rebuilding and tests. */
  forEach(fn: (ki: KeyIndex) => void): void {
    this.tree.ascend('', null, (ki) => {
      fn(ki);
    });
  }
}
