// Shared by the bench's tests (not a test itself: tap runs only *.test.js).
import { Histogram } from '../src/hist.js';

/** A histogram of these latencies, in ms. */
export function histOf(ms: readonly number[]): Histogram {
  const h = new Histogram();
  for (const v of ms) h.recordMs(v);
  return h;
}

/** A result's extras for one latency, as a workload reports it: its summary under `key`, its buckets under `${key}Histogram` (rounds.ts merges the pair). */
export function latencyExtra(key: string, ms: readonly number[]): Record<string, unknown> {
  const h = histOf(ms);
  return { [key]: h.summary(), [`${key}Histogram`]: h.buckets() };
}
