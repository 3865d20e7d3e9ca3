/**
 * One key's history, as etcd's keyIndex: a list of generations, each the revisions from a creation
 * up to and including the tombstone that ended it. The last generation is the live one (empty when
 * the key is deleted). Revisions are kept as a flat [main, sub, main, sub, ...] array because a
 * million keys with one revision each is the common shape, and an object per revision would double
 * the index's memory.
 */
import type { KeepSet } from './keepset.js';
import { compareRev } from './revision.js';

export class Generation {
  /** Number of puts in this generation, including those compacted away (versions count from it). */
  ver = 0;
  createdMain = 0;
  createdSub = 0;
  revs: number[] = [];

  get length(): number {
    return this.revs.length >> 1;
  }

  isEmpty(): boolean {
    return this.revs.length === 0;
  }

  main(i: number): number {
    return this.revs[i << 1]!;
  }

  sub(i: number): number {
    return this.revs[(i << 1) + 1]!;
  }

  lastMain(): number {
    return this.revs[this.revs.length - 2]!;
  }

  /** Index of the newest revision with main <= atRev, or -1. */
  lastAtOrBefore(atRev: number): number {
    for (let i = this.length - 1; i >= 0; i--) if (this.main(i) <= atRev) return i;
    return -1;
  }
}

/** What a point lookup answers; reused by callers to avoid an allocation per key. */
export interface IndexEntry {
  modMain: number;
  modSub: number;
  createdMain: number;
  version: number;
}

export function newIndexEntry(): IndexEntry {
  return { modMain: 0, modSub: 0, createdMain: 0, version: 0 };
}

export class KeyIndex {
  modMain = 0;
  modSub = 0;
  generations: Generation[] = [new Generation()];
  /** Lease of the newest revision while the key is live (etcd's lessor itemMap, kept here). */
  lease = 0n;
  /** The newest revision's value (latin1) while live, when the store caches values. */
  value: string | undefined = undefined;

  constructor(readonly key: string) {}

  put(main: number, sub: number): void {
    if (compareRev(main, sub, this.modMain, this.modSub) <= 0) {
      throw new Error(`keyIndex ${JSON.stringify(this.key)}: put ${main}.${sub} not after ${this.modMain}.${this.modSub}`);
    }
    const g = this.generations[this.generations.length - 1]!;
    if (g.isEmpty()) {
      g.createdMain = main;
      g.createdSub = sub;
    }
    g.revs.push(main, sub);
    g.ver++;
    this.modMain = main;
    this.modSub = sub;
  }

  /** Rebuilds from a record read back from storage, whose earlier revisions may be compacted away. */
  restore(createdMain: number, modMain: number, modSub: number, version: number): void {
    const g = this.generations[this.generations.length - 1]!;
    g.createdMain = createdMain;
    g.createdSub = 0;
    g.ver = version;
    g.revs = [modMain, modSub];
    this.modMain = modMain;
    this.modSub = modSub;
  }

  /** Ends the live generation. False (etcd's ErrRevisionNotFound) when the key is not live. */
  tombstone(main: number, sub: number): boolean {
    if (this.generations[this.generations.length - 1]!.isEmpty()) return false;
    this.put(main, sub);
    this.generations.push(new Generation());
    this.lease = 0n;
    this.value = undefined;
    return true;
  }

  isLive(): boolean {
    return !this.generations[this.generations.length - 1]!.isEmpty();
  }

  isEmpty(): boolean {
    return this.generations.length === 1 && this.generations[0]!.isEmpty();
  }

  /** The revision visible at atRev, or false when the key does not exist then. */
  get(atRev: number, out: IndexEntry): boolean {
    const g = this.findGeneration(atRev);
    if (g === undefined) return false;
    const n = g.lastAtOrBefore(atRev);
    if (n === -1) return false;
    out.modMain = g.main(n);
    out.modSub = g.sub(n);
    out.createdMain = g.createdMain;
    out.version = g.ver - (g.length - n - 1);
    return true;
  }

  private findGeneration(rev: number): Generation | undefined {
    const last = this.generations.length - 1;
    for (let cg = last; cg >= 0; cg--) {
      const g = this.generations[cg]!;
      if (g.isEmpty()) continue;
      // A generation older than the last ended with its tombstone: at or after it the key is absent.
      if (cg !== last && g.lastMain() <= rev) return undefined;
      if (g.main(0) <= rev) return g;
    }
    return undefined;
  }

  /**
   * Drops revisions at or below atRev except the newest of them, which goes into `available`
   * unless it is a tombstone; generations left empty are dropped.
   */
  compact(atRev: number, available: KeepSet): void {
    let [genIdx, revIndex] = this.doCompact(atRev, available);
    const g = this.generations[genIdx]!;
    if (!g.isEmpty()) {
      // Only when something goes: a copy per key would be a million allocations per compaction.
      if (revIndex > 0) g.revs = g.revs.slice(revIndex << 1);
      if (g.length === 1 && genIdx !== this.generations.length - 1) {
        available.delete(g.main(0), g.sub(0));
        genIdx++;
      }
    }
    if (genIdx > 0) this.generations = this.generations.slice(genIdx);
  }

  /** What compact(atRev) would keep, without changing anything. */
  keep(atRev: number, available: KeepSet): void {
    if (this.isEmpty()) return;
    const [genIdx, revIndex] = this.doCompact(atRev, available);
    const g = this.generations[genIdx]!;
    if (!g.isEmpty() && revIndex === g.length - 1 && genIdx !== this.generations.length - 1) {
      available.delete(g.main(revIndex), g.sub(revIndex));
    }
  }

  private doCompact(atRev: number, available: KeepSet): [number, number] {
    let genIdx = 0;
    let g = this.generations[0]!;
    // The first generation that includes atRev or was created after it.
    while (genIdx < this.generations.length - 1) {
      if (g.lastMain() > atRev) break;
      genIdx++;
      g = this.generations[genIdx]!;
    }
    const revIndex = g.lastAtOrBefore(atRev);
    if (revIndex !== -1) available.add(g.main(revIndex), g.sub(revIndex));
    return [genIdx, revIndex];
  }
}
