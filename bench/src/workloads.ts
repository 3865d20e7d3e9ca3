/**
 * The workloads. All but watch are closed loops: `slots` requests outstanding, spread over the
 * channels, each one sent again as soon as its answer comes, for a warm-up (not recorded) and then
 * the measured time. Watch is an open loop: puts at a fixed rate, and the time from each put's send
 * to its event at every watcher.
 */
import { randomBytes } from 'node:crypto';
import { CompareResult, CompareTarget, type LeaseGrantResponse, type PutRequest, type PutResponse, type RangeRequest, type TxnRequest, type TxnResponse, type WatchResponse } from '@capstan/mvcc';
import { KV, LEASE, WATCH, msg, type BidiStream, type GrpcError, type RawClient } from './client.js';
import type { BenchArgs, TargetName, WorkloadName } from './flags.js';
import { Histogram, latencyFigures, Timeline, type HistogramBuckets, type LatencySummary } from './hist.js';

/** Keys overwritten by the put workloads (cycled in order). */
export const PUT_KEYSPACE = 10_000;
/** Keys read by the single-key range workloads, and the size of the prefix range. */
export const RANGE_KEYS = 1_000;
/** Lease TTL: long enough not to expire during the run (they are revoked after each workload). */
export const LEASE_TTL_S = 600;
/** Concurrent requests used for setup and cleanup (preloads, revokes): not measured. */
const SETUP_CONCURRENCY = 64;
/** How long the watch workload waits after the last put for every watcher to get every event. */
export const WATCH_DRAIN_MS = 10_000;
/** Every watcher must be created within this long. */
const WATCH_CREATE_MS = 30_000;
/** A closed-loop slot whose request failed waits this long before the next. */
const ERROR_BACKOFF_MS = 10;
/** Error messages kept per workload, as examples. */
export const ERROR_SAMPLES = 5;

export interface WorkloadSpec {
  readonly name: WorkloadName;
  readonly title: string;
  /** Channels and requests in flight on each. */
  shape(args: BenchArgs): { channels: number; inflight: number };
  describe(args: BenchArgs): string;
}

/** The figures of one round that the targets judge (report.ts checkTargets): ops/s, and latency in ms. */
export interface RoundFigures {
  opsPerSec: number;
  p50: number;
  p99: number;
}

/**
 * The watch workload's puts in the order sent: each one's send time in the measured window and
 * the latency of its slowest event, over every watcher (ms). A put's events reach the watchers
 * together or not at all, so this shows when the tail happens, where the histogram shows only how
 * long it is: a stall at a period (DAMON's samples, for one) stands out as spikes at that period.
 */
export interface PutTail {
  atMs: number[];
  slowestMs: number[];
}

export interface WorkloadResult {
  workload: WorkloadName;
  target: TargetName;
  description: string;
  channels: number;
  inflight: number;
  /** Alternating rounds this result adds up (rounds.ts); absent for one. */
  rounds?: number;
  /** Each of those rounds' own figures, in the order they ran (rounds.ts); absent for one. */
  roundFigures?: RoundFigures[];
  /** The measured window (warm-up excluded); over all rounds. */
  durationMs: number;
  ops: number;
  errors: number;
  errorSamples: string[];
  opsPerSec: number;
  /** Milliseconds. */
  latency: LatencySummary;
  histogram: HistogramBuckets;
  /** Operations completed in each second of the measured window. */
  throughput: number[];
  /** Workload-specific counts and checks. */
  extra: Record<string, unknown>;
  /** The watch workload only: every recorded put's slowest event (rounds back to back, as throughput). */
  putTail?: PutTail;
  /** When each measured window (one a round) opened and closed, by the wall clock (Unix ms): to line a run up with outside traces. */
  windows?: { startMs: number; endMs: number }[];
  /**
   * CPU used during the measured window, in percent of one core: by the load generator (this
   * process) and by all members together (undefined for --endpoints).
   */
  cpu?: {
    clientPercent: number;
    membersPercent: number | undefined;
    /** Every other process on the machine (the system not being measured included), when known; the busiest round's. */
    otherPercent?: number;
    /** DAMON's kdamond threads, when one runs and its CPU can be read (also inside otherPercent). */
    kdamondPercent?: number;
  };
  /**
   * The members' resident memory (VmRSS) when the measured window closed, all members added up,
   * in MiB (absent for --endpoints). Over rounds, the largest.
   */
  memory?: { membersRssMiB: number };
}

