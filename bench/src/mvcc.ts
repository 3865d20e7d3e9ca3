// npm run bench:mvcc [-- --keys 100000,1000000] [--seconds S] [--data-dir D] [--seed N]
//
// The MVCC state machine in process, no Raft, no gRPC: for each key count a fresh store is loaded
// through StateMachine.apply, then measured for overwrites, single-key and 1,000-key ranges, memory
// after the load, and one compaction at the current revision with the event loop's longest pause.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { StateMachine, type ApplyRequest } from '@capstan/mvcc';
import { fmt, parseFlags, run, withScratchDir } from './common.js';

const VALUE_BYTES = 256;
/** Keys per prefix: `key/<group>/<nnn>`, so a group's prefix range returns exactly this many. */
const GROUP = 1000;
/** Applies between yields to the event loop, where the Backend writes its staged batch. */
const APPLIES_PER_TURN = 1000;
/** Distinct random values cycled through: random bytes so LevelDB's snappy cannot shrink them. */
const VALUE_POOL = 1024;
const DEFAULT_KEYS: readonly number[] = [100_000, 1_000_000];
const DEFAULT_SECONDS = 3;
const DEFAULT_SEED = 1;

interface Args {
  keys: number[];
  seconds: number;
  dataDir: string | undefined;
  seed: number;
}

function parseArgs(argv: string[]): Args {
  const flags = parseFlags(argv, ['keys', 'seconds', 'data-dir', 'seed'], '--keys N[,N...], --seconds S, --data-dir D, --seed N');
  const keys = flags.has('keys') ? flags.get('keys')!.split(',').map(Number) : [...DEFAULT_KEYS];
  const args: Args = {
    keys,
    seconds: Number(flags.get('seconds') ?? DEFAULT_SECONDS),
    dataDir: flags.get('data-dir'),
    seed: Number(flags.get('seed') ?? DEFAULT_SEED),
  };
  for (const n of keys) {
    if (!Number.isSafeInteger(n) || n < GROUP || n % GROUP !== 0) throw new Error(`--keys: ${n} is not a positive multiple of ${GROUP}`);
  }
  if (!(args.seconds > 0)) throw new Error('--seconds must be > 0');
  if (!Number.isSafeInteger(args.seed)) throw new Error('--seed must be an integer');
  return args;
}

/** mulberry32: a seeded PRNG, so every run draws the same keys in the same order. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The key space of one run: key i is `key/<i / 1000>/<i % 1000>`, both zero-padded. */
class Keys {
  private readonly groupDigits: number;

  constructor(readonly n: number) {
    this.groupDigits = Math.max(3, String(n / GROUP - 1).length);
  }

  get groups(): number {
    return this.n / GROUP;
  }

  key(i: number): Buffer {
    return Buffer.from(`${this.prefix(Math.floor(i / GROUP))}${String(i % GROUP).padStart(3, '0')}`, 'latin1');
  }

  /** The group's prefix, and its range end: the prefix with its last byte ('/') plus one. */
  prefixRange(g: number): { key: Buffer; rangeEnd: Buffer } {
    const key = Buffer.from(this.prefix(g), 'latin1');
    const rangeEnd = Buffer.from(key);
    rangeEnd[rangeEnd.length - 1]!++;
    return { key, rangeEnd };
  }

  private prefix(g: number): string {
    return `key/${String(g).padStart(this.groupDigits, '0')}/`;
  }
}

const gc = (globalThis as { gc?: () => void }).gc;

function collect(): void {
  gc?.();
}

function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function seconds(fromNs: bigint): number {
  return Number(process.hrtime.bigint() - fromNs) / 1e9;
}

interface Row {
  keys: number;
  loadPerSec: number;
  putsPerSec: number;
  rangeOnePerSec: number;
  rangeGroupPerSec: number;
  rssMiB: number;
  heapMiB: number;
  compactMs: number;
  maxPauseMs: number;
}

class Run {
  private index = 0;
  private readonly values: Buffer[] = [];

  constructor(
    readonly sm: StateMachine,
    readonly keys: Keys,
    readonly rand: () => number,
    readonly seconds: number,
  ) {
    for (let i = 0; i < VALUE_POOL; i++) {
      const v = Buffer.allocUnsafe(VALUE_BYTES);
      for (let j = 0; j < VALUE_BYTES; j++) v[j] = Math.floor(rand() * 256);
      this.values.push(v);
    }
  }

  private randomKey(): number {
    return Math.floor(this.rand() * this.keys.n);
  }

  private apply(req: ApplyRequest): void {
    const r = this.sm.apply(++this.index, req);
    if (r.kind !== 'ok') throw new Error(`apply ${this.index}: ${r.kind === 'error' ? r.error.message : r.kind}`);
  }

  private put(i: number): void {
    this.apply({ put: { key: this.keys.key(i), value: this.values[this.index % VALUE_POOL]! } });
  }

