// Shared by the bench's tests (not a test itself: tap runs only *.test.js).
import { Histogram, latencyFigures } from '../src/hist.js';

/** A histogram of these latencies, in ms. */
export function histOf(ms: readonly number[]): Histogram {
  const h = new Histogram();
  for (const v of ms) h.recordMs(v);
  return h;
}

/** A result's extras for one latency of these values, as a workload reports it (hist.ts's latencyFigures). */
export function latencyExtra(key: string, ms: readonly number[]): Record<string, unknown> {
  return latencyFigures(key, histOf(ms));
}
