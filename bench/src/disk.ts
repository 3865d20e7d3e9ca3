/**
 * The disk under a data directory, measured without any server: 4 KiB writes + fdatasync into a
 * preallocated file. Shared by `bench:fsync` (fsync.ts) and the disk row of `npm run bench`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const RAW_WRITE_BYTES = 4096;

/** A preallocated file of zeros, as the WAL's segments are: fdatasync then flushes data only. */
export class RawFile {
  readonly fd: number;
  private readonly buf = Buffer.alloc(RAW_WRITE_BYTES, 0xab);
  private at = 0;

  constructor(
    readonly file: string,
    writes: number,
  ) {
    const size = writes * RAW_WRITE_BYTES;
    this.fd = fs.openSync(file, 'w+');
    fs.writeSync(this.fd, Buffer.alloc(size), 0, size, 0);
    fs.fsyncSync(this.fd);
  }

  /** The floor: write(2) + fdatasync(2) back to back, no event loop in between. */
  syncSample(): number {
    const t0 = process.hrtime.bigint();
    fs.writeSync(this.fd, this.buf, 0, RAW_WRITE_BYTES, this.next());
    fs.fdatasyncSync(this.fd);
    return Number(process.hrtime.bigint() - t0);
  }

  /** The same through Node's asynchronous fs (libuv's thread pool), as any server code must. */
  async asyncSample(): Promise<number> {
    const t0 = process.hrtime.bigint();
    const pos = this.next();
    await new Promise<void>((res, rej) =>
      fs.write(this.fd, this.buf, 0, RAW_WRITE_BYTES, pos, (e) => (e ? rej(e) : res())),
    );
    await new Promise<void>((res, rej) => fs.fdatasync(this.fd, (e) => (e ? rej(e) : res())));
    return Number(process.hrtime.bigint() - t0);
  }

  close(): void {
    fs.closeSync(this.fd);
    fs.rmSync(this.file, { force: true });
  }

  private next(): number {
    const p = this.at;
    this.at += RAW_WRITE_BYTES;
    return p;
  }
}

/** Samples not kept first: first-touch and JIT warm-up are not what is measured. */
const RAW_WARMUP = 20;

/**
 * `samples` back-to-back write(2) + fdatasync(2) of 4 KiB in a preallocated file under `dir`
 * (removed afterwards): each latency in nanoseconds.
 */
export function rawFdatasync(dir: string, samples: number): number[] {
  fs.mkdirSync(dir, { recursive: true });
  const raw = new RawFile(path.join(dir, `raw-fdatasync-${process.pid}.dat`), samples + RAW_WARMUP);
  try {
    for (let i = 0; i < RAW_WARMUP; i++) raw.syncSample();
    const out: number[] = [];
    for (let i = 0; i < samples; i++) out.push(raw.syncSample());
    return out;
  } finally {
    raw.close();
  }
}
