// npm run bench:fsync [-- --dir D] [--samples N]
//
// What the data directory's disk can do, and how close the WAL gets to it: raw fdatasync latency
// of 4 KiB writes into a preallocated file (the floor), then WAL save() latency and throughput
// for batches of 1, 16 and 256 entries of 256 bytes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Entry } from '@capstan/raft';
import { Wal } from '@capstan/wal';
import { fmt, parseFlags, run, withScratchDir } from './common.js';
import { RAW_WRITE_BYTES, RawFile } from './disk.js';

const ENTRY_BYTES = 256;
const BATCH_SIZES: readonly number[] = [1, 16, 256];
const DEFAULT_SAMPLES = 500;
/** Saves before measuring: first-touch page cache and JIT warm-up are not what we are measuring. */
const WARMUP = 50;
/** The WAL p50 for a batch of one must stay within this factor of the raw fdatasync p50. */
const TARGET_RATIO = 1.3;
const NORMAL_ENTRY = 0;

interface Args {
  dir: string | undefined;
  samples: number;
}

function parseArgs(argv: string[]): Args {
  const flags = parseFlags(argv, ['dir', 'samples'], '--dir D, --samples N');
  const args: Args = { dir: flags.get('dir'), samples: Number(flags.get('samples') ?? DEFAULT_SAMPLES) };
  if (!Number.isSafeInteger(args.samples) || args.samples < 10) throw new Error('--samples must be an integer >= 10');
  return args;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

interface Row {
  what: string;
  p50ms: number;
  p99ms: number;
  entriesPerSec: number | undefined;
  mbPerSec: number;
}

function row(what: string, latenciesNs: number[], totalNs: number, entries: number | undefined, bytes: number): Row {
  const ms = latenciesNs.map((n) => n / 1e6).sort((a, b) => a - b);
  const secs = totalNs / 1e9;
  return {
    what,
    p50ms: quantile(ms, 0.5),
    p99ms: quantile(ms, 0.99),
    entriesPerSec: entries === undefined ? undefined : entries / secs,
    mbPerSec: bytes / secs / (1024 * 1024),
  };
}

class WalLoad {
  private index = 0;
  private readonly data = new Uint8Array(ENTRY_BYTES).fill(0x5a);

  private constructor(
    readonly wal: Wal,
    readonly dir: string,
    readonly batch: number,
  ) {}

  static async open(dir: string, batch: number): Promise<WalLoad> {
    const walDir = path.join(dir, `wal-${batch}`);
    const { wal } = await Wal.open(walDir, { metadata: { memberId: 1, clusterId: 'bench' }, logger: () => {} });
    return new WalLoad(wal, walDir, batch);
  }

  /** One save() of `batch` entries plus a hard state, as a Ready carries them. */
  async sample(): Promise<number> {
    const entries: Entry[] = [];
    for (let i = 0; i < this.batch; i++) entries.push({ term: 1, index: ++this.index, type: NORMAL_ENTRY, data: this.data });
    const t0 = process.hrtime.bigint();
    await this.wal.save({ entries, hardState: { term: 1, vote: 1, commit: this.index } });
    return Number(process.hrtime.bigint() - t0);
  }

  async close(): Promise<void> {
    await this.wal.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

interface Samples {
  lat: number[];
  total: number;
}

function add(s: Samples, ns: number): void {
  s.lat.push(ns);
  s.total += ns;
}

/**
 * Raw and WAL batch-of-1 samples are interleaved, one of each in turn, so that both see the same
 * disk: on a shared virtual disk latency drifts by 2x within seconds, more than the gap measured.
 */
async function measureSmall(dir: string, samples: number): Promise<Row[]> {
  const raw = new RawFile(path.join(dir, 'raw.dat'), 2 * (samples + WARMUP));
  const load = await WalLoad.open(dir, 1);
  try {
    const sync: Samples = { lat: [], total: 0 };
    const viaLibuv: Samples = { lat: [], total: 0 };
    const wal: Samples = { lat: [], total: 0 };
    for (let i = 0; i < WARMUP; i++) {
      raw.syncSample();
      await raw.asyncSample();
      await load.sample();
    }
    const bytesBefore = load.wal.metrics().bytesWritten.value;
    // The order rotates: whichever of three back-to-back fsyncs comes first measures ~10% slower
    // here (the device is still busy with the previous one's flush), which would bias a fixed order.
    const steps = [
      async () => add(sync, raw.syncSample()),
      async () => add(viaLibuv, await raw.asyncSample()),
      async () => add(wal, await load.sample()),
    ];
    for (let i = 0; i < samples; i++) {
      for (let k = 0; k < steps.length; k++) await steps[(i + k) % steps.length]!();
    }
    const walBytes = load.wal.metrics().bytesWritten.value - bytesBefore;
    return [
      row(`raw ${RAW_WRITE_BYTES / 1024} KiB write + fdatasync`, sync.lat, sync.total, undefined, samples * RAW_WRITE_BYTES),
      row(`  same, async (libuv pool)`, viaLibuv.lat, viaLibuv.total, undefined, samples * RAW_WRITE_BYTES),
      row('wal save, batch of 1', wal.lat, wal.total, samples, walBytes),
    ];
  } finally {
    raw.close();
    await load.close();
  }
}

async function measureBatch(dir: string, batch: number, samples: number): Promise<Row> {
  const load = await WalLoad.open(dir, batch);
  try {
    for (let i = 0; i < WARMUP; i++) await load.sample();
    const bytesBefore = load.wal.metrics().bytesWritten.value;
    const s: Samples = { lat: [], total: 0 };
    for (let i = 0; i < samples; i++) add(s, await load.sample());
    const bytes = load.wal.metrics().bytesWritten.value - bytesBefore;
    return row(`wal save, batch of ${batch}`, s.lat, s.total, samples * batch, bytes);
  } finally {
    await load.close();
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  await withScratchDir(args.dir, 'capstan-bench-fsync-', async (dir) => {
    const rows: Row[] = await measureSmall(dir, args.samples);
    for (const b of BATCH_SIZES.filter((b) => b > 1)) rows.push(await measureBatch(dir, b, args.samples));

    console.log(`fsync benchmark in ${dir} (${args.samples} samples per row, ${ENTRY_BYTES}-byte entries)`);
    console.log('MB/s counts bytes written to the file (WAL: framed records, hard state included).');
    const header = ['', 'p50 ms', 'p99 ms', 'entries/s', 'MB/s'];
    const lines = rows.map((r) => [r.what, fmt(r.p50ms, 3), fmt(r.p99ms, 3), fmt(r.entriesPerSec, 0), fmt(r.mbPerSec, 2)]);
    const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
    const print = (cells: string[]): void =>
      console.log(cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
    print(header);
    for (const l of lines) print(l);
    const ratio = rows[2]!.p50ms / rows[0]!.p50ms;
    console.log(
      `wal batch-of-1 p50 / raw fdatasync p50 = ${ratio.toFixed(2)}x (target <= ${TARGET_RATIO}x): ${ratio <= TARGET_RATIO ? 'ok' : 'OVER'}`,
    );
    // What is left between the two is Node's own cost of an asynchronous fdatasync, measured by
    // the second row: the WAL against that says how much the WAL adds.
    console.log(`wal batch-of-1 p50 / async raw p50 = ${(rows[2]!.p50ms / rows[1]!.p50ms).toFixed(2)}x`);
  });
}

run(main);
