// What the benchmarks share: flag parsing, a scratch directory, number formatting, the entry point.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * `--name V` and `--name=V` for the given names, by name without the dashes; anything else throws
 * with `usage` appended.
 */
export function parseFlags(argv: readonly string[], names: readonly string[], usage: string): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = names.find((n) => a === `--${n}` || a.startsWith(`--${n}=`));
    if (name === undefined) throw new Error(`unknown argument ${a} (use ${usage})`);
    const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
    if (v === undefined) throw new Error(`missing value for ${a}`);
    flags.set(name, v);
  }
  return flags;
}

/**
 * Runs `fn` in `dir`, created if missing; without one, in a fresh directory under os.tmpdir()
 * named `prefix...`, removed afterwards.
 */
export async function withScratchDir<T>(dir: string | undefined, prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const made = dir === undefined;
  const d = dir ?? fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.mkdirSync(d, { recursive: true });
  try {
    return await fn(d);
  } finally {
    if (made) fs.rmSync(d, { recursive: true, force: true });
  }
}

export function fmt(n: number | undefined, digits: number): string {
  return n === undefined ? '-' : n.toFixed(digits);
}

/** Text made safe inside HTML or SVG markup and attribute values. */
export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Runs a benchmark's main: an error is printed as its message and fails the process. */
export function run(main: () => Promise<void>): void {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = 1;
  });
}
