/**
 * etcd's watchable store and watch stream (mvcc/watchable_store.go, watcher.go, watcher_group.go,
 * plus the per-stream rules of the v3rpc watch server), so the gRPC layer only moves messages.
 *
 * A watcher is either synced (fed from each committed transaction) or unsynced (its next revision
 * `minRev` is behind; it catches up from LevelDB through `store.history`). Transactions reach the
 * hub synchronously from the store but are fanned out on a microtask, so a watcher (or a `send`
 * that writes back into the store) can never run inside the writer. A stream whose `send` returns
 * false is congested, like a Writable's write(): that response was taken, nothing more is sent to
 * its watchers, which become unsynced until `drain()`; they then catch up from storage.
 *
 * No gap, no duplicate: `dispatchedRev` is the last revision fanned out to synced watchers; every
 * later one is still queued. A watcher may join the synced set only when it holds every event
 * below `dispatchedRev + 1`. While any watcher is catching up, every revision dispatched from
 * `tailFrom` on is also kept in memory (the tail), and storage reads stop at `tailFrom - 1`: a
 * fixed target, so catch-up converges under a steady write load instead of chasing the head. A
 * watcher that reaches `tailFrom` takes the rest from the tail and joins. If the tail outgrows
 * `maxPending` revisions it is dropped and a new one started at the head.
 */
import { errCompacted, errEmptyWatcherRange, errWatcherDuplicateId, MvccError } from './errors.js';
import type { KvStore } from './store.js';
import { latin1, type RangeEnd, toRangeEnd } from './treeindex.js';
import { type Event, EventType, FilterType, type KeyValue, type WatchCreateRequest, type WatchResponse } from './types.js';

/** etcd's watchBatchMaxRevs: revisions read from storage per catch-up batch. */
export const DEFAULT_CATCH_UP_REVS = 1000;
/** etcd's maxWatchersPerSync: unsynced watchers served by one catch-up read. */
export const MAX_WATCHERS_PER_SYNC = 512;
/** Revisions buffered while a catch-up read is in flight; past it the read is repeated instead. */
export const DEFAULT_MAX_PENDING = 10_000;
/** Pause before retrying a catch-up read that failed with something other than ErrCompacted. */
export const SYNC_RETRY_MS = 100;
/** Per-event overhead in the fragment size estimate (revisions, lengths, protobuf tags). */
export const EVENT_OVERHEAD_BYTES = 64;
/** etcd's --max-request-bytes default, which v3rpc also uses as the fragment size. */
export const DEFAULT_MAX_RESPONSE_BYTES = 1.5 * 1024 * 1024;
/** etcd's AutoWatchID: a create request with this id (or none) gets the next free one. */
export const AUTO_WATCH_ID = 0;
/** The watchId of a create response that failed. */
export const INVALID_WATCH_ID = -1;

export interface WatchHubOptions {
  catchUpRevs?: number;
  maxPending?: number;
}

export interface WatchStreamOptions {
  /** When set, responses of watchers created with `fragment` are split to stay under it. */
  maxResponseBytes?: number;
  /**
   * Sends one revision's events to one watcher, as `send` would send the response holding them
   * (not created, not canceled, no compact revision, not a fragment), and answers as `send`
   * does. A fan-out calls it for every watcher of a key, so a transport can encode the parts
   * they share once and skip building a response object per watcher. Without it, `send`.
   */
  sendEvents?: (watchId: number, revision: number, events: readonly Event[]) => boolean;
}

type State = 'synced' | 'unsynced' | 'removed';

/** @internal One watch of a stream; exported only for the type of the hub's internal methods. */
export class Watcher {
  state: State = 'unsynced';
  /** The first revision this watcher has not been given (for synced ones: not before this). */
  minRev: number;
  /** Last revision delivered during a fan-out, to know where a congested watcher stands. */
  sentRev = 0;
  /** v3rpc's progress[id]: true when nothing was sent since the last progress tick. */
  progressDue = true;

