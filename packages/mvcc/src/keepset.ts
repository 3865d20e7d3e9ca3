/**
 * A set of revisions: what compaction keeps and what HashKV counts. Keyed by main revision in a Map
 * of numbers because almost every main revision has a single sub in the set, which keeps a
 * million-key compaction cheap compared with a Set of "main_sub" strings.
 */
export class KeepSet {
  private readonly byMain = new Map<number, number | number[]>();

  add(main: number, sub: number): void {
    const cur = this.byMain.get(main);
    if (cur === undefined) this.byMain.set(main, sub);
    else if (typeof cur === 'number') {
      if (cur !== sub) this.byMain.set(main, [cur, sub]);
    } else if (!cur.includes(sub)) cur.push(sub);
  }

  has(main: number, sub: number): boolean {
    const cur = this.byMain.get(main);
    if (cur === undefined) return false;
    return typeof cur === 'number' ? cur === sub : cur.includes(sub);
  }

  delete(main: number, sub: number): void {
    const cur = this.byMain.get(main);
    if (cur === undefined) return;
    if (typeof cur === 'number') {
      if (cur === sub) this.byMain.delete(main);
      return;
    }
    const i = cur.indexOf(sub);
    if (i >= 0) cur.splice(i, 1);
    if (cur.length === 0) this.byMain.delete(main);
  }

  get mainCount(): number {
    return this.byMain.size;
  }
}
