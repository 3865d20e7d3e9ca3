/**
 * The checked workload: concurrent clients doing puts, gets, deletes and compare-and-swaps on a
 * few keys (every written value unique), a watcher on the whole prefix from revision 1, and
 * leases granted with a key attached and left to expire. Every operation is recorded with its
 * invocation and completion time (one monotonic clock) and outcome; an operation that errs or
 * times out has an unknown outcome: it may or may not have happened.
 */
import { ExponentialBackoff, noop } from 'cockatiel';
import { Etcd3, type IKeyValue, type IOptions, type IWatchResponse, type WatchBuilder, type Watcher } from 'etcd3';

type WatchBackoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>;
import type { Rng } from '@capstan/raft/rng';
import type { KvInput, KvOperation, KvOutput } from './model.js';

/** At the end, the watch is given this long to deliver every acknowledged write before it is judged. */
export const WATCH_DRAIN_MS = 20_000;
/** The watch reconnects after a member dies within this (etcd3's default backoff grows to 30 s). */
export const WATCH_MAX_BACKOFF_MS = 1000;
/** A client gives up on an operation after this long; its outcome is then unknown. */
export const OP_TIMEOUT_MS = 3000;
/** Keys per run: few, so operations collide and the checker has something to check. */
export const KEYS = 6;
export const PREFIX = 'chaos/';
/** Written once after the final reads; the main watch drains to it. No client writes it. */
export const SENTINEL_KEY = `${PREFIX}sentinel`;
export const LEASE_PREFIX = 'chaos-lease/';
/** Two keys written together by one txn, so that a revision has two events (outside the linearizability check, which is per key). */
export const PAIR = [`${PREFIX}pair-a`, `${PREFIX}pair-b`] as const;
/** The share of operations that are such pair writes. */
const PAIR_SHARE = 0.05;
/** Events a watch from a chosen revision records before it is cancelled. */
export const MAX_RESUMED_WATCH_EVENTS = 2000;
/**
 * A watch from a chosen revision starts among the last this many acknowledged writes. etcd sends a
 * watch's whole catch-up at once: from anywhere in a 30-minute history, each such watch made etcd
 * read, and the harness decode, ever more of it (a 30-minute run against etcd slowed as its
 * history grew: 15,265 operations in all, against 27,343 in a 2-minute run). Earlier revisions
 * were chosen earlier in the run.
 */
export const RESUMED_WATCH_WINDOW = 1000;

export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly key: string;
  readonly value: string;
  readonly modRevision: number;
  readonly prevValue: string | null | undefined;
  /** Which of its watcher's responses it came in (events of one revision must share one). */
  readonly response?: number;
  /** When it was received: the write it shows took effect before this. */
  readonly at: number;
  /** It came in the first response with events after its watch was created or re-created. */
  readonly fresh: boolean;
  /** It came after the client asked to cancel its watch (cancelWatch), before the cancel was answered. */
  readonly cancelling?: boolean;
}

export interface LeaseRecord {
  readonly key: string;
  readonly ttl: number;
  /** When the grant was invoked: expiry may not come before this + TTL. */
  readonly grantCall: number;
  /** Reads of the key that completed, with when they started and ended and what they saw. */
  readonly reads: Array<{ call: number; ret: number; present: boolean }>;
  /** An acknowledged revoke: the key must be gone for every read that begins after it returned. */
  revoked?: { call: number; ret: number };
}

export interface Recorded {
  readonly ops: KvOperation[];
  /** Per client, the header revisions of its acknowledged operations, in order. */
  readonly revisions: number[][];
  /** Acknowledged puts (and successful CASes) with the revision they were given. */
  readonly ackedWrites: Array<{ key: string; value: string; revision: number }>;
  readonly watchEvents: WatchEvent[];
  readonly leases: LeaseRecord[];
  watchErrors: string[];
  /** Times the watch was (re)created: resuming is what loses events when it is done wrong. */
  watchReconnects: number;
  /**
   * The watch received the sentinel written after the final reads, so it saw every write they
   * could see (false: it did not; absent: a history recorded without a sentinel).
   */
  watchComplete?: boolean;
  /** Short watches from revisions chosen during the run, each with what it received. */
  readonly resumedWatches: Array<{ from: number; events: WatchEvent[] }>;
}

export const now = (): number => performance.now();

export interface OpenWatchOptions {
  /** Recording stops after the response that brings the count to this (never mid-revision). */
  readonly cap?: number;
  /** Called once the cap is reached. */
  readonly full?: () => void;
  /** The created response must come within this, or the watcher is cancelled and the call fails. */
  readonly timeoutMs?: number;
}

/**
 * etcd3's `create()`, but with the recording and resuming listeners on before the created
 * response arrives: once it has, etcd3 has already moved start_revision to the created header's
 * revision + 1 and a stream lost during the catch-up would resume past the events still to come.
 */