  constructor(
    readonly stream: WatchStream,
    readonly id: number,
    readonly key: string,
    readonly end: RangeEnd,
    readonly noPut: boolean,
    readonly noDelete: boolean,
    readonly prevKv: boolean,
    readonly progressNotify: boolean,
    readonly fragment: boolean,
    startRev: number,
  ) {
    this.minRev = startRev;
  }

  contains(key: string): boolean {
    if (this.end === undefined) return key === this.key;
    return key >= this.key && (this.end === null || key < this.end);
  }

  wants(ev: Event): boolean {
    return ev.type === EventType.PUT ? !this.noPut : !this.noDelete;
  }
}

/** etcd's watcherGroup: single-key watchers by key, range watchers scanned. */
class WatcherGroup {
  private readonly byKey = new Map<string, Set<Watcher>>();
  private readonly ranges = new Set<Watcher>();
  size = 0;

  add(w: Watcher): void {
    this.size++;
    if (w.end !== undefined) {
      this.ranges.add(w);
      return;
    }
    let set = this.byKey.get(w.key);
    if (set === undefined) this.byKey.set(w.key, (set = new Set()));
    set.add(w);
  }

  delete(w: Watcher): void {
    if (w.end !== undefined) {
      if (this.ranges.delete(w)) this.size--;
      return;
    }
    const set = this.byKey.get(w.key);
    if (set?.delete(w) === true) {
      this.size--;
      if (set.size === 0) this.byKey.delete(w.key);
    }
  }

  *[Symbol.iterator](): IterableIterator<Watcher> {
    for (const set of this.byKey.values()) yield* set;
    yield* this.ranges;
  }

  forEachMatch(key: string, fn: (w: Watcher) => void): void {
    const set = this.byKey.get(key);
    if (set !== undefined) for (const w of set) fn(w);
    for (const w of this.ranges) if (w.contains(key)) fn(w);
  }
}

interface TxnEntry {
  rev: number;
  events: readonly Event[];
}

function response(watchId: number, revision: number): WatchResponse {
  return {
    header: { revision },
    watchId,
    created: false,
    canceled: false,
    compactRevision: 0,
    cancelReason: '',
    fragment: false,
    events: [],
  };
}

function eventBytes(ev: Event): number {
  let n = ev.kv.key.length + ev.kv.value.length + EVENT_OVERHEAD_BYTES;
  if (ev.prevKv !== undefined) n += ev.prevKv.key.length + ev.prevKv.value.length;
  return n;
}

/**
 * v3rpc's sendFragments: a response whose events add up to maxBytes or more is cut into pieces of
 * at least one event each, each under maxBytes when it has more than one; all but the last are
 * marked `fragment`. Sizes are estimated per event (key + value, prevKv's too, + 64).
 */
export function fragment(resp: WatchResponse, maxBytes: number): WatchResponse[] {
  const sizes = resp.events.map(eventBytes);
  const total = sizes.reduce((a, b) => a + b, 0);
  if (total < maxBytes || resp.events.length < 2) return [resp];
  const out: WatchResponse[] = [];
  let i = 0;
  while (i < resp.events.length) {
    const start = i;
    let size = 0;
    while (i < resp.events.length && (i === start || size + sizes[i]! < maxBytes)) size += sizes[i++]!;
    out.push({ ...resp, header: { ...resp.header }, events: resp.events.slice(start, i), fragment: i < resp.events.length });
  }
  return out;
}

export class WatchHub {
  readonly catchUpRevs: number;
  readonly maxPending: number;
  private readonly synced = new WatcherGroup();
  /** Insertion order, so the oldest waiters are served first. */
  private readonly unsynced = new Set<Watcher>();
  private readonly streams = new Set<WatchStream>();
  private readonly unsubscribe: () => void;
  private readonly unsubscribeReset: () => void;
  private queue: TxnEntry[] = [];
  private flushScheduled = false;
  private flushing = false;
  private dispatchedRev: number;
  /** The revision being fanned out, while it is (congestion mid-fan-out needs it). */
  private dispatching: number | undefined;
  private syncing = false;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Revisions dispatched from `tailFrom` on, while watchers are catching up. */
  private tail: TxnEntry[] | undefined;
  private tailFrom = 0;
  private closed = false;

