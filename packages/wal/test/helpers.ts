// Shared by the tests: temp dirs, a seeded PRNG, deterministic entries, a log capture.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Entry, HardState } from '@capstan/raft';
import { Wal, type WalOptions, type OpenedWal, type WalLogger } from '../src/index.js';

export const SMALL_SEGMENT = 64 * 1024;
export const TINY_SEGMENT = 4 * 1024;
export const META = { memberId: 7, clusterId: 'cafe0001' } as const;

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

/** A fresh directory under os.tmpdir(), removed when the test ends. */
export function tempDir(t: Teardown, prefix = 'capstan-wal-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function prng(seed: number): { next(): number; int(n: number): number } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n: number) => Math.floor(next() * n) };
}

/** Entry bytes that depend on (index, term) only, so any reader can tell a right entry from a wrong one. */
export function entryData(index: number, term: number): Uint8Array {
  const len = 1 + ((index * 37 + term * 11) % 300);
  const out = new Uint8Array(len);
  let x = (index * 2654435761 + term * 40503) >>> 0;
  for (let i = 0; i < len; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  // A non-zero last byte keeps a record's end visible to tests that look for the end of data.
  out[len - 1] = 0xff;
  return out;
}

export function entry(index: number, term: number): Entry {
  return { index, term, type: 0, data: entryData(index, term) };
}

export function entries(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(entry(i, term));
  return out;
}

export function hs(term: number, commit: number, vote = 0): HardState {
  return { term, vote, commit };
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}

export interface LogLine {
  level: string;
  msg: string;
  fields: Record<string, unknown> | undefined;
}

export function captureLog(): { lines: LogLine[]; logger: WalLogger } {
  const lines: LogLine[] = [];
  return { lines, logger: (level, msg, fields) => lines.push({ level, msg, fields }) };
}

/** Opens with metadata (creating), small segments and a silent logger unless told otherwise. */
export async function openWal(dir: string, options: WalOptions = {}): Promise<OpenedWal> {
  return Wal.open(dir, { metadata: META, segmentBytes: SMALL_SEGMENT, logger: () => {}, ...options });
}

export function walDir(dir: string): string {
  return path.join(dir, 'wal');
}

/** Segment file names in order. */
export function segmentFiles(dir: string): string[] {
  return fs
    .readdirSync(walDir(dir))
    .filter((n) => n.endsWith('.wal'))
    .sort();
}

export function lastSegmentPath(dir: string): string {
  const files = segmentFiles(dir);
  return path.join(walDir(dir), files[files.length - 1]!);
}

/** One past the last non-zero byte of a file: where its records end. */
export function dataEnd(file: string): number {
  const buf = fs.readFileSync(file);
  for (let i = buf.length - 1; i >= 0; i--) if (buf[i] !== 0) return i + 1;
  return 0;
}