/** What a workload gets to run against one target. */
export interface RunContext {
  readonly client: RawClient;
  readonly args: BenchArgs;
  readonly target: TargetName;
  /** Unique per target and run: every key written lives under it. */
  readonly prefix: string;
  /**
   * The leader's host:port as the client's channels name it, when the tool knows it (it started
   * the cluster): watchers on the leader are reported apart from the followers', whose events wait
   * one more hop (the leader telling them the commit).
   */
  readonly leaderAddress: string | undefined;
  /** Called often with the fraction of the workload done and operations so far. */
  progress(fraction: number, ops: number): void;
  /** Called when the measured window opens and when it closes: the CPU used and the wall clock are read there (and the WAL fsync histograms, when the window opens before runOne's lead scrape has fired). */
  window(edge: 'start' | 'end'): void;
}

/**
 * What a target runs once, before its first workload, for --settle (split evenly, not recorded).
 * A Capstan member runs on V8, which optimizes a function only after it has run for a while, and
 * a request's path runs once or twice per request: a fresh cluster's sequential puts took twice
 * as long for their first seconds. Concurrent puts reach the paths' budgets fast; sequential puts
 * then settle the one-entry-per-batch shapes that put-seq, the first workload, measures.
 */
export const SETTLE_WORKLOADS = ['put', 'put-seq'] as const;

export const SPECS: Record<Exclude<WorkloadName, 'disk'>, WorkloadSpec> = {
  'put-seq': {
    name: 'put-seq',
    title: 'sequential puts',
    shape: () => ({ channels: 1, inflight: 1 }),
    describe: (a) => `one client, one put at a time, ${PUT_KEYSPACE} keys overwritten in turn, ${a.valueSize}-byte values`,
  },
  put: {
    name: 'put',
    title: 'concurrent puts',
    shape: (a) => ({ channels: a.channels, inflight: a.inflight }),
    describe: (a) => `${a.channels} channels x ${a.inflight} in flight, ${PUT_KEYSPACE} keys overwritten in turn, ${a.valueSize}-byte values`,
  },
  range: {
    name: 'range',
    title: 'linearizable single-key ranges',
    shape: (a) => ({ channels: a.channels, inflight: a.inflight }),
    describe: (a) => `${a.channels} channels x ${a.inflight} in flight, one of ${RANGE_KEYS} keys per range, linearizable (ReadIndex)`,
  },
  'range-serializable': {
    name: 'range-serializable',
    title: 'serializable single-key ranges',
    shape: (a) => ({ channels: a.channels, inflight: a.inflight }),
    describe: (a) => `${a.channels} channels x ${a.inflight} in flight, one of ${RANGE_KEYS} keys per range, serializable (local)`,
  },
  'range-prefix': {
    name: 'range-prefix',
    title: `${RANGE_KEYS.toLocaleString('en-US')}-key prefix ranges`,
    shape: (a) => ({ channels: a.channels, inflight: Math.max(1, Math.ceil(a.inflight / 4)) }),
    describe: (a) => `${a.channels} channels x ${Math.max(1, Math.ceil(a.inflight / 4))} in flight (a quarter of --inflight), each range returns ${RANGE_KEYS} keys of ${a.valueSize} bytes, linearizable`,
  },
  'txn-cas': {
    name: 'txn-cas',
    title: 'txn compare-and-swap',
    shape: (a) => ({ channels: a.channels, inflight: a.inflight }),
    describe: (a) =>
      `${a.channels} channels x ${a.inflight} in flight, each slot its own key: txn if mod_revision == last seen then put, else range (a failed compare is counted)`,
  },
  'lease-grant': {
    name: 'lease-grant',
    title: 'lease grants',
    shape: (a) => ({ channels: a.channels, inflight: a.inflight }),
    describe: (a) => `${a.channels} channels x ${a.inflight} in flight, LeaseGrant TTL ${LEASE_TTL_S} s (revoked afterwards, not measured)`,
  },
  'lease-keepalive': {
    name: 'lease-keepalive',
    title: 'lease keepalives',
    shape: (a) => ({ channels: a.channels, inflight: a.inflight }),
    describe: (a) => `${a.channels * a.inflight} LeaseKeepAlive streams (${a.inflight} per channel), one lease each, one keepalive outstanding per stream`,
  },
  watch: {
    name: 'watch',
    title: 'watch latency',
    shape: (a) => ({ channels: a.channels, inflight: 1 }),
    describe: (a) =>
      `${a.watchers} watchers on one prefix (one Watch stream each, over ${a.channels} channels), ${a.watchRate} puts/s from one client; latency = put sent to event received, at every watcher`,
  },
};