  constructor(
    readonly store: KvStore,
    opts: WatchHubOptions = {},
  ) {
    this.catchUpRevs = opts.catchUpRevs ?? DEFAULT_CATCH_UP_REVS;
    this.maxPending = opts.maxPending ?? DEFAULT_MAX_PENDING;
    this.dispatchedRev = store.rev;
    this.unsubscribe = store.onTxn((rev, events) => this.onTxn(rev, events));
    this.unsubscribeReset = store.onReset(() => this.onReset());
  }

  newStream(send: (resp: WatchResponse) => boolean, opts: WatchStreamOptions = {}): WatchStream {
    if (this.closed) throw new Error('watch hub closed');
    const s = new WatchStream(this, send, opts);
    this.streams.add(s);
    return s;
  }

  /** Counts for metrics and tests (etcd's watcher_total, slow_watcher_total). */
  get syncedCount(): number {
    return this.synced.size;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  get unsyncedCount(): number {
    return this.unsynced.size;
  }

  close(): void {
    if (this.closed) return;
    for (const s of [...this.streams]) s.close();
    this.closed = true;
    this.unsubscribe();
    this.unsubscribeReset();
    this.queue = [];
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
  }

  // ------------------------------------------------------------------ called by streams

  /** @internal */
  add(w: Watcher): void {
    if (w.minRev < this.store.compactRev) {
      this.sendCompacted(w);
      return;
    }
    this.unsynced.add(w);
    this.tryJoin(w);
    this.kick();
  }

  /** @internal */
  remove(w: Watcher): void {
    if (w.state === 'synced') this.synced.delete(w);
    else this.unsynced.delete(w);
    w.state = 'removed';
  }

  /** @internal */
  streamClosed(s: WatchStream): void {
    this.streams.delete(s);
  }

  /** @internal A stream's send returned false: its synced watchers become unsynced (victims). */
  congested(s: WatchStream): void {
    const at = this.dispatching;
    for (const w of s.watchers.values()) {
      if (w.state !== 'synced') continue;
      this.synced.delete(w);
      w.state = 'unsynced';
      // Mid-fan-out of revision `at`, watchers not yet given it still need it.
      const next = at === undefined ? this.dispatchedRev + 1 : w.sentRev === at ? at + 1 : at;
      w.minRev = Math.max(w.minRev, next);
      this.unsynced.add(w);
    }
  }

  /** @internal The stream drained: its watchers may be served again. */
  drained(s: WatchStream): void {
    for (const w of s.watchers.values()) if (w.state === 'unsynced') this.tryJoin(w);
    this.kick();
  }

  /** @internal etcd's watchableStore.progress: only a synced watcher may be told "nothing up to now". */
  progress(w: Watcher): boolean {
    if (w.state !== 'synced' || w.stream.isCongested) return false;
    w.stream.emit(response(w.id, this.progressRev()));
    return true;
  }

  /**
   * The revision every synced watcher has been given all events up to: the store's, once queued
   * transactions are fanned out (a progress header must not overtake events still in the queue).
   */
  private progressRev(): number {
    if (this.dispatching !== undefined) return this.dispatching - 1; // called from a send mid-fan-out
    if (!this.flushing) this.flush();
    return this.dispatchedRev;
  }

  /**
   * The store was replaced wholesale (a Raft snapshot installed): it jumped ahead without
   * transactions to fan out, so every synced watcher goes back to catching up from storage, from
   * the revision after the last one it was given.
   */
  private onReset(): void {
    if (this.closed) return;
    if (!this.flushing) this.flush();
    this.tail = undefined;
    for (const w of [...this.synced]) {
      this.synced.delete(w);
      w.state = 'unsynced';
      w.minRev = Math.max(w.minRev, this.dispatchedRev + 1);
      this.unsynced.add(w);
    }
    this.dispatchedRev = this.store.rev;
    this.kick();
  }

  // ------------------------------------------------------------------ live fan-out

  private onTxn(rev: number, events: readonly Event[]): void {
    // Runs inside the store's write: queue only, never throw.
    if (this.closed) return;
    this.queue.push({ rev, events });
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.flushing) return;
    this.flushing = true;
    const queue = this.queue;
    try {
      // Entries queued by sends during the flush land in the same array and are taken in order.
      for (let i = 0; i < queue.length && !this.closed; i++) this.dispatch(queue[i]!);
    } finally {
      this.queue = [];
      this.flushing = false;
    }
  }

