// The histogram and percentile math, the throughput timeline, and the Prometheus histogram
// parsing and quantiles of the disk row.
import t from 'tap';
import { bucketOf, bucketRange, Histogram, Timeline } from '../src/hist.js';
import { addHistograms, fsyncStats, histogramQuantile, parseHistogram, subtractHistogram } from '../src/metrics.js';

t.test('every value falls in its bucket, buckets are contiguous and at most 1/128 wide', async (t) => {
  let bad = 0;
  let prevHigh = -1;
  for (let i = 0; i < 3000; i++) {
    const [lo, hi] = bucketRange(i);
    if (lo !== prevHigh + 1) bad++;
    if (hi - lo + 1 > Math.max(1, lo / 128)) bad++;
    if (bucketOf(lo) !== i || bucketOf(hi) !== i) bad++;
    prevHigh = hi;
  }
  t.equal(bad, 0, 'buckets 0..2999 tile the integers');
  for (const v of [0, 1, 255, 256, 257, 511, 512, 1000, 12345, 2 ** 20 - 1, 2 ** 20, 987654321, 2 ** 40 + 3, Number.MAX_SAFE_INTEGER]) {
    const [lo, hi] = bucketRange(bucketOf(v));
    t.ok(lo <= v && v <= hi, `${v} in [${lo}, ${hi}]`);
  }
});

t.test('values below 256 µs are exact', async (t) => {
  const h = new Histogram();
  for (let v = 1; v <= 200; v++) h.record(v);
  t.equal(h.count, 200);
  t.equal(h.min, 1);
  t.equal(h.max, 200);
  t.equal(h.quantile(0.5), 100);
  t.equal(h.quantile(0.99), 198);
  t.equal(h.quantile(0.995), 199);
  t.equal(h.quantile(1), 200);
  t.equal(h.quantile(0), 1);
  t.equal(h.mean, 100.5);
});

t.test('percentiles of a wide distribution are within 1/128, ordered, and bounded by min and max', async (t) => {
  const h = new Histogram();
  const values: number[] = [];
  let x = 12345;
  for (let i = 0; i < 20_000; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const v = Math.round(100 * Math.exp((x / 2 ** 31) * 10)); // 100 µs .. ~2.2 s, log-uniform
    values.push(v);
    h.record(v);
  }
  values.sort((a, b) => a - b);
  for (const q of [0.1, 0.5, 0.9, 0.99, 0.999]) {
    const exact = values[Math.ceil(q * values.length) - 1]!;
    const got = h.quantile(q);
    t.ok(got >= exact && got <= exact * (1 + 1 / 128), `q${q}: ${got} vs exact ${exact}`);
  }
  const s = h.summary();
  t.ok(s.min <= s.p50 && s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.p999 && s.p999 <= s.max, 'ordered');
  t.equal(s.max, values[values.length - 1]! / 1000, 'max exact, in ms');
  t.equal(s.count, 20_000);
});

t.test('milliseconds, rounding, negatives, empty', async (t) => {
  const h = new Histogram();
  t.same(h.summary(), { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 });
  t.same(h.distribution(), []);
  h.recordMs(1.5);
  h.record(-3);
  h.record(0.4);
  t.equal(h.count, 3);
  t.equal(h.min, 0);
  t.equal(h.max, 1500);
});

t.test('add and the JSON buckets round-trip', async (t) => {
  const a = new Histogram();
  const b = new Histogram();
  for (let i = 1; i <= 1000; i++) (i % 2 ? a : b).record(i * 37);
  const all = new Histogram();
  all.add(a);
  all.add(b);
  t.equal(all.count, 1000);
  t.equal(all.min, 37);
  t.equal(all.max, 37_000);
  const back = Histogram.fromBuckets(all.buckets());
  t.equal(back.count, 1000);
  for (const q of [0.5, 0.9, 0.99]) t.equal(back.quantile(q), all.quantile(q), `q${q} survives the round trip`);
  t.equal(all.buckets().reduce((n, [, , c]) => n + c, 0), 1000);
});

t.test('distribution points for the percentile plot', async (t) => {
  const h = new Histogram();
  for (let i = 1; i <= 10_000; i++) h.record(i);
  const d = h.distribution();
  t.same(d[0], [0, 0.001]);
  t.same(d[d.length - 1], [1, 10]);
  t.ok(d.some(([q]) => Math.abs(q - 0.999) < 1e-12), 'has 99.9%');
  t.notOk(d.some(([q]) => Math.abs(q - 0.99999) < 1e-12), 'no 99.999% from 10,000 values');
  for (let i = 1; i < d.length; i++) t.ok(d[i]![0] > d[i - 1]![0] && d[i]![1] >= d[i - 1]![1], `point ${i} increases`);
});

t.test('timeline counts per second from its start', async (t) => {
  const tl = new Timeline(1000);
  tl.mark(500); // before the start: ignored
  tl.mark(1000);
  tl.mark(1999);
  tl.mark(2500, 3);
  tl.mark(4100);
  t.same(tl.series(), [2, 3, 0, 1]);
  t.same(tl.series(2), [2, 3]);
  t.same(tl.series(6), [2, 3, 0, 1, 0, 0]);
});

const PROM = `# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync called by WAL.
# TYPE etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 10
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.002"} 50
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.004"} 90
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.008"} 100
etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 100
etcd_disk_wal_fsync_duration_seconds_sum 0.25
etcd_disk_wal_fsync_duration_seconds_count 100
etcd_disk_backend_commit_duration_seconds_bucket{le="0.001"} 7
`;

t.test('the WAL fsync histogram from /metrics text, its quantiles and deltas', async (t) => {
  const h = parseHistogram(PROM, 'etcd_disk_wal_fsync_duration_seconds')!;
  t.same(h.buckets, [
    [0.001, 10],
    [0.002, 50],
    [0.004, 90],
    [0.008, 100],
    [Infinity, 100],
  ]);
  t.equal(h.count, 100);
  t.equal(h.sum, 0.25);
  t.equal(parseHistogram(PROM, 'nothing_here'), undefined);
  // histogram_quantile: rank 50 is the top of the 2 ms bucket; rank 70 is half way through 2..4 ms.
  t.equal(histogramQuantile(h, 0.5), 0.002);
  t.ok(Math.abs(histogramQuantile(h, 0.7) - 0.003) < 1e-12);
  t.ok(Math.abs(histogramQuantile(h, 0.05) - 0.0005) < 1e-12, 'the first bucket starts at 0');
  t.ok(Number.isNaN(histogramQuantile({ buckets: [], count: 0, sum: 0 }, 0.5)));
  const two = addHistograms([h, h]);
  t.equal(two.count, 200);
  t.same(two.buckets[1], [0.002, 100]);
  const d = subtractHistogram(two, h);
  t.same(d, h);
  const s = fsyncStats(h);
  t.equal(s.fsyncs, 100);
  t.equal(s.p50, 2);
  t.equal(s.mean, 2.5);
  t.same(s.buckets, [
    [0.001, 10],
    [0.002, 40],
    [0.004, 40],
    [0.008, 10],
    [null, 0],
  ]);
  t.ok(s.p50 <= s.p90 && s.p90 <= s.p99);
});