export async function openWatch(builder: Pick<WatchBuilder, 'watcher'>, into: WatchEvent[], opts: OpenWatchOptions = {}): Promise<Watcher> {
  const w = builder.watcher();
  collectEvents(w, into, opts.cap, opts.full);
  const created = new Promise<void>((resolve, reject) => {
    w.once('connected', () => resolve());
    w.once('error', reject);
  });
  try {
    await (opts.timeoutMs === undefined ? created : timeout(created, opts.timeoutMs));
  } catch (err) {
    void cancelWatch(w).catch(() => {});
    throw err;
  }
  return w;
}

/** Watchers whose cancel has been sent: what they receive from then on is marked `cancelling`. */
const cancelSent = new WeakSet<Watcher>();

/** Cancels a watch opened by openWatch, marking the events that still arrive. */
export function cancelWatch(w: Watcher): Promise<void> {
  cancelSent.add(w);
  return w.cancel();
}

/** Records a watcher's events and resumes it as clientv3 does. */
function collectEvents(w: Watcher, into: WatchEvent[], cap = Infinity, full: () => void = () => {}): void {
  // etcd3 emits a response's events from its own 'data' listener, which runs before ours: so the
  // count moves on after each response's events are recorded.
  let response = 0;
  let stopped = false;
  let fresh = true;
  w.on('connected', () => (fresh = true));
  const record = (type: 'put' | 'delete', kv: IKeyValue, prev?: IKeyValue | null): void => {
    if (stopped) return;
    into.push({
      type,
      key: kv.key.toString(),
      value: kv.value.toString(),
      modRevision: Number(kv.mod_revision),
      prevValue: prev === undefined || prev === null ? null : prev.value.toString(),
      response,
      at: now(),
      fresh,
      ...(cancelSent.has(w) ? { cancelling: true } : {}),
    });
  };
  w.on('put', (kv, prev) => record('put', kv, prev));
  w.on('delete', (kv, prev) => record('delete', kv, prev));
  w.on('data', (res: IWatchResponse) => {
    response++;
    if (res.events.length > 0) fresh = false;
    if (stopped || into.length < cap) return;
    stopped = true;
    full();
  });
  resumeLikeClientV3(w);
}

/**
 * etcd3 resumes a watch from the header revision of the last response + 1, the created response's
 * included: the store's current revision, before any of the events the watcher is still to catch
 * up on. A stream that drops again before they arrive (a member killed twice in a row) resumes past
 * them, and they are lost to the client though the server kept them. clientv3's rule is kept
 * instead: after the last event received, or after a progress notification's revision (which a
 * server sends only once everything before it has gone out). These listeners run after etcd3's.
 */
export function resumeLikeClientV3(w: Watcher): void {
  let next = Number(w.request.start_revision ?? 0);
  const keep = (): void => {
    w.request.start_revision = String(next);
  };
  w.on('connected', keep);
  w.on('data', (res: IWatchResponse) => {
    const last = res.events.at(-1);
    next = Math.max(next, last === undefined ? Number(res.header.revision) + 1 : Number(last.kv.mod_revision) + 1);
    keep();
  });
}

/** p, or a rejection after ms: etcd3's calls have no deadline of their own, and a broken cluster never answers. */
export function timeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e as Error);
      },
    );
  });
}

export class Workload {
  readonly recorded: Recorded = { ops: [], revisions: [], ackedWrites: [], watchEvents: [], leases: [], watchErrors: [], watchReconnects: 0, resumedWatches: [] };
  private stopped = false;
  private readonly clients: Etcd3[] = [];
  private seq = 0;

  constructor(
    private readonly endpoints: string[],
    private readonly rng: Rng,
    private readonly opts: { clients: number; leases: boolean } = { clients: 4, leases: true },
  ) {}