  private dispatch(entry: TxnEntry): void {
    const { rev, events } = entry;
    this.dispatchedRev = rev;
    if (this.tail !== undefined && rev >= this.tailFrom) {
      // Too far behind to buffer: the next round starts a new tail at the head.
      if (this.tail.length >= this.maxPending) this.tail = undefined;
      else this.tail.push(entry);
    }
    if (this.synced.size === 0) return;
    if (events.length === 1) {
      this.dispatchOne(rev, events[0]!);
      return;
    }
    const matched = new Map<Watcher, Event[]>();
    for (const ev of events) {
      this.synced.forEachMatch(latin1(ev.kv.key), (w) => {
        if (rev < w.minRev || !w.wants(ev)) return;
        const list = matched.get(w);
        if (list === undefined) matched.set(w, [ev]);
        else list.push(ev);
      });
    }
    if (matched.size === 0) return;
    this.deliver(rev, matched.keys(), (w) => matched.get(w)!);
  }

  /** dispatch() for a revision of one event (a put, a delete of one key): every watcher gets the same list. */
  private dispatchOne(rev: number, ev: Event): void {
    // Collected first: a send may move watchers out of the synced set.
    const hits: Watcher[] = [];
    this.synced.forEachMatch(latin1(ev.kv.key), (w) => {
      if (rev >= w.minRev && w.wants(ev)) hits.push(w);
    });
    if (hits.length === 0) return;
    const evs = [ev];
    this.deliver(rev, hits, () => evs);
  }

  /** The fan-out of revision `rev` to the watchers it matched, each given `eventsOf(w)`. */
  private deliver(rev: number, watchers: Iterable<Watcher>, eventsOf: (w: Watcher) => Event[]): void {
    const prev = new PrevKvCache(this.store);
    this.dispatching = rev;
    try {
      for (const w of watchers) {
        // An earlier send in this loop may have congested this stream or cancelled the watcher.
        if (w.state !== 'synced') continue;
        w.sentRev = rev;
        w.stream.emitEvents(w, rev, prev.attach(w, eventsOf(w)));
      }
    } finally {
      this.dispatching = undefined;
    }
  }

  // ------------------------------------------------------------------ catch-up

  /** Moves an unsynced watcher that needs nothing from storage into the synced set. */
  private tryJoin(w: Watcher): boolean {
    if (w.state !== 'unsynced' || w.stream.isCongested || w.minRev <= this.dispatchedRev) return false;
    this.unsynced.delete(w);
    w.state = 'synced';
    this.synced.add(w);
    return true;
  }

  private kick(): void {
    if (this.syncing || this.closed || this.retryTimer !== undefined) return;
    if (!this.hasReady()) return;
    this.syncing = true;
    // Never from inside a caller's stack (a send, a watch() in a fan-out).
    queueMicrotask(() => {
      this.syncLoop().then(
        () => undefined,
        () => undefined,
      );
    });
  }

  private hasReady(): boolean {
    for (const w of this.unsynced) if (!w.stream.isCongested) return true;
    return false;
  }

