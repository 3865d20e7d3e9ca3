/**
 * The store's size on disk (etcd's db size, which for etcd is one bbolt file's size): the sum of
 * the LevelDB directory's files. A member asks every second (the quota check) and at every
 * /metrics scrape, so the table files, which LevelDB never changes once written, are stat'ed
 * until their size holds still and then remembered: a call costs a readdir and a stat of the few
 * files LevelDB does change (the log, the manifest, its info log, a table being written), where
 * it was a stat of every file, each a trip through libuv's thread pool beside the WAL's fdatasyncs.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** LevelDB's table files: written once under their final name, then only ever deleted. */
const TABLE_FILE = /\.(ldb|sst)$/;

export class DiskSize {
  /** Table files whose size held still between two measures: final. */
  private readonly settled = new Map<string, number>();
  /** Table files seen once, with the size then: one being written grows between measures. */
  private readonly seen = new Map<string, number>();

  constructor(readonly dir: string) {}

  async measure(): Promise<number> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const present = new Set(names);
    for (const name of this.settled.keys()) if (!present.has(name)) this.settled.delete(name);
    for (const name of this.seen.keys()) if (!present.has(name)) this.seen.delete(name);
    let total = 0;
    for (const name of names) {
      const known = this.settled.get(name);
      if (known !== undefined) {
        total += known;
        continue;
      }
      const size = await stat(join(this.dir, name)).then(
        (s) => s.size,
        () => 0,
      );
      total += size;
      if (!TABLE_FILE.test(name)) continue;
      if (this.seen.get(name) === size) {
        this.seen.delete(name);
        this.settled.set(name, size);
      } else {
        this.seen.set(name, size);
      }
    }
    return total;
  }

  /** The directory was replaced (a restored snapshot): its table files' names may come back with other contents. */
  forget(): void {
    this.settled.clear();
    this.seen.clear();
  }
}