  /** Every key once, in a seeded random order; the rate counts until the last batch is in LevelDB. */
  async load(): Promise<number> {
    const n = this.keys.n;
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.rand() * (i + 1));
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      this.put(order[i]!);
      if ((i + 1) % APPLIES_PER_TURN === 0) await yieldTurn();
    }
    await this.sm.store.backend.flush();
    const rate = n / seconds(t0);
    if (this.sm.store.keyCount !== n) throw new Error(`loaded ${this.sm.store.keyCount} keys, want ${n}`);
    return rate;
  }

  /** Overwrites of random existing keys for the measuring time, yielding as the load does. */
  async overwrite(): Promise<number> {
    const t0 = process.hrtime.bigint();
    let done = 0;
    while (seconds(t0) < this.seconds) {
      for (let i = 0; i < APPLIES_PER_TURN; i++) this.put(this.randomKey());
      done += APPLIES_PER_TURN;
      await yieldTurn();
    }
    await this.sm.store.backend.flush();
    return done / seconds(t0);
  }

  /** Ranges of one random existing key; each must return that key. */
  rangeOne(): number {
    const store = this.sm.store;
    const t0 = process.hrtime.bigint();
    let done = 0;
    while (seconds(t0) < this.seconds) {
      for (let i = 0; i < 1000; i++) {
        const r = store.range({ key: this.keys.key(this.randomKey()) });
        if (r.kvs.length !== 1) throw new Error(`single-key range returned ${r.kvs.length} keys`);
      }
      done += 1000;
    }
    return done / seconds(t0);
  }

  /** Prefix ranges over one random group; each must return all 1,000 of its keys. */
  rangeGroup(): number {
    const store = this.sm.store;
    const t0 = process.hrtime.bigint();
    let done = 0;
    while (seconds(t0) < this.seconds) {
      for (let i = 0; i < 10; i++) {
        const r = store.range(this.keys.prefixRange(Math.floor(this.rand() * this.keys.groups)));
        if (r.count !== GROUP || r.kvs.length !== GROUP) throw new Error(`prefix range returned ${r.kvs.length} of ${r.count} keys, want ${GROUP}`);
      }
      done += 10;
    }
    return done / seconds(t0);
  }

  /**
   * One compaction at the current revision, applied as an entry: the time until its records are
   * gone, and the longest gap between ticks of a 1 ms interval meanwhile: the longest an apply
   * arriving then would have waited.
   */
  async compact(): Promise<{ ms: number; maxPauseMs: number }> {
    let last = performance.now();
    let maxGap = 0;
    const probe = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
    }, 1);
    const t0 = performance.now();
    const r = this.sm.apply(++this.index, { compaction: { revision: this.sm.store.rev } });
    if (r.kind !== 'ok' || r.physical === undefined) throw new Error(`compaction not applied: ${r.kind}`);
    await r.physical;
    const end = performance.now();
    clearInterval(probe);
    maxGap = Math.max(maxGap, end - last);
    return { ms: end - t0, maxPauseMs: maxGap };
  }
}

async function measure(parent: string, n: number, args: Args): Promise<Row> {
  const dir = fs.mkdtempSync(path.join(parent, `mvcc-${n}-`));
  const sm = await StateMachine.open(dir);
  try {
    // Seeded per key count, so a row's numbers do not depend on which other rows ran before it.
    const r = new Run(sm, new Keys(n), prng(args.seed ^ n), args.seconds);
    collect();
    const loadPerSec = await r.load();
    collect();
    const mem = process.memoryUsage();
    const putsPerSec = await r.overwrite();
    collect();
    const rangeOnePerSec = r.rangeOne();
    const rangeGroupPerSec = r.rangeGroup();
    collect();
    const c = await r.compact();
    return {
      keys: n,
      loadPerSec,
      putsPerSec,
      rangeOnePerSec,
      rangeGroupPerSec,
      rssMiB: mem.rss / 2 ** 20,
      heapMiB: mem.heapUsed / 2 ** 20,
      compactMs: c.ms,
      maxPauseMs: c.maxPauseMs,
    };
  } finally {
    await sm.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  await withScratchDir(args.dataDir, 'capstan-bench-mvcc-', async (dir) => {
    collect();
    const base = process.memoryUsage();
    const rows: Row[] = [];
    for (const n of args.keys) {
      rows.push(await measure(dir, n, args));
      console.error(`${n} keys done`);
    }
    console.log(
      `mvcc benchmark in ${dir}: ${VALUE_BYTES}-byte values, ${args.seconds} s per measurement, seed ${args.seed}, ` +
        `node ${process.version}${gc === undefined ? ', no --expose-gc (memory not collected first)' : ''}`,
    );
    console.log(`before any load: rss ${fmt(base.rss / 2 ** 20, 0)} MiB, heap ${fmt(base.heapUsed / 2 ** 20, 1)} MiB`);
    console.log('');
    const header = ['keys', 'load puts/s', 'puts/s', 'range 1 key/s', 'range 1,000 keys/s', 'rss MiB', 'heap MiB', 'compaction ms', 'max loop pause ms'];
    const lines = rows.map((r) => [
      r.keys.toLocaleString('en-US'),
      fmt(r.loadPerSec, 0),
      fmt(r.putsPerSec, 0),
      fmt(r.rangeOnePerSec, 0),
      fmt(r.rangeGroupPerSec, 1),
      fmt(r.rssMiB, 0),
      fmt(r.heapMiB, 0),
      fmt(r.compactMs, 0),
      fmt(r.maxPauseMs, 1),
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
    const print = (cells: string[]): void => console.log(`| ${cells.map((c, i) => c.padStart(widths[i]!)).join(' | ')} |`);
    print(header);
    console.log(`|${widths.map((w) => `${'-'.repeat(w + 1)}:`).join('|')}|`);
    for (const l of lines) print(l);
  });
}

run(main);