  private async syncLoop(): Promise<void> {
    try {
      while (!this.closed) {
        const ready: Watcher[] = [];
        for (const w of this.unsynced) {
          if (w.stream.isCongested) continue;
          ready.push(w);
          if (ready.length === MAX_WATCHERS_PER_SYNC) break;
        }
        if (ready.length === 0) return;
        const ok = await this.syncRound(ready);
        if (!ok) {
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            this.kick();
          }, SYNC_RETRY_MS);
          this.retryTimer.unref();
          return;
        }
      }
    } finally {
      this.syncing = false;
      // Nobody is catching up (or only congested streams): stop buffering.
      this.tail = undefined;
    }
  }

  /** One catch-up step for up to MAX_WATCHERS_PER_SYNC watchers; false when it should be retried later. */
  private async syncRound(ready: Watcher[]): Promise<boolean> {
    if (this.tail === undefined) {
      this.tail = [];
      this.tailFrom = this.store.rev + 1;
    }
    const tail = this.tail;
    const tailFrom = this.tailFrom;
    const compactRev = this.store.compactRev;
    const round: Watcher[] = [];
    for (const w of ready) {
      if (w.minRev < compactRev) this.sendCompacted(w);
      else if (this.tryJoin(w)) continue;
      else if (w.minRev >= tailFrom) this.deliverTail(w, tail);
      else round.push(w);
    }
    if (round.length === 0) return true;

    // etcd reads one key range for the whole group, then matches each event to its watchers.
    const toRev = tailFrom - 1;
    let fromRev = Infinity;
    let key = round[0]!.key;
    let end: RangeEnd = undefined;
    let single = true;
    for (const w of round) {
      fromRev = Math.min(fromRev, w.minRev);
      if (w.key < key) key = w.key;
    }
    for (const w of round) {
      if (w.end !== undefined || w.key !== key) single = false;
      const wEnd = w.end === undefined ? w.key + '\0' : w.end;
      if (wEnd === null || end === null) end = null;
      else if (end === undefined || wEnd > end) end = wEnd;
    }
    if (single) end = undefined;

    let batch: { events: Event[]; next: number };
    try {
      batch = await this.store.history(key, end, fromRev, toRev, this.catchUpRevs);
    } catch (err) {
      if (this.closed) return true;
      if (err instanceof MvccError && err.kind === errCompacted().kind) {
        // History at fromRev is gone: those at the bottom are cancelled as etcd does.
        const cut = this.store.compactRev;
        let any = false;
        for (const w of round) {
          if (w.state === 'unsynced' && w.minRev < cut) {
            this.sendCompacted(w);
            any = true;
          }
        }
        if (!any) for (const w of round) if (w.state === 'unsynced' && w.minRev <= cut) this.sendCompacted(w);
        return true;
      }
      return false;
    }
    if (this.closed) return true;

    const group = new WatcherGroup();
    for (const w of round) group.add(w);
    const perWatcher = new Map<Watcher, Event[]>();
    for (const ev of batch.events) {
      const rev = ev.kv.modRevision;
      group.forEachMatch(latin1(ev.kv.key), (w) => {
        if (rev < w.minRev || !w.wants(ev)) return;
        const list = perWatcher.get(w);
        if (list === undefined) perWatcher.set(w, [ev]);
        else list.push(ev);
      });
    }
    const prev = new PrevKvCache(this.store);
    // The tail may have overflowed during the read; then the watchers go round again.
    const tailIntact = this.tail === tail;
    for (const w of round) {
      // Cancelled, congested or beyond this batch: its minRev still holds.
      if (w.state !== 'unsynced' || w.stream.isCongested || w.minRev >= batch.next) continue;
      const evs = perWatcher.get(w);
      // Header: the revision the batch was read up to, so headers never go back when the tail follows.
      if (evs !== undefined) w.stream.emitEvents(w, toRev, prev.attach(w, evs));
      w.minRev = batch.next;
      if (w.minRev === tailFrom && tailIntact && !w.stream.isCongested && w.state === 'unsynced') this.deliverTail(w, tail);
    }
    return true;
  }

  /** Gives a watcher that has everything before `tailFrom` the revisions dispatched since, then syncs it. */
  private deliverTail(w: Watcher, tail: readonly TxnEntry[]): void {
    const prev = new PrevKvCache(this.store);
    for (const { rev, events } of tail) {
      if (rev < w.minRev) continue;
      const evs = events.filter((ev) => w.contains(latin1(ev.kv.key)) && w.wants(ev));
      if (evs.length > 0) w.stream.emitEvents(w, rev, prev.attach(w, evs));
      w.minRev = rev + 1;
      if (w.stream.isCongested || w.state !== 'unsynced') return;
    }
    this.tryJoin(w);
  }

  private sendCompacted(w: Watcher): void {
    this.remove(w);
    w.stream.forget(w);
    const resp = response(w.id, this.store.rev);
    resp.canceled = true;
    resp.compactRevision = this.store.compactRev;
    w.stream.emit(resp);
  }
}

