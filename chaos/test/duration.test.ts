import t from 'tap';
import { durationMs } from '../src/duration.js';

t.test('units, fractions and bare seconds', async (t) => {
  const cases: readonly (readonly [string, number])[] = [
    ['250ms', 250],
    ['1.5s', 1500],
    ['90', 90_000],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['0', 0],
    ['0.0004s', 0],
  ];
  for (const [v, ms] of cases) t.equal(durationMs(v), ms, v);
});

t.test('anything else is not a duration', async (t) => {
  for (const v of ['', 's', '-1s', '1.s', '1 s', '1d', '1m30s', '1e3', 'ten']) t.equal(durationMs(v), undefined, JSON.stringify(v));
});
