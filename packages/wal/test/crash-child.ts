// Spawned by crash.test.ts and lock.test.ts (not a test itself).
//   run <dir> <seed> <segmentBytes>: append batches forever; after each save resolves print
//     "ack <lastIndex> <term>" (and "snap <index>" after a snapshot), one line each.
//   hold <dir>: open the log, print "ready", and wait to be killed.
import { Wal } from '../src/index.js';
import { META, entryData, prng } from './helpers.js';

const MAX_BATCH = 16;
/** One batch in this many starts a new term. */
const TERM_EVERY = 8;
/** One batch in this many is followed by a snapshot. */
const SNAPSHOT_EVERY = 25;

function say(line: string): void {
  // Pipes are synchronous on Linux: the line is in the pipe before the next save starts.
  process.stdout.write(line + '\n');
}

async function run(dir: string, seed: number, segmentBytes: number): Promise<void> {
  const { wal, replay } = await Wal.open(dir, { metadata: META, segmentBytes, logger: () => {} });
  const rng = prng(seed);
  // The term of each live index, so a snapshot names the right (index, term).
  const terms = new Map<number, number>(replay.entries.map((e) => [e.index, e.term]));
  let last = wal.lastIndex;
  const lastEntry = replay.entries[replay.entries.length - 1];
  let term = Math.max(1, replay.hardState.term, lastEntry?.term ?? 0);
  let snapIndex = replay.snapshot?.metadata.index ?? 0;
  say(`ready ${last}`);
  for (;;) {
    if (rng.int(TERM_EVERY) === 0) term++;
    const n = 1 + rng.int(MAX_BATCH);
    const entries = [];
    for (let i = 1; i <= n; i++) {
      entries.push({ index: last + i, term, type: 0, data: entryData(last + i, term) });
      terms.set(last + i, term);
    }
    const p = await wal.save({ entries, hardState: { term, vote: 1, commit: last + n } });
    last = p.lastIndex;
    say(`ack ${last} ${term}`);
    if (rng.int(SNAPSHOT_EVERY) === 0 && last > snapIndex + 1) {
      const index = last - rng.int(Math.min(8, last - snapIndex - 1));
      await wal.saveSnapshot({
        metadata: { index, term: terms.get(index)!, confState: { voters: [META.memberId], learners: [] } },
        data: new TextEncoder().encode(`snap@${index}`),
      });
      for (const i of terms.keys()) if (i <= index) terms.delete(i);
      snapIndex = index;
      say(`snap ${index}`);
    }
  }
}

async function hold(dir: string): Promise<void> {
  await Wal.open(dir, { metadata: META, logger: () => {} });
  say('ready');
  setInterval(() => {}, 1 << 30);
}

const [mode, dir, seed, segmentBytes] = process.argv.slice(2);
if (mode === 'run') await run(dir!, Number(seed), Number(segmentBytes));
else if (mode === 'hold') await hold(dir!);
else throw new Error(`usage: crash-child.js run|hold <dir> ...`);