// ---------------------------------------------------------------- encoding helpers

const putReq = msg<PutRequest>('PutRequest');
const putRes = msg<PutResponse>('PutResponse');
const rangeReq = msg<RangeRequest>('RangeRequest');
const rangeRes = msg<{ count: number; kvs: unknown[] }>('RangeResponse');
const txnReq = msg<TxnRequest>('TxnRequest');
const txnRes = msg<TxnResponse>('TxnResponse');
const grantReq = msg<{ TTL: number; ID: bigint }>('LeaseGrantRequest');
const grantRes = msg<LeaseGrantResponse>('LeaseGrantResponse');
const revokeReq = msg<{ ID: bigint }>('LeaseRevokeRequest');
const keepAliveReq = msg<{ ID: bigint }>('LeaseKeepAliveRequest');
const watchReq = msg<{ createRequest?: { key: Buffer; rangeEnd?: Buffer }; cancelRequest?: { watchId: number } }>('WatchRequest');
const watchRes = msg<WatchResponse>('WatchResponse');

/** The range_end that makes `key` a prefix: its last byte below 0xff incremented, the rest dropped. */
export function prefixEnd(key: Buffer): Buffer {
  const end = Buffer.from(key);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

function keyOf(prefix: string, group: string, i: number): Buffer {
  return Buffer.from(`${prefix}${group}/${String(i).padStart(8, '0')}`);
}

function errText(err: unknown): string {
  const e = err as Partial<GrpcError> & { message?: string };
  return e.details ?? e.message ?? String(err);
}

/** Runs fn(i) for i in [0, n) with at most `concurrency` at once; throws the first error. */
async function eachLimited(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, worker));
}

async function preload(ctx: RunContext, group: string, n: number): Promise<void> {
  const value = randomBytes(ctx.args.valueSize);
  await eachLimited(n, SETUP_CONCURRENCY, async (i) => {
    await ctx.client.unaryAsync(i, `${KV}Put`, putReq.encode({ key: keyOf(ctx.prefix, group, i), value }));
  });
}

async function revokeAll(ctx: RunContext, ids: readonly bigint[]): Promise<number> {
  let failed = 0;
  await eachLimited(ids.length, SETUP_CONCURRENCY, async (i) => {
    try {
      await ctx.client.unaryAsync(i, `${LEASE}LeaseRevoke`, revokeReq.encode({ ID: ids[i]! }));
    } catch {
      failed++;
    }
  });
  return failed;
}

// ---------------------------------------------------------------- the closed loop

