import t from 'tap';
import { durationMs } from '../src/duration.js';

t.test('units, fractions and bare seconds', async (t) => {
  t.equal(durationMs('250ms'), 250);
  t.equal(durationMs('1.5s'), 1500);
  t.equal(durationMs('90'), 90_000);
  t.equal(durationMs('2m'), 120_000);
  t.equal(durationMs('1h'), 3_600_000);
  t.equal(durationMs('0'), 0);
  t.equal(durationMs('0.0004s'), 0, 'rounded to whole ms');
});

t.test('anything else is not a duration', async (t) => {
  for (const v of ['', 's', '-1s', '1.s', '1 s', '1d', '1m30s', '1e3', 'ten']) t.equal(durationMs(v), undefined, JSON.stringify(v));
});