  /**
   * Operation clients retry nothing: a retried put that already took effect would be applied
   * twice (etcd has no request IDs), which no history of single operations can explain. The
   * watch client keeps etcd3's default reconnecting.
   */
  private client(retries = false): Etcd3 {
    const c = new Etcd3({
      hosts: this.endpoints,
      dialTimeout: 1000,
      faultHandling: retries
        ? // etcd3 types this as cockatiel 1's IBackoff; at runtime it only calls next() and reads duration, which v3's has.
          { watchBackoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: WATCH_MAX_BACKOFF_MS }) as unknown as WatchBackoff }
        : { host: () => noop, global: noop },
    });
    this.clients.push(c);
    return c;
  }

  /**
   * Runs the clients until stop(); the main watch stays open until closeWatch(), so that it can
   * be drained past the final reads.
   */
  async run(): Promise<void> {
    let loopsDone!: () => void;
    const done = new Promise<void>((r) => (loopsDone = r));
    this.watchDone = this.watch(done);
    const loops = Array.from({ length: this.opts.clients }, (_, i) => this.loop(i, this.rng.fork()));
    if (this.opts.leases) loops.push(this.leaseLoop(this.rng.fork()));
    loops.push(this.resumedWatchLoop(this.rng.fork()));
    await Promise.all(loops);
    loopsDone();
  }

  /**
   * Drains the main watch to `sentinel` (the revision of a write made after the final reads;
   * undefined if none could be made), then closes it. Every write the final reads could see has a
   * lower revision, so a watch that gets there saw them all.
   */
  async closeWatch(sentinel: number | undefined): Promise<void> {
    this.sentinel(sentinel);
    await this.watchDone;
  }

  private watchDone: Promise<void> = Promise.resolve();
  private sentinel!: (rev: number | undefined) => void;
  private readonly sentinelRev = new Promise<number | undefined>((r) => (this.sentinel = r));

  stop(): void {
    this.stopped = true;
  }

  close(): void {
    for (const c of this.clients) c.close();
  }

  private async loop(id: number, rng: Rng): Promise<void> {
    const c = this.client();
    const revs: number[] = [];
    this.recorded.revisions[id] = revs;
    const lastSeen = new Map<string, string | null>();
    while (!this.stopped) {
      if (rng.chance(PAIR_SHARE)) {
        await this.pairWrite(c, id, revs);
        continue;
      }
      const key = `${PREFIX}k${rng.int(KEYS)}`;
      const r = rng.float();
      let input: KvInput;
      if (r < 0.35) input = { kind: 'put', key, value: `c${id}-${++this.seq}` };
      else if (r < 0.7) input = { kind: 'get', key };
      else if (r < 0.8) input = { kind: 'delete', key };
      else input = { kind: 'cas', key, expect: lastSeen.get(key) ?? null, value: `c${id}-${++this.seq}` };
      const call = now();
      try {
        const { output, revision } = await timeout(this.exec(c, input), OP_TIMEOUT_MS);
        const ret = now();
        this.recorded.ops.push({ client: id, input, call, output, ret });
        revs.push(revision);
        if (output.kind === 'get') lastSeen.set(key, output.value);
        if (input.kind === 'put' || (input.kind === 'cas' && output.kind === 'cas' && output.ok)) {
          this.recorded.ackedWrites.push({ key, value: input.value, revision });
          lastSeen.set(key, input.value);
        }
      } catch {
        // Unknown outcome: recorded without a return, so the checker may place it anywhere after its call, or drop it.
        this.recorded.ops.push({ client: id, input, call });
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** One txn putting both PAIR keys: acknowledged, both must reach the watch in one response. */
  private async pairWrite(c: Etcd3, id: number, revs: number[]): Promise<void> {
    const values = PAIR.map(() => `c${id}-${++this.seq}`);
    try {
      const r = await timeout(
        c.if(PAIR[0], 'Version', '>', -1).then(...PAIR.map((k, i) => c.put(k).value(values[i]!))).commit(),
        OP_TIMEOUT_MS,
      );
      const revision = Number(r.header.revision);
      revs.push(revision);
      PAIR.forEach((key, i) => this.recorded.ackedWrites.push({ key, value: values[i]!, revision }));
    } catch {
      // Unknown outcome: these keys are not in the linearizability history, so nothing to record.
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private async exec(c: Etcd3, input: KvInput): Promise<{ output: KvOutput; revision: number }> {
    switch (input.kind) {
      case 'put': {
        const r = await c.put(input.key).value(input.value).exec();
        return { output: { kind: 'put' }, revision: Number(r.header.revision) };
      }
      case 'delete': {
        const r = await c.delete().key(input.key).exec();
        return { output: { kind: 'delete' }, revision: Number(r.header.revision) };
      }
      case 'get': {
        const r = await c.get(input.key).exec();
        const kv = r.kvs[0];
        return { output: { kind: 'get', value: kv === undefined ? null : kv.value.toString() }, revision: Number(r.header.revision) };
      }
      case 'cas': {
        const cmp = input.expect === null ? c.if(input.key, 'Version', '==', 0) : c.if(input.key, 'Value', '==', input.expect);
        const r = await cmp.then(c.put(input.key).value(input.value)).commit();
        return { output: { kind: 'cas', ok: r.succeeded }, revision: Number(r.header.revision) };
      }
    }
  }

  /** One watcher over the prefix from revision 1; the client resumes it after member failures. */
  private async watch(clientsDone: Promise<void>): Promise<void> {
    const c = this.client(true);
    const w = await openWatch(c.watch().prefix(PREFIX).startRevision('1').withPreviousKV(), this.recorded.watchEvents);
    w.on('error', (err) => this.recorded.watchErrors.push(String(err)));
    w.on('connected', () => this.recorded.watchReconnects++);
    // Every client's last operation has returned first: one acknowledged after the drain began
    // would otherwise be judged against a watch already closed.
    await clientsDone;
    // The stream may be reconnecting after a fault near the end: wait (bounded) until it has
    // delivered every acknowledged write, so a missing one means lost, not late.
    const lastAcked = this.recorded.ackedWrites.reduce((m, a) => Math.max(m, a.revision), 0);
    const lastSeen = (): number => this.recorded.watchEvents.reduce((m, e) => Math.max(m, e.modRevision), 0);
    /** Waits, up to WATCH_DRAIN_MS, until the watch has delivered revision `rev`. */
    const drainTo = async (rev: number): Promise<void> => {
      const deadline = now() + WATCH_DRAIN_MS;
      while (lastSeen() < rev && now() < deadline) await new Promise((r) => setTimeout(r, 100));
    };
    await drainTo(lastAcked);
    const sentinel = await this.sentinelRev;
    if (sentinel !== undefined) await drainTo(sentinel);
    this.recorded.watchComplete = sentinel !== undefined && lastSeen() >= sentinel;
    // etcd3's cancel waits for the create response of a watch being re-created, which a broken
    // cluster never sends: bounded, or the run never ends to report what broke it.
    await timeout(cancelWatch(w), OP_TIMEOUT_MS).catch(() => {});
  }

  /**
   * Watches from revisions already written (chosen by the seed among recent acknowledged writes), each
   * kept open a moment: what they get must be the main watch's events from there on, whichever
   * member serves them.
   */
  private async resumedWatchLoop(rng: Rng): Promise<void> {
    const c = this.client(true);
    while (!this.stopped) {
      await new Promise((r) => setTimeout(r, rng.between(500, 2000)));
      const acked = this.recorded.ackedWrites;
      if (acked.length === 0 || this.stopped) continue;
      const lo = Math.max(0, acked.length - RESUMED_WATCH_WINDOW);
      const from = acked[lo + rng.int(acked.length - lo)]!.revision - rng.int(3);
      const rec = { from: Math.max(1, from), events: [] as WatchEvent[] };
      try {
        // A watch from far back replays much of the history: the first events are the test, and
        // keeping them all for every such watch filled the heap on a 30-minute run against etcd.
        let full = (): void => {};
        const filled = new Promise<void>((r) => (full = r));
        const builder = c.watch().prefix(PREFIX).startRevision(String(rec.from)).withPreviousKV();
        const w = await openWatch(builder, rec.events, { cap: MAX_RESUMED_WATCH_EVENTS, full, timeoutMs: OP_TIMEOUT_MS });
        // Cancelled by the server (it never is here): what it received until then is still checked.
        w.on('error', () => {});
        await Promise.race([filled, new Promise((r) => setTimeout(r, rng.between(200, 2000)))]);
        await timeout(cancelWatch(w), OP_TIMEOUT_MS).catch(() => {});
      } catch {
        // Not created (no member answered): nothing to check.
      }
      this.recorded.resumedWatches.push(rec);
    }
  }

  /** Leases with a key, never renewed: the key must be there until TTL after the grant began. */
  private async leaseLoop(rng: Rng): Promise<void> {
    const c = this.client();
    while (!this.stopped) {
      const ttl = rng.between(2, 4);
      const key = `${LEASE_PREFIX}${++this.seq}`;
      const grantCall = now();
      const rec: LeaseRecord = { key, ttl, grantCall, reads: [] };
      try {
        const lease = c.lease(ttl, { autoKeepAlive: false });
        await timeout(lease.put(key).value('v').exec(), OP_TIMEOUT_MS);
        this.recorded.leases.push(rec);
        const until = grantCall + ttl * 1000;
        // Some are revoked part way: from then on the key must be gone.
        const revokeAt = rng.chance(0.3) ? grantCall + rng.between(300, ttl * 1000) : Infinity;
        while (!this.stopped && now() < until + 500) {
          if (rec.revoked === undefined && now() >= revokeAt) {
            const call = now();
            try {
              await timeout(lease.revoke(), OP_TIMEOUT_MS);
              rec.revoked = { call, ret: now() };
            } catch {
              // Unknown: the key may go at any time from here; judged by TTL only until this call.
              rec.revoked = { call, ret: Infinity };
            }
          }
          const call = now();
          try {
            const v = await timeout(c.get(key).string(), OP_TIMEOUT_MS);
            rec.reads.push({ call, ret: now(), present: v !== null });
          } catch {
            // unknown: no information
          }
          await new Promise((r) => setTimeout(r, 200));
        }
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
}