/** One request of slot `slot` (on channel slot % channels); `done` once it is answered. */
export type Op = (slot: number, done: (err: unknown) => void) => void;

interface Measured {
  hist: Histogram;
  timeline: Timeline;
  ops: number;
  errors: number;
  errorSamples: string[];
  windowMs: number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * `slots` requests outstanding for warm-up + duration; only requests sent inside the measured
 * window are recorded (those still out when it closes are awaited and recorded too).
 */
export function closedLoop(ctx: RunContext, slots: number, op: Op): Promise<Measured> {
  const { warmupMs, durationMs } = ctx.args;
  const t0 = performance.now();
  const recordFrom = t0 + warmupMs;
  const end = recordFrom + durationMs;
  const hist = new Histogram();
  const timeline = new Timeline(recordFrom);
  const errorSamples: string[] = [];
  let errors = 0;
  let opened = false;
  let closed = false;
  return new Promise((resolve) => {
    let running = slots;
    const ticker = setInterval(() => {
      const now = performance.now();
      if (!opened && now >= recordFrom) {
        opened = true;
        ctx.window('start');
      }
      if (!closed && now >= end) {
        closed = true;
        ctx.window('end');
      }
      ctx.progress(Math.min(1, (now - t0) / (end - t0)), hist.count);
    }, 100);
    const finish = (): void => {
      if (--running > 0) return;
      clearInterval(ticker);
      if (!opened) ctx.window('start');
      if (!closed) ctx.window('end');
      resolve({ hist, timeline, ops: hist.count, errors, errorSamples, windowMs: durationMs });
    };
    const fire = (slot: number): void => {
      const sent = performance.now();
      if (sent >= end) {
        finish();
        return;
      }
      op(slot, (err) => {
        const now = performance.now();
        if (err) {
          if (sent >= recordFrom) errors++;
          if (errorSamples.length < ERROR_SAMPLES) errorSamples.push(errText(err));
          setTimeout(() => fire(slot), ERROR_BACKOFF_MS);
          return;
        }
        if (sent >= recordFrom) {
          hist.recordMs(now - sent);
          timeline.mark(now);
        }
        fire(slot);
      });
    };
    for (let s = 0; s < slots; s++) fire(s);
  });
}

function result(ctx: RunContext, name: Exclude<WorkloadName, 'disk'>, m: Measured, extra: Record<string, unknown> = {}): WorkloadResult {
  const spec = SPECS[name];
  const { channels, inflight } = spec.shape(ctx.args);
  return {
    workload: name,
    target: ctx.target,
    description: spec.describe(ctx.args),
    channels,
    inflight,
    durationMs: m.windowMs,
    ops: m.ops,
    errors: m.errors,
    errorSamples: m.errorSamples,
    opsPerSec: m.ops / (m.windowMs / 1000),
    latency: m.hist.summary(),
    histogram: m.hist.buckets(),
    throughput: m.timeline.series(m.windowMs / 1000),
    extra,
  };
}

/** Channel of a slot: slots are dealt over the workload's channels in turn. */
function chan(slot: number, channels: number): number {
  return slot % channels;
}

// ---------------------------------------------------------------- workloads

async function puts(ctx: RunContext, name: 'put' | 'put-seq'): Promise<WorkloadResult> {
  const { channels, inflight } = SPECS[name].shape(ctx.args);
  const value = randomBytes(ctx.args.valueSize);
  const pool = Array.from({ length: PUT_KEYSPACE }, (_, i) => putReq.encode({ key: keyOf(ctx.prefix, name, i), value }));
  let next = 0;
  const m = await closedLoop(ctx, channels * inflight, (slot, done) => {
    ctx.client.unary(chan(slot, channels), `${KV}Put`, pool[next++ % PUT_KEYSPACE]!, done);
  });
  return result(ctx, name, m, { keyspace: PUT_KEYSPACE, valueSize: ctx.args.valueSize });
}

/** The keys read by both single-key range workloads, written once per target. */
const rangeKeysLoaded = new WeakMap<RawClient, Promise<void>>();

async function ranges(ctx: RunContext, name: 'range' | 'range-serializable'): Promise<WorkloadResult> {
  const { channels, inflight } = SPECS[name].shape(ctx.args);
  let loaded = rangeKeysLoaded.get(ctx.client);
  if (loaded === undefined) {
    loaded = preload(ctx, 'range', RANGE_KEYS);
    rangeKeysLoaded.set(ctx.client, loaded);
  }
  await loaded;
  const serializable = name === 'range-serializable';
  const pool = Array.from({ length: RANGE_KEYS }, (_, i) => rangeReq.encode({ key: keyOf(ctx.prefix, 'range', i), serializable }));
  let next = 0;
  const m = await closedLoop(ctx, channels * inflight, (slot, done) => {
    ctx.client.unary(chan(slot, channels), `${KV}Range`, pool[next++ % RANGE_KEYS]!, done);
  });
  return result(ctx, name, m, { keys: RANGE_KEYS, serializable });
}

async function rangePrefix(ctx: RunContext): Promise<WorkloadResult> {
  const { channels, inflight } = SPECS['range-prefix'].shape(ctx.args);
  await preload(ctx, 'prefix', RANGE_KEYS);
  const key = Buffer.from(`${ctx.prefix}prefix/`);
  const req = rangeReq.encode({ key, rangeEnd: prefixEnd(key) });
  // The answer is checked once (all keys there), not on every request: decoding is the client's cost.
  const check = rangeRes.decode(await ctx.client.unaryAsync(0, `${KV}Range`, req));
  if (check.count !== RANGE_KEYS || check.kvs.length !== RANGE_KEYS) throw new Error(`range-prefix: the prefix holds ${check.count} keys (${check.kvs.length} returned), not ${RANGE_KEYS}`);
  const m = await closedLoop(ctx, channels * inflight, (slot, done) => {
    ctx.client.unary(chan(slot, channels), `${KV}Range`, req, done);
  });
  return result(ctx, 'range-prefix', m, { keysPerRange: RANGE_KEYS });
}

async function txnCas(ctx: RunContext): Promise<WorkloadResult> {
  const { channels, inflight } = SPECS['txn-cas'].shape(ctx.args);
  const slots = channels * inflight;
  const value = randomBytes(ctx.args.valueSize);
  const keys = Array.from({ length: slots }, (_, i) => keyOf(ctx.prefix, 'cas', i));
  const rev = new Array<number>(slots).fill(0);
  await eachLimited(slots, SETUP_CONCURRENCY, async (i) => {
    rev[i] = putRes.decode(await ctx.client.unaryAsync(i, `${KV}Put`, putReq.encode({ key: keys[i]!, value }))).header.revision;
  });
  let failedCompares = 0;
  const m = await closedLoop(ctx, slots, (slot, done) => {
    const key = keys[slot]!;
    const req = txnReq.encode({
      compare: [{ result: CompareResult.EQUAL, target: CompareTarget.MOD, key, modRevision: rev[slot]! }],
      success: [{ requestPut: { key, value } }],
      failure: [{ requestRange: { key } }],
    });
    ctx.client.unary(chan(slot, channels), `${KV}Txn`, req, (err, res) => {
      if (err) return done(err);
      const r = txnRes.decode(res!);
      if (r.succeeded) rev[slot] = r.header.revision;
      else {
        failedCompares++;
        rev[slot] = r.responses[0]?.responseRange?.kvs[0]?.modRevision ?? rev[slot]!;
      }
      done(null);
    });
  });
  // Each key has one writer: a failed compare means a lost or misread revision.
  return result(ctx, 'txn-cas', m, { keys: slots, failedCompares });
}

async function leaseGrant(ctx: RunContext): Promise<WorkloadResult> {
  const { channels, inflight } = SPECS['lease-grant'].shape(ctx.args);
  const req = grantReq.encode({ TTL: LEASE_TTL_S, ID: 0n });
  const granted: bigint[] = [];
  const m = await closedLoop(ctx, channels * inflight, (slot, done) => {
    ctx.client.unary(chan(slot, channels), `${LEASE}LeaseGrant`, req, (err, res) => {
      if (err) return done(err);
      const r = grantRes.decode(res!);
      granted.push(r.ID);
      done(r.error ? new Error(r.error) : null);
    });
  });
  const revokeFailures = await revokeAll(ctx, granted);
  return result(ctx, 'lease-grant', m, { granted: granted.length, ttlS: LEASE_TTL_S, revokeFailures });
}

async function leaseKeepAlive(ctx: RunContext): Promise<WorkloadResult> {
  const { channels, inflight } = SPECS['lease-keepalive'].shape(ctx.args);
  const slots = channels * inflight;
  const req = grantReq.encode({ TTL: LEASE_TTL_S, ID: 0n });
  const ids = new Array<bigint>(slots);
  await eachLimited(slots, SETUP_CONCURRENCY, async (i) => {
    ids[i] = grantRes.decode(await ctx.client.unaryAsync(chan(i, channels), `${LEASE}LeaseGrant`, req)).ID;
  });
  const reqs = ids.map((ID) => keepAliveReq.encode({ ID }));
  const pending = new Array<((err: unknown) => void) | undefined>(slots);
  const streams = ids.map((_, slot) => {
    const s = ctx.client.stream(chan(slot, channels), `${LEASE}LeaseKeepAlive`);
    const fail = (err: unknown): void => {
      const p = pending[slot];
      pending[slot] = undefined;
      p?.(err ?? new Error('keepalive stream ended'));
    };
    s.on('data', () => {
      const p = pending[slot];
      pending[slot] = undefined;
      p?.(null);
    });
    s.on('error', fail);
    s.on('end', () => fail(undefined));
    return s;
  });
  let dead = 0;
  try {
    const m = await closedLoop(ctx, slots, (slot, done) => {
      const s = streams[slot]!;
      if (!s.open) {
        dead++;
        return void setTimeout(() => done(new Error('keepalive stream closed')), 100);
      }
      pending[slot] = done;
      s.write(reqs[slot]!);
    });
    return result(ctx, 'lease-keepalive', m, { leases: slots, streamsClosedEarly: dead });
  } finally {
    for (const s of streams) {
      s.removeAllListeners('error');
      s.on('error', () => {});
      s.cancel();
    }
    await revokeAll(ctx, ids);
  }
}

/** The watch workload's value: send time (performance.now(), ms), sequence number, recorded or warm-up. */
export function watchValue(size: number, sentMs: number, seq: number, recorded: boolean): Buffer {
  const b = Buffer.alloc(size);
  b.writeDoubleLE(sentMs, 0);
  b.writeUInt32LE(seq, 8);
  b.writeUInt8(recorded ? 1 : 0, 12);
  return b;
}

interface Watcher {
  stream: BidiStream;
  /** Where its events' latencies go besides the workload's histogram: its member's role (none when the leader is not known). */
  roleHist: Histogram | undefined;
  /** Events per sequence number (more than 1 is a duplicate). */
  seen: Uint8Array;
  recorded: number;
  error: string | undefined;
}

async function watch(ctx: RunContext): Promise<WorkloadResult> {
  const { args } = ctx;
  const { channels } = SPECS.watch.shape(args);
  const rate = args.watchRate;
  const prefix = Buffer.from(`${ctx.prefix}watch/`);
  const maxPuts = Math.ceil(((args.warmupMs + args.durationMs) / 1000) * rate) + 10;
  const hist = new Histogram();
  const putHist = new Histogram();
  // By sequence number: when the put was sent, and its slowest recorded event so far (0: none yet).
  const sentAt = new Float64Array(maxPuts);
  const slowest = new Float64Array(maxPuts);
  const atLeader = new Histogram();
  const atFollowers = new Histogram();
  const { leaderAddress } = ctx;
  const create = watchReq.encode({ createRequest: { key: prefix, rangeEnd: prefixEnd(prefix) } });
  let recordFrom = Infinity;
  const timeline = { t: new Timeline(0) };
  let duplicates = 0;

  // Watchers, each on its own stream, created before any put.
  const watchers: Watcher[] = [];
  const created: Promise<void>[] = [];
  for (let w = 0; w < args.watchers; w++) {
    const c = chan(w, channels);
    const stream = ctx.client.stream(c, `${WATCH}Watch`);
    const roleHist = leaderAddress === undefined ? undefined : ctx.client.addresses[c] === leaderAddress ? atLeader : atFollowers;
    const me: Watcher = { stream, roleHist, seen: new Uint8Array(maxPuts), recorded: 0, error: undefined };
    watchers.push(me);
    created.push(
      new Promise<void>((resolve, reject) => {
        let isCreated = false;
        stream.on('data', (buf: Buffer) => {
          const now = performance.now();
          const r = watchRes.decode(buf);
          if (r.created && !isCreated) {
            isCreated = true;
            resolve();
          }
          if (r.canceled) me.error = `watch canceled: ${r.cancelReason}`;
          for (const ev of r.events) {
            const v = ev.kv.value;
            if (v.length < 13) continue;
            const seq = v.readUInt32LE(8);
            if (seq >= maxPuts) continue;
            if (me.seen[seq]! > 0) duplicates++;
            me.seen[seq] = Math.min(255, me.seen[seq]! + 1);
            if (v.readUInt8(12) === 1 && me.seen[seq] === 1) {
              me.recorded++;
              const ms = now - v.readDoubleLE(0);
              if (ms > slowest[seq]!) slowest[seq] = ms;
              hist.recordMs(ms);
              me.roleHist?.recordMs(ms);
              timeline.t.mark(now);
            }
          }
        });
        stream.on('error', (err) => {
          if (me.error === undefined) me.error = errText(err);
          reject(err);
        });
        stream.write(create);
      }),
    );
  }
  const cleanup = (): void => {
    for (const w of watchers) {
      w.stream.removeAllListeners('error');
      w.stream.on('error', () => {});
      w.stream.cancel();
    }
  };
  try {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.all(created),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`watchers not created within ${WATCH_CREATE_MS / 1000} s`)), WATCH_CREATE_MS))),
      ]);
    } finally {
      clearTimeout(timer);
    }

    // The writer: channel 0 (the leader when this tool started the cluster), puts on schedule.
    const t0 = performance.now();
    recordFrom = t0 + args.warmupMs;
    timeline.t = new Timeline(recordFrom);
    const end = recordFrom + args.durationMs;
    const acked: number[] = [];
    let putErrors = 0;
    const putErrorSamples: string[] = [];
    let outstanding = 0;
    let opened = false;
    let seq = 0;
    await new Promise<void>((resolve) => {
      let allSent = false;
      const maybeDone = (): void => {
        if (allSent && outstanding === 0) resolve();
      };
      const tick = (): void => {
        const now = performance.now();
        if (!opened && now >= recordFrom) {
          opened = true;
          ctx.window('start');
        }
        const due = Math.min(maxPuts, Math.floor(((Math.min(now, end) - t0) / 1000) * rate) + 1);
        while (seq < due) {
          const mySeq = seq++;
          const sent = performance.now();
          sentAt[mySeq] = sent;
          const recorded = sent >= recordFrom && sent < end;
          const req = putReq.encode({ key: keyOf(ctx.prefix, 'watch', mySeq % 1000), value: watchValue(args.valueSize, sent, mySeq, recorded) });
          outstanding++;
          ctx.client.unary(0, `${KV}Put`, req, (err) => {
            outstanding--;
            if (err) {
              putErrors++;
              if (putErrorSamples.length < ERROR_SAMPLES) putErrorSamples.push(errText(err));
            } else {
              // Puts of the measured window only, as the events.
              if (recorded) {
                acked.push(mySeq);
                putHist.recordMs(performance.now() - sent);
              }
            }
            maybeDone();
          });
        }
        ctx.progress(Math.min(1, (now - t0) / (end - t0)), hist.count);
        if (now >= end) {
          if (!opened) ctx.window('start');
          ctx.window('end');
          allSent = true;
          maybeDone();
          return;
        }
        const nextDue = t0 + (seq / rate) * 1000;
        setTimeout(tick, Math.max(0, nextDue - performance.now()));
      };
      tick();
    });

    // Every acknowledged put must reach every watcher.
    const complete = (w: Watcher): boolean => acked.every((s) => w.seen[s]! > 0);
    const drainUntil = performance.now() + WATCH_DRAIN_MS;
    while (performance.now() < drainUntil && !watchers.every((w) => complete(w) || w.error !== undefined)) await sleep(50);
    let missing = 0;
    let watchersComplete = 0;
    for (const w of watchers) {
      const m = acked.filter((s) => w.seen[s] === 0).length;
      missing += m;
      if (m === 0) watchersComplete++;
    }
    const watcherErrors = watchers.map((w) => w.error).filter((e): e is string => e !== undefined);
    const measured: Measured = {
      hist,
      timeline: timeline.t,
      ops: hist.count,
      errors: putErrors + watcherErrors.length,
      errorSamples: [...putErrorSamples, ...watcherErrors].slice(0, ERROR_SAMPLES),
      windowMs: args.durationMs,
    };
    const tail: PutTail = { atMs: [], slowestMs: [] };
    for (const s of [...acked].sort((a, b) => a - b)) {
      if (slowest[s]! === 0) continue;
      tail.atMs.push(round2(sentAt[s]! - recordFrom));
      tail.slowestMs.push(round2(slowest[s]!));
    }
    return {
      ...result(ctx, 'watch', measured, {
        watchers: args.watchers,
        putsPerSec: rate,
        putsSent: seq,
        putsAcknowledged: acked.length,
        putErrors,
        expectedEvents: acked.length * args.watchers,
        receivedEvents: watchers.reduce((n, w) => n + acked.filter((s) => w.seen[s]! > 0).length, 0),
        missingEvents: missing,
        duplicateEvents: duplicates,
        watchersComplete,
        allReceived: missing === 0 && acked.length > 0,
        ...latencyFigures('putLatency', putHist),
        ...(leaderAddress === undefined
          ? {}
          : {
              leaderWatchers: watchers.filter((w) => w.roleHist === atLeader).length,
              ...latencyFigures('leaderWatchLatency', atLeader),
              ...latencyFigures('followerWatchLatency', atFollowers),
            }),
      }),
      putTail: tail,
    };
  } finally {
    cleanup();
  }
}

/** To 0.01 ms: results.json keeps every watch put, and more digits than that are noise. */
export function round2(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/** Runs one workload against one target. */
export function runWorkload(name: Exclude<WorkloadName, 'disk'>, ctx: RunContext): Promise<WorkloadResult> {
  switch (name) {
    case 'put-seq':
    case 'put':
      return puts(ctx, name);
    case 'range':
    case 'range-serializable':
      return ranges(ctx, name);
    case 'range-prefix':
      return rangePrefix(ctx);
    case 'txn-cas':
      return txnCas(ctx);
    case 'lease-grant':
      return leaseGrant(ctx);
    case 'lease-keepalive':
      return leaseKeepAlive(ctx);
    case 'watch':
      return watch(ctx);
  }
}
