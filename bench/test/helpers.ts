// Shared by the bench's tests (not a test itself: tap runs only *.test.js).
import { Histogram } from '../src/hist.js';

/** A histogram of these latencies, in ms. */
export function histOf(ms: readonly number[]): Histogram {
  const h = new Histogram();
  for (const v of ms) h.recordMs(v);
  return h;
}
