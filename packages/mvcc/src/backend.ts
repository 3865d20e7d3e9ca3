/**
 * The LevelDB side: one ClassicLevel database, writes staged in memory and written as one atomic
 * batch every BATCH_INTERVAL_MS or BATCH_LIMIT writes, whichever comes first (etcd's backend
 * batch interval and limit for its bbolt commits), and reads that see staged writes before
 * LevelDB does. Everything a single apply stages is staged synchronously, so a
 * batch never holds part of an apply: the consistent index written with it is always exact.
 */
import { ClassicLevel } from 'classic-level';
import { DiskSize } from './disksize.js';
import { errClosed } from './errors.js';

/**
 * etcd's --backend-batch-interval default. Each batch costs a trip through libuv's thread pool
 * (tens of microseconds of the event loop's time on a small VM, besides LevelDB's own work), so
 * writing one per apply made it one of a put's larger costs. The WAL is the durable log: a crash
 * loses at most this much of LevelDB, and the consistent index replays it.
 */
export const BATCH_INTERVAL_MS = 100;
/**
 * etcd's --backend-batch-limit default: a batch is written at once when this many writes wait,
 * checked where an apply ends (putLatest), as etcd checks it when a transaction unlocks.
 */
export const BATCH_LIMIT = 10_000;

type Op = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer };

export interface BackendOptions {
  /** fsync every batch (LevelDB sync writes). Off by default: the Raft WAL is the durable log. */
  syncWrites?: boolean;
}

export class Backend {
  /** Replaced only by reopen(), with everything flushed and nothing staged. */
  db: ClassicLevel<Buffer, Buffer>;
  private staged: Op[] = [];
  /** Keys of which only the last value staged matters (putLatest), written at the batch's end. */
  private latest = new Map<string, Op>();
  /** Writes maybe not yet in LevelDB, by latin1 key; null marks a delete. */
  private readonly pending = new Map<string, Buffer | null>();
  private writing = false;
  private timer: NodeJS.Timeout | undefined;
  private stagedWaiters: Array<() => void> = [];
  private writingWaiters: Array<() => void> = [];
  private failure: Error | undefined;
  private closed = false;
  private readonly syncWrites: boolean;
  private readonly disk: DiskSize;

  private constructor(
    db: ClassicLevel<Buffer, Buffer>,
    readonly dir: string,
    options: BackendOptions,
  ) {
    this.db = db;
    this.syncWrites = options.syncWrites ?? false;
    this.disk = new DiskSize(dir);
  }

  /** Bytes the database's files take on disk (etcd's db size). */
  diskSize(): Promise<number> {
    return this.disk.measure();
  }

  static async open(dir: string, options: BackendOptions = {}): Promise<Backend> {
    return new Backend(await openDb(dir), dir, options);
  }

  put(key: Buffer, value: Buffer): void {
    this.check();
    this.staged.push({ type: 'put', key, value });
    this.pending.set(key.toString('latin1'), value);
    this.schedule();
  }

  /**
   * A put of which only the latest value before the batch is written matters (the consistent
   * index, staged by every apply): one write per batch, not one per call. The batch still holds
   * whole applies only, so the value written with it is exact. It ends an apply, so this is where
   * a batch over BATCH_LIMIT goes out early: from put() or del() that could split an apply across
   * two batches, and a crash between them would leave part of it on disk under the consistent
   * index of the apply before, to be applied again on restart.
   */
  putLatest(key: Buffer, value: Buffer): void {
    this.check();
    const k = key.toString('latin1');
    this.latest.set(k, { type: 'put', key, value });
    this.pending.set(k, value);
    if (!this.writing && this.staged.length >= BATCH_LIMIT) this.pump();
    else this.schedule();
  }

  del(key: Buffer): void {
    this.check();
    this.staged.push({ type: 'del', key });
    this.pending.set(key.toString('latin1'), null);
    this.schedule();
  }

  getSync(key: Buffer): Buffer | undefined {
    this.check();
    const p = this.pending.get(key.toString('latin1'));
    if (p !== undefined) return p ?? undefined;
    return this.db.getSync(key);
  }

  /** Resolves once everything staged before the call is in LevelDB. */
  flush(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (!this.hasStaged() && !this.writing) return Promise.resolve();
    return new Promise((resolve) => {
      if (this.hasStaged()) this.stagedWaiters.push(resolve);
      else this.writingWaiters.push(resolve);
      this.pump();
    });
  }

  /** Drops everything (for restoring a snapshot); the caller has flushed and stopped writers. */
  async clear(): Promise<void> {
    await this.flush();
    this.pending.clear();
    await this.db.clear();
  }

  /**
   * Closes the database, lets `swap` replace its directory, and opens it again: the same Backend
   * object, so everything holding it (store, lessor) sees the new contents.
   */
  async reopen(swap: () => Promise<void>): Promise<void> {
    await this.flush();
    this.pending.clear();
    await this.db.close();
    await swap();
    this.disk.forget();
    this.db = await openDb(this.dir);
  }

  /** Makes everything written so far durable (one synced LevelDB write covers the log before it). */
  async sync(): Promise<void> {
    await this.flush();
    await this.db.batch([], { sync: true });
  }

  /** Defragment: LevelDB's compaction of the whole key range, after writing what is staged. */
  async compactAll(): Promise<void> {
    await this.flush();
    await this.db.compactRange(Buffer.alloc(0), Buffer.from([0xff]));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush().catch(() => undefined);
    this.closed = true;
    await this.db.close();
  }

  private check(): void {
    if (this.closed) throw errClosed();
    if (this.failure !== undefined) throw this.failure;
  }

  private schedule(): void {
    if (this.writing || this.timer !== undefined) return;
    this.timer = setTimeout(() => this.pump(), BATCH_INTERVAL_MS);
    // close() flushes what is staged: the timer need not keep the process alive.
    this.timer.unref();
  }

  private hasStaged(): boolean {
    return this.staged.length > 0 || this.latest.size > 0;
  }

  private pump(): void {
    if (this.writing || !this.hasStaged()) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    const ops = this.staged;
    for (const op of this.latest.values()) ops.push(op);
    this.latest.clear();
    const waiters = this.stagedWaiters;
    this.staged = [];
    this.stagedWaiters = [];
    this.writing = true;
    // A chained batch: each op goes to the native batch in one call, where the array form clones,
    // validates and re-encodes every op first (about 3x the CPU per op, measured).
    const batch = this.db.batch();
    for (const op of ops) {
      if (op.type === 'put') batch.put(op.key, op.value);
      else batch.del(op.key);
    }
    batch.write({ sync: this.syncWrites }).then(
      () => {
        for (const op of ops) {
          const k = op.key.toString('latin1');
          if (this.pending.get(k) === (op.type === 'put' ? op.value : null)) this.pending.delete(k);
        }
        this.writing = false;
        const done = waiters.concat(this.writingWaiters);
        this.writingWaiters = [];
        for (const w of done) w();
        // Someone waits for what was staged meanwhile (flush), or it is over the limit: now
        // (between turns of the event loop, so between applies); otherwise on the interval.
        if (this.stagedWaiters.length > 0 || this.staged.length >= BATCH_LIMIT) this.pump();
        else if (this.hasStaged()) this.schedule();
      },
      (err: unknown) => {
        // A lost batch leaves LevelDB behind memory; nothing after it may be written or trusted.
        this.failure = err instanceof Error ? err : new Error(String(err));
        this.writing = false;
      },
    );
  }
}

async function openDb(dir: string): Promise<ClassicLevel<Buffer, Buffer>> {
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  return db;
}
