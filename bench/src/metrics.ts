/**
 * The members' WAL fsync histogram (`etcd_disk_wal_fsync_duration_seconds`, which Capstan and
 * etcd both export on /metrics, with etcd's buckets), scraped before and after a measured window:
 * the difference is the fsyncs of that window.
 */

export const WAL_FSYNC = 'etcd_disk_wal_fsync_duration_seconds';
const SCRAPE_TIMEOUT_MS = 10_000;

/** A Prometheus histogram: cumulative counts per upper bound (seconds, +Inf last), count and sum. */
export interface PromHistogram {
  /** [le, cumulative count], in increasing le; the last le is Infinity. */
  buckets: [number, number][];
  count: number;
  sum: number;
}

export const EMPTY_HISTOGRAM: PromHistogram = { buckets: [], count: 0, sum: 0 };

/** The histogram `name` from Prometheus text format (every series of that name added up), or undefined. */
export function parseHistogram(text: string, name: string): PromHistogram | undefined {
  const byLe = new Map<number, number>();
  let count = 0;
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^(\S+?)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m === null) continue;
    const value = Number(m[3]);
    if (m[1] === `${name}_bucket`) {
      const le = /le="([^"]+)"/.exec(m[2] ?? '');
      if (le === null) continue;
      const bound = le[1] === '+Inf' ? Infinity : Number(le[1]);
      byLe.set(bound, (byLe.get(bound) ?? 0) + value);
      found = true;
    } else if (m[1] === `${name}_count`) {
      count += value;
      found = true;
    } else if (m[1] === `${name}_sum`) {
      sum += value;
    }
  }
  if (!found) return undefined;
  return { buckets: [...byLe.entries()].sort((a, b) => a[0] - b[0]), count, sum };
}

/** Adds histograms with the same buckets (members of one cluster). */
export function addHistograms(hs: readonly PromHistogram[]): PromHistogram {
  const byLe = new Map<number, number>();
  let count = 0;
  let sum = 0;
  for (const h of hs) {
    for (const [le, c] of h.buckets) byLe.set(le, (byLe.get(le) ?? 0) + c);
    count += h.count;
    sum += h.sum;
  }
  return { buckets: [...byLe.entries()].sort((a, b) => a[0] - b[0]), count, sum };
}

/** after - before, bucket by bucket (a bucket missing before counts as 0). */
export function subtractHistogram(after: PromHistogram, before: PromHistogram): PromHistogram {
  const prev = new Map(before.buckets);
  return {
    buckets: after.buckets.map(([le, c]) => [le, Math.max(0, c - (prev.get(le) ?? 0))]),
    count: Math.max(0, after.count - before.count),
    sum: Math.max(0, after.sum - before.sum),
  };
}

/**
 * The q-quantile in seconds as Prometheus' histogram_quantile computes it: linear within the
 * bucket that holds the rank (from 0 for the first), the highest finite bound if it falls in
 * +Inf. NaN when empty.
 */
export function histogramQuantile(h: PromHistogram, q: number): number {
  const total = h.buckets.length > 0 ? h.buckets[h.buckets.length - 1]![1] : 0;
  if (total === 0) return NaN;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, c] of h.buckets) {
    if (c >= rank) {
      if (le === Infinity) return prevLe;
      if (c === prevCount) return le;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / (c - prevCount);
    }
    prevLe = le;
    prevCount = c;
  }
  return prevLe;
}

export interface FsyncStats {
  fsyncs: number;
  /** Milliseconds, estimated from the buckets (histogram_quantile). */
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  /** The delta histogram: [upper bound in seconds (null for +Inf), count in that bucket alone]. */
  buckets: [number | null, number][];
}

export function fsyncStats(h: PromHistogram): FsyncStats {
  const ms = (s: number): number => (Number.isNaN(s) ? NaN : s * 1000);
  const own: [number | null, number][] = [];
  let prev = 0;
  for (const [le, c] of h.buckets) {
    own.push([le === Infinity ? null : le, c - prev]);
    prev = c;
  }
  return {
    fsyncs: h.count,
    p50: ms(histogramQuantile(h, 0.5)),
    p90: ms(histogramQuantile(h, 0.9)),
    p99: ms(histogramQuantile(h, 0.99)),
    mean: h.count > 0 ? (h.sum / h.count) * 1000 : NaN,
    buckets: own,
  };
}

/** The WAL fsync histogram of every member added up; members that do not answer are skipped. */
export async function scrapeWalFsync(metricsEndpoints: readonly string[]): Promise<{ hist: PromHistogram; answered: number }> {
  const got = await Promise.all(
    metricsEndpoints.map(async (e) => {
      try {
        const base = /^https?:\/\//.test(e) ? e.replace(/\/$/, '') : `http://${e}`;
        const r = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) });
        return r.ok ? parseHistogram(await r.text(), WAL_FSYNC) : undefined;
      } catch {
        return undefined;
      }
    }),
  );
  const hs = got.filter((h): h is PromHistogram => h !== undefined);
  return { hist: addHistograms(hs), answered: hs.length };
}
