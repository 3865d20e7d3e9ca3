/**
 * A member process collects its JavaScript heap's garbage once it has gone quiet.
 *
 * Why: V8 starts its next full collection when the old generation reaches four times what the
 * last one left alive (`v8tuning.ts`), and neither its own memory reducer nor anything else
 * collects a heap that stops growing. A heavy burst therefore leaves its garbage resident for as
 * long as the member then stays quiet: three members that had just served 16x16 puts, txn-cas
 * and lease workloads held 491, 420 and 414 MB for the next minute and more, idle, with about
 * 40 MB of each V8 heap alive. Two full collections brought them to 219, 208 and 210 MB
 * (bench/FINDINGS.md, "A member's memory once it goes quiet").
 *
 * A full collection holds the event loop for 30-200 ms, so it is made only where that costs no
 * request anything: after the loop has been nearly idle for a while, and only when the heap has
 * grown well past where the last one left it. Each check is one event-loop-utilization reading and
 * one heap-statistics call.
 */
import { performance } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** How often the member looks at its event loop and heap. */
export const QUIET_GC_CHECK_MS = 2_000;
/** Checks in a row the event loop must have been quiet for (30 s). */
export const QUIET_GC_QUIET_CHECKS = 15;
/**
 * Quiet: the loop busy less than this share of a check's interval. An idle member's main thread
 * uses 1.2-1.4% of a CPU (heartbeats, metrics); one serving the bench's 100 puts a second with 100
 * watchers, 14-18%.
 */
export const QUIET_GC_MAX_UTILIZATION = 0.05;
/** The committed heap must be this far above the lowest it has been since the last collection. */
export const QUIET_GC_MIN_GROWTH_BYTES = 32 * 1024 * 1024;
/**
 * Full collections made, one a check: the first frees the dead objects, the second gives back
 * most of the pages the first emptied (196 -> 127 -> 52 MB committed in one member).
 */
export const QUIET_GC_COLLECTIONS = 2;

export interface QuietGCLimits {
  readonly checkMs: number;
  readonly quietChecks: number;
  readonly maxUtilization: number;
  readonly minGrowthBytes: number;
  readonly collections: number;
}

export const QUIET_GC_LIMITS: QuietGCLimits = {
  checkMs: QUIET_GC_CHECK_MS,
  quietChecks: QUIET_GC_QUIET_CHECKS,
  maxUtilization: QUIET_GC_MAX_UTILIZATION,
  minGrowthBytes: QUIET_GC_MIN_GROWTH_BYTES,
  collections: QUIET_GC_COLLECTIONS,
};

export interface HeapReading {
  /** Memory V8 holds for the heap (`total_heap_size`). */
  readonly committedBytes: number;
  /** Objects in it, dead or alive until the next collection (`used_heap_size`). */
  readonly usedBytes: number;
}

/** What the collector reads and does; the real one is `processProbe()`. */
export interface Probe {
  /** The event loop's busy share (0..1) since the previous call; a call also starts the next interval. */
  utilization(): number;
  heap(): HeapReading;
  /** One full, synchronous collection. */
  collect(): void;
  nowMs(): number;
}

export type Decision =
  | { readonly kind: 'busy'; readonly utilization: number }
  | { readonly kind: 'waiting'; readonly quietChecks: number }
  | { readonly kind: 'small'; readonly growthBytes: number }
  | { readonly kind: 'collected'; readonly before: HeapReading; readonly after: HeapReading; readonly pauseMs: number };

export class QuietCollector {
  private quietChecks = 0;
  /** The lowest committed heap seen since the last collection; none before the first check. */
  private lowBytes: number | undefined;
  /** Collections still to make, one a check, while the loop stays quiet. */
  private pending = 0;

  constructor(
    private readonly probe: Probe,
    private readonly limits: QuietGCLimits = QUIET_GC_LIMITS,
  ) {}

  check(): Decision {
    const utilization = this.probe.utilization();
    const heap = this.probe.heap();
    this.lowBytes = Math.min(this.lowBytes ?? heap.committedBytes, heap.committedBytes);
    if (utilization >= this.limits.maxUtilization) {
      this.quietChecks = 0;
      this.pending = 0;
      return { kind: 'busy', utilization };
    }
    this.quietChecks++;
    if (this.pending === 0) {
      if (this.quietChecks < this.limits.quietChecks) return { kind: 'waiting', quietChecks: this.quietChecks };
      const growthBytes = heap.committedBytes - this.lowBytes;
      if (growthBytes < this.limits.minGrowthBytes) return { kind: 'small', growthBytes };
      this.pending = this.limits.collections;
    }
    // One collection a check: three members going quiet together, each collecting twice at once
    // on two CPUs, held their loops 122-277 ms.
    const start = this.probe.nowMs();
    this.probe.collect();
    const pauseMs = this.probe.nowMs() - start;
    const after = this.probe.heap();
    // The next interval starts after the collection: its own pause must not count as the loop
    // being busy.
    this.probe.utilization();
    if (--this.pending === 0) {
      // The pages the collections emptied go back over the next moments: the new low is read from
      // the checks after the last one, which must again find the loop quiet for the whole window.
      this.lowBytes = undefined;
      this.quietChecks = 0;
    }
    return { kind: 'collected', before: heap, after, pauseMs };
  }
}

/**
 * V8's `gc` for this process, without putting it on the global object: with --expose-gc set
 * (it may be set at run time), every new context gets it.
 */
function fullCollection(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** The probe of this process: its event loop, its V8 heap, V8's own full collection. */
export function processProbe(): Probe {
  let last = performance.eventLoopUtilization();
  const gc = fullCollection();
  return {
    utilization: () => {
      const now = performance.eventLoopUtilization();
      const since = performance.eventLoopUtilization(now, last);
      last = now;
      return since.utilization;
    },
    heap: () => {
      const s = getHeapStatistics();
      return { committedBytes: s.total_heap_size, usedBytes: s.used_heap_size };
    },
    collect: gc,
    nowMs: () => performance.now(),
  };
}

export type CollectedLog = (fields: Record<string, number>) => void;

const MIB = 1024 * 1024;
const tenths = (x: number): number => Math.round(x * 10) / 10;

/**
 * Checks every `limits.checkMs` and reports each collection to `logged`. The timer does not keep
 * the process alive. Returns the function that stops it.
 */
export function startQuietCollector(logged: CollectedLog, probe: Probe = processProbe(), limits: QuietGCLimits = QUIET_GC_LIMITS): () => void {
  const collector = new QuietCollector(probe, limits);
  const timer = setInterval(() => {
    const d = collector.check();
    if (d.kind !== 'collected') return;
    logged({
      'heap-committed-before-mib': tenths(d.before.committedBytes / MIB),
      'heap-used-before-mib': tenths(d.before.usedBytes / MIB),
      'heap-committed-after-mib': tenths(d.after.committedBytes / MIB),
      'heap-used-after-mib': tenths(d.after.usedBytes / MIB),
      'pause-ms': tenths(d.pauseMs),
    });
  }, limits.checkMs).unref();
  return () => clearInterval(timer);
}
