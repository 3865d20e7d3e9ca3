/**
 * The ordered key space: KeyIndex entries sorted by key (latin1 strings, whose code-unit order is
 * the bytes' order), held as a list of sorted leaves. Lookups are two binary searches; an insert
 * moves at most a leaf's worth of pointers and a split a list of leaves; a range walks leaves in
 * order. That is O(log n + k) for Range like a B+tree, with a fraction of the code.
 */
import type { KeyIndex } from './keyindex.js';

/** Entries per leaf before it splits: small enough that splicing stays cheap, large enough that
 * the leaf list stays short (1M keys -> a few thousand leaves). */
export const LEAF_MAX = 512;

export class KeyTree {
  private leaves: KeyIndex[][] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(key: string): KeyIndex | undefined {
    if (this.leaves.length === 0) return undefined;
    const leaf = this.leaves[this.leafFor(key)]!;
    const ki = leaf[lowerBound(leaf, key)];
    return ki !== undefined && ki.key === key ? ki : undefined;
  }

  /** The caller guarantees the key is absent. */
  insert(ki: KeyIndex): void {
    this.count++;
    if (this.leaves.length === 0) {
      this.leaves.push([ki]);
      return;
    }
    const li = this.leafFor(ki.key);
    const leaf = this.leaves[li]!;
    leaf.splice(lowerBound(leaf, ki.key), 0, ki);
    if (leaf.length > LEAF_MAX) this.leaves.splice(li + 1, 0, leaf.splice(LEAF_MAX >> 1));
  }

  delete(key: string): boolean {
    if (this.leaves.length === 0) return false;
    const li = this.leafFor(key);
    const leaf = this.leaves[li]!;
    const i = lowerBound(leaf, key);
    if (leaf[i]?.key !== key) return false;
    leaf.splice(i, 1);
    if (leaf.length === 0) this.leaves.splice(li, 1);
    this.count--;
    return true;
  }

  /**
   * Calls fn for each entry with from <= key < end (end null: no upper bound; `after` makes the
   * lower bound exclusive) in key order until fn returns false.
   */
  ascend(from: string, end: string | null, fn: (ki: KeyIndex) => boolean | void, after = false): void {
    if (this.leaves.length === 0) return;
    let li = this.leafFor(from);
    let i = lowerBound(this.leaves[li]!, from);
    if (after && this.leaves[li]![i]?.key === from) i++;
    for (; li < this.leaves.length; li++, i = 0) {
      const leaf = this.leaves[li]!;
      for (; i < leaf.length; i++) {
        const ki = leaf[i]!;
        if (end !== null && ki.key >= end) return;
        if (fn(ki) === false) return;
      }
    }
  }

  /** The leaf whose first key is the greatest at or below key (the first leaf if none). */
  private leafFor(key: string): number {
    let lo = 0;
    let hi = this.leaves.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.leaves[mid]![0]!.key <= key) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

function lowerBound(leaf: KeyIndex[], key: string): number {
  let lo = 0;
  let hi = leaf.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (leaf[mid]!.key < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