/** v3rpc's prevKv lookup (key at modRevision - 1), once per event however many watchers want it. */
class PrevKvCache {
  /** Made on first use: most fan-outs have no watcher that asked for prev_kv. */
  private cache: Map<Event, KeyValue | null> | undefined;

  /** One event with prev_kv per event, shared by every watcher that asked: a transport may encode it once. */
  private withPrev: Map<Event, Event> | undefined;

  constructor(private readonly store: KvStore) {}

  attach(w: Watcher, evs: Event[]): Event[] {
    if (!w.prevKv) return evs;
    const withPrev = (this.withPrev ??= new Map());
    return evs.map((ev) => {
      let out = withPrev.get(ev);
      if (out === undefined) {
        const prevKv = this.lookup(ev);
        out = prevKv === undefined ? { type: ev.type, kv: ev.kv } : { type: ev.type, kv: ev.kv, prevKv };
        withPrev.set(ev, out);
      }
      return out;
    });
  }

  private lookup(ev: Event): KeyValue | undefined {
    this.cache ??= new Map();
    let kv = this.cache.get(ev);
    if (kv === undefined) {
      kv = null;
      const at = ev.kv.modRevision - 1;
      // Revision 0 would mean "current" to range.
      if (at >= 1) {
        try {
          kv = this.store.range({ key: ev.kv.key, revision: at }).kvs[0] ?? null;
        } catch {
          kv = null; // compacted meanwhile: no prevKv, as etcd
        }
      }
      this.cache.set(ev, kv);
    }
    return kv ?? undefined;
  }
}

export class WatchStream {
  /** @internal */
  readonly watchers = new Map<number, Watcher>();
  private nextId = 0;
  private congestedFlag = false;
  private closed = false;
  private readonly maxResponseBytes: number | undefined;
  private readonly sendEvents: WatchStreamOptions['sendEvents'];

  /** @internal use WatchHub.newStream */
  constructor(
    private readonly hub: WatchHub,
    private readonly send: (resp: WatchResponse) => boolean,
    opts: WatchStreamOptions,
  ) {
    this.maxResponseBytes = opts.maxResponseBytes;
    this.sendEvents = opts.sendEvents;
  }

  get isCongested(): boolean {
    return this.congestedFlag;
  }

