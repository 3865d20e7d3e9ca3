// SIGKILL a writer at seeded-random moments; every index it acknowledged must come back intact.
import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Wal } from '../src/index.js';
import { SMALL_SEGMENT, entryData, prng, sameBytes, tempDir } from './helpers.js';

const SEED = Number(process.env['WAL_CRASH_SEED'] ?? 20240917);
const ROUNDS = Number(process.env['WAL_CRASH_ROUNDS'] ?? 24);
const CHILD = fileURLToPath(new URL('./crash-child.js', import.meta.url));
/** Longest the child runs before it is killed, counted from when it is ready. */
const MAX_RUN_MS = 250;
/** Longest wait counted from spawn: may kill it while it is still opening and repairing. */
const MAX_EARLY_MS = 150;

interface Round {
  /** index -> term of every acknowledged entry this round. */
  acked: Map<number, number>;
  snapshots: number[];
  ready: boolean;
  exit: { code: number | null; signal: NodeJS.Signals | null };
  stderr: string;
}

function runChild(dir: string, seed: number, killAfterMs: number, fromSpawn: boolean): Promise<Round> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, 'run', dir, String(seed), String(SMALL_SEGMENT)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const round: Round = { acked: new Map(), snapshots: [], ready: false, exit: { code: null, signal: null }, stderr: '' };
    let buffered = '';
    let prevLast: number | undefined;
    const kill = (): void => {
      // By pid, this child only.
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
    };
    if (fromSpawn) setTimeout(kill, killAfterMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const [what, a, b] = buffered.slice(0, nl).split(' ');
        buffered = buffered.slice(nl + 1);
        if (what === 'ready') {
          round.ready = true;
          prevLast = Number(a);
          if (!fromSpawn) setTimeout(kill, killAfterMs);
        } else if (what === 'ack') {
          const last = Number(a);
          for (let i = prevLast! + 1; i <= last; i++) round.acked.set(i, Number(b));
          prevLast = last;
        } else if (what === 'snap') {
          round.snapshots.push(Number(a));
        }
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => (round.stderr += s));
    child.on('error', reject);
    // 'exit' comes after the child is reaped: its pid is free, so its lock is stale.
    child.on('exit', (code, signal) => {
      round.exit = { code, signal };
      resolve(round);
    });
  });
}

t.test(`SIGKILL at random moments loses no acknowledged entry (seed ${SEED}, ${ROUNDS} rounds)`, async (t) => {
  const dir = tempDir(t);
  const rng = prng(SEED);
  const acked = new Map<number, number>();
  let maxAcked = 0;
  let maxSnapshot = 0;
  let totalAcks = 0;
  let earlyKills = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const fromSpawn = rng.int(4) === 0;
    const delay = fromSpawn ? rng.int(MAX_EARLY_MS) : rng.int(4) === 0 ? rng.int(5) : rng.int(MAX_RUN_MS);
    const r = await runChild(dir, SEED * 1000 + round, delay, fromSpawn);
    if (r.exit.signal !== 'SIGKILL') {
      t.fail(`round ${round}: child exited with ${JSON.stringify(r.exit)}: ${r.stderr}`);
      break;
    }
    if (!r.ready) earlyKills++;
    for (const [i, term] of r.acked) acked.set(i, term);
    for (const i of r.acked.keys()) maxAcked = Math.max(maxAcked, i);
    totalAcks += r.acked.size;
    for (const s of r.snapshots) maxSnapshot = Math.max(maxSnapshot, s);

    const { wal, replay } = await Wal.open(dir, { logger: () => {} });
    const snapIndex = replay.snapshot?.metadata.index ?? 0;
    let problems = 0;
    const problem = (msg: string): void => {
      if (problems++ < 5) t.fail(`round ${round}: ${msg}`);
    };
    if (snapIndex < maxSnapshot) problem(`snapshot ${snapIndex} is older than acknowledged snapshot ${maxSnapshot}`);
    if (replay.snapshot !== undefined && new TextDecoder().decode(replay.snapshot.data) !== `snap@${snapIndex}`) {
      problem('snapshot data is wrong');
    }
    if (replay.hardState.commit < maxAcked) problem(`hard state commit ${replay.hardState.commit} < acknowledged ${maxAcked}`);
    const byIndex = new Map(replay.entries.map((e) => [e.index, e]));
    replay.entries.forEach((e, k) => {
      if (e.index !== snapIndex + 1 + k) problem(`entries not contiguous after snapshot ${snapIndex} at ${e.index}`);
      if (!sameBytes(e.data, entryData(e.index, e.term))) problem(`entry ${e.index} has the wrong bytes`);
    });
    for (const [i, term] of acked) {
      if (i <= snapIndex) continue;
      const e = byIndex.get(i);
      if (e === undefined) problem(`acknowledged entry ${i} is missing (last index ${wal.lastIndex})`);
      else if (e.term !== term) problem(`acknowledged entry ${i} has term ${e.term}, want ${term}`);
    }
    // Acknowledged entries now inside the snapshot need no more checking.
    for (const i of acked.keys()) if (i <= snapIndex) acked.delete(i);
    await wal.close();
    if (problems > 0) break;
  }
  t.ok(totalAcks > ROUNDS * 5, `${totalAcks} acknowledged entries checked over ${ROUNDS} rounds`);
  t.ok(maxSnapshot > 0, `snapshots taken (newest ${maxSnapshot}), segments released along the way`);
  t.comment(`${earlyKills} rounds killed before the child was ready`);
});
