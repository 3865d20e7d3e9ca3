/**
 * Latency histograms in the manner of HdrHistogram, kept small: integer microseconds in
 * log-linear buckets, 128 per power of two (values below 256 µs exactly; above, each bucket is
 * under 0.8% wide), so any percentile is known within 0.8% whatever the range, in constant
 * memory, and histograms add up. And per-second counts for throughput over time.
 */

/** Sub-buckets per power of two: the precision (1/SUB relative, at worst). */
const SUB_BITS = 7;
const SUB = 1 << SUB_BITS;
/** Enough buckets for any safe integer value. */
const BUCKETS = (53 - SUB_BITS + 1) * SUB + SUB;

/** The bucket of integer value v >= 0. Exported for tests. */
export function bucketOf(v: number): number {
  if (v < 2 * SUB) return v;
  const exp = Math.floor(Math.log2(v)) - SUB_BITS;
  // Math.log2 may round up just below a power of two: keep the mantissa in [SUB, 2*SUB).
  let e = exp;
  while (Math.floor(v / 2 ** e) >= 2 * SUB) e++;
  while (Math.floor(v / 2 ** e) < SUB) e--;
  return e * SUB + Math.floor(v / 2 ** e);
}

/** The smallest and largest values of bucket i. Exported for tests. */
export function bucketRange(i: number): [number, number] {
  if (i < 2 * SUB) return [i, i];
  const e = Math.floor(i / SUB) - 1;
  const mant = i - e * SUB;
  return [mant * 2 ** e, (mant + 1) * 2 ** e - 1];
}

/** [lowest value, highest value, count] of every non-empty bucket, in order: the JSON form. */
export type HistogramBuckets = [number, number, number][];

export interface LatencySummary {
  count: number;
  /** Milliseconds. */
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export class Histogram {
  private counts = new Float64Array(BUCKETS);
  private n = 0;
  private sum = 0;
  private lo = Infinity;
  private hi = -Infinity;

  /** Records one value in microseconds (rounded to an integer; negatives count as 0). */
  record(us: number): void {
    const v = us > 0 ? Math.round(us) : 0;
    this.counts[bucketOf(v)]!++;
    this.n++;
    this.sum += v;
    if (v < this.lo) this.lo = v;
    if (v > this.hi) this.hi = v;
  }

  /** Records a duration given in milliseconds. */
  recordMs(ms: number): void {
    this.record(ms * 1000);
  }

  get count(): number {
    return this.n;
  }

  /** Microseconds; 0 when empty. */
  get min(): number {
    return this.n === 0 ? 0 : this.lo;
  }

  get max(): number {
    return this.n === 0 ? 0 : this.hi;
  }

  get mean(): number {
    return this.n === 0 ? 0 : this.sum / this.n;
  }

  /**
   * The value at quantile q (0..1) in microseconds: the highest value of the bucket holding the
   * ceil(q*count)-th smallest value (as HdrHistogram's highest equivalent value), never above
   * the max nor below the min recorded. 0 when empty.
   */
  quantile(q: number): number {
    if (this.n === 0) return 0;
    if (q <= 0) return this.lo;
    if (q >= 1) return this.hi;
    const rank = Math.max(1, Math.ceil(q * this.n));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.max(this.lo, Math.min(this.hi, bucketRange(i)[1]));
    }
    return this.hi;
  }

  /** Adds another histogram's values to this one. */
  add(other: Histogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i]! += other.counts[i]!;
    this.n += other.n;
    this.sum += other.sum;
    if (other.n > 0) {
      this.lo = Math.min(this.lo, other.lo);
      this.hi = Math.max(this.hi, other.hi);
    }
  }

  /** Count, min, mean, percentiles and max, in milliseconds. */
  summary(): LatencySummary {
    const ms = (us: number): number => us / 1000;
    return {
      count: this.n,
      min: ms(this.min),
      mean: ms(this.mean),
      p50: ms(this.quantile(0.5)),
      p90: ms(this.quantile(0.9)),
      p99: ms(this.quantile(0.99)),
      p999: ms(this.quantile(0.999)),
      max: ms(this.max),
    };
  }

  buckets(): HistogramBuckets {
    const out: HistogramBuckets = [];
    for (let i = 0; i < BUCKETS; i++) {
      const c = this.counts[i]!;
      if (c > 0) out.push([...bucketRange(i), c]);
    }
    return out;
  }

  /**
   * A histogram from buckets() (values land in their bucket's lowest value, so min, max and
   * mean are known to the bucket's precision only).
   */
  static fromBuckets(b: HistogramBuckets): Histogram {
    const h = new Histogram();
    for (const [low, high, count] of b) {
      const i = bucketOf(low);
      h.counts[i]! += count;
      h.n += count;
      h.sum += low * count;
      h.lo = Math.min(h.lo, low);
      h.hi = Math.max(h.hi, high);
    }
    return h;
  }

  /**
   * Points of the percentile distribution for plotting: [q, value in ms] at the quantiles
   * 0, 0.1 .. 0.9, then 0.99, 0.999, ... up to 1 - 1/count, then the max (q = 1).
   */
  distribution(): [number, number][] {
    if (this.n === 0) return [];
    const qs: number[] = [];
    for (let k = 0; k < 10; k++) qs.push(k / 10);
    for (const q of [0.95, 0.97]) qs.push(q);
    for (let nines = 2; nines <= 7; nines++) {
      const q = 1 - 10 ** -nines;
      if (q > 1 - 1 / this.n) break;
      qs.push(q);
      if (nines < 5) qs.push(1 - 5 * 10 ** -(nines + 1));
    }
    qs.sort((a, b) => a - b);
    const pts: [number, number][] = qs.map((q) => [q, this.quantile(q) / 1000]);
    pts.push([1, this.max / 1000]);
    return pts;
  }
}

/**
 * A latency figure kept beside a result's other figures: its summary under `key`, and its
 * buckets under the key with `Histogram` appended, so that rounds can be added up exactly
 * (rounds.ts reads the pair by this naming).
 */
export function latencyFigures(key: string, h: Histogram): Record<string, LatencySummary | HistogramBuckets> {
  return { [key]: h.summary(), [histogramKey(key)]: h.buckets() };
}

/** Where latencyFigures keeps the buckets of the latency figure `key`. */
export function histogramKey(key: string): string {
  return `${key}Histogram`;
}

/** Events per whole second since a start time (ms, performance.now()). */
export class Timeline {
  private readonly perSecond: number[] = [];

  constructor(readonly startMs: number) {}

  mark(nowMs: number, n = 1): void {
    const s = Math.floor((nowMs - this.startMs) / 1000);
    if (s < 0) return;
    while (this.perSecond.length <= s) this.perSecond.push(0);
    this.perSecond[s]! += n;
  }

  /** Counts per second, the first second first; trimmed to `seconds` when given. */
  series(seconds?: number): number[] {
    const out = [...this.perSecond];
    if (seconds !== undefined) {
      while (out.length < seconds) out.push(0);
      out.length = Math.max(0, Math.ceil(seconds));
    }
    return out;
  }
}