  /** etcd's watchStream.Watch plus v3rpc's create handling: always answers with a created response. */
  watch(req: WatchCreateRequest): void {
    if (this.closed) return;
    const store = this.hub.store;
    const created = response(INVALID_WATCH_ID, store.rev);
    created.created = true;
    const key = latin1(req.key);
    const end = toRangeEnd(req.rangeEnd);
    let id = req.watchId ?? AUTO_WATCH_ID;
    if (typeof end === 'string' && key >= end) {
      created.canceled = true;
      created.cancelReason = errEmptyWatcherRange().message;
      this.emit(created);
      return;
    }
    if (id !== AUTO_WATCH_ID && this.watchers.has(id)) {
      created.canceled = true;
      created.cancelReason = errWatcherDuplicateId().message;
      this.emit(created);
      return;
    }
    if (id === AUTO_WATCH_ID) {
      while (this.watchers.has(this.nextId)) this.nextId++;
      id = this.nextId++;
    }
    const filters = req.filters ?? [];
    const startRev = req.startRevision !== undefined && req.startRevision > 0 ? req.startRevision : store.rev + 1;
    const w = new Watcher(
      this,
      id,
      key,
      end,
      filters.includes(FilterType.NOPUT),
      filters.includes(FilterType.NODELETE),
      req.prevKv === true,
      req.progressNotify === true,
      req.fragment === true,
      startRev,
    );
    this.watchers.set(id, w);
    created.watchId = id;
    this.emit(created);
    // The created response goes first; the watcher then catches up or is cancelled as compacted.
    if (!this.closed && w.state === 'unsynced') this.hub.add(w);
  }

  /** Answers {watchId, canceled} for a watcher of this stream; an unknown id is ignored. */
  cancel(watchId: number): void {
    const w = this.watchers.get(watchId);
    if (w === undefined || this.closed) return;
    this.hub.remove(w);
    this.watchers.delete(watchId);
    const resp = response(watchId, this.hub.store.rev);
    resp.canceled = true;
    this.emit(resp);
  }

  /** A manual progress request: each synced watcher hears the current revision. */
  requestProgress(): void {
    for (const w of [...this.watchers.values()]) this.hub.progress(w);
  }

  /** The server's periodic tick: synced progress-notify watchers that got nothing since the last tick. */
  progressNotify(): void {
    for (const w of [...this.watchers.values()]) {
      if (!w.progressNotify) continue;
      if (w.progressDue) this.hub.progress(w);
      w.progressDue = true;
    }
  }

  /** The transport can take more: resume congested watchers from storage. */
  drain(): void {
    if (this.closed || !this.congestedFlag) return;
    this.congestedFlag = false;
    this.hub.drained(this);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watchers.values()) this.hub.remove(w);
    this.watchers.clear();
    this.hub.streamClosed(this);
  }

  /** @internal */
  forget(w: Watcher): void {
    if (this.watchers.get(w.id) === w) this.watchers.delete(w.id);
  }

  /** @internal Sends events (fragmented if asked) as one logical response. */
  emitEvents(w: Watcher, revision: number, events: Event[]): void {
    w.progressDue = false;
    const mayFragment = w.fragment && this.maxResponseBytes !== undefined && events.length > 1;
    if (this.sendEvents !== undefined && !mayFragment) {
      this.transmit(undefined, w.id, revision, events);
      return;
    }
    const resp = response(w.id, revision);
    resp.events = events;
    if (mayFragment) {
      // Every piece goes out even if the transport pushes back: a revision is never half-sent.
      for (const piece of fragment(resp, this.maxResponseBytes!)) this.emit(piece);
    } else {
      this.emit(resp);
    }
  }

  /** @internal */
  emit(resp: WatchResponse): void {
    this.transmit(resp, 0, 0, undefined);
  }

  /** Sends `resp`, or else `events` through sendEvents; a transport that pushes back marks the stream congested. */
  private transmit(resp: WatchResponse | undefined, watchId: number, revision: number, events: readonly Event[] | undefined): void {
    if (this.closed) return;
    let ok: boolean;
    try {
      ok = resp !== undefined ? this.send(resp) : this.sendEvents!(watchId, revision, events!);
    } catch {
      // A transport that throws is gone; keep the writer and the other streams going.
      this.close();
      return;
    }
    if (!ok && !this.congestedFlag) {
      this.congestedFlag = true;
      this.hub.congested(this);
    }
  }
}
