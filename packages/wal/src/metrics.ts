// Metrics as plain data, named and bucketed as etcd's, so the server can hand them to prom-client
// later without this package depending on it.

export interface HistogramData {
  readonly name: string;
  readonly help: string;
  /** Upper bounds (le), ascending; the +Inf bucket is implied by `count`. */
  readonly buckets: readonly number[];
  /** Cumulative, as Prometheus exposes them: counts[i] = observations <= buckets[i]. */
  readonly counts: readonly number[];
  readonly sum: number;
  readonly count: number;
}

export interface CounterData {
  readonly name: string;
  readonly help: string;
  readonly value: number;
}

export function exponentialBuckets(start: number, factor: number, count: number): number[] {
  const out: number[] = [];
  for (let i = 0, b = start; i < count; i++, b *= factor) out.push(b);
  return out;
}

/** etcd: prometheus.ExponentialBuckets(0.001, 2, 14), i.e. 1 ms to 8.192 s. */
export const FSYNC_DURATION_BUCKETS: readonly number[] = Object.freeze(exponentialBuckets(0.001, 2, 14));

export class Histogram {
  private readonly perBucket: number[];
  private total = 0;
  private n = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {
    this.perBucket = new Array<number>(buckets.length).fill(0);
  }

  observe(v: number): void {
    this.total += v;
    this.n++;
    const i = this.buckets.findIndex((b) => v <= b);
    if (i >= 0) this.perBucket[i]!++;
  }

  data(): HistogramData {
    let acc = 0;
    const counts = this.perBucket.map((c) => (acc += c));
    return { name: this.name, help: this.help, buckets: this.buckets, counts, sum: this.total, count: this.n };
  }
}

export class Counter {
  private v = 0;
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(n = 1): void {
    this.v += n;
  }
  data(): CounterData {
    return { name: this.name, help: this.help, value: this.v };
  }
}

export interface WalMetrics {
  readonly fsyncDuration: HistogramData;
  readonly bytesWritten: CounterData;
}

export class WalMetricSet {
  readonly fsyncDuration = new Histogram(
    'etcd_disk_wal_fsync_duration_seconds',
    'The latency distributions of fsync called by WAL.',
    FSYNC_DURATION_BUCKETS,
  );
  readonly bytesWritten = new Counter('etcd_disk_wal_write_bytes_total', 'Total number of bytes written in WAL.');

  data(): WalMetrics {
    return { fsyncDuration: this.fsyncDuration.data(), bytesWritten: this.bytesWritten.data() };
  }
}
