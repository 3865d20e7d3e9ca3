// One process per data directory. Two members appending to one log would interleave records and
// break the CRC chain at best; so the first to open creates LOCK holding its pid (exclusively:
// link(2) fails if it exists), and the file is only taken over when the process that wrote it is gone.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { WalIoError, WalLockedError } from './errors.js';

export const LOCK_FILE = 'LOCK';

export interface DirLock {
  readonly path: string;
  release(): Promise<void>;
}

interface Owner {
  readonly pid: number;
  /** Process start time (from /proc), so a recycled pid is not mistaken for the owner. */
  readonly start: string | undefined;
}

export async function lockDir(dir: string): Promise<DirLock> {
  const file = path.join(dir, LOCK_FILE);
  const me: Owner = { pid: process.pid, start: await startTime(process.pid) };
  const body = `${me.pid} ${me.start ?? '-'}\n`;
  // Twice: once normally, once more after taking over a stale lock.
  for (let attempt = 0; attempt < 2; attempt++) {
    // The lock appears with its content already in it (link(2) fails with EEXIST like O_EXCL), so
    // a reader never sees an empty lock that a live process is about to fill in.
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      const fh = await fs.promises.open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(body);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fs.promises.link(tmp, file);
      return {
        path: file,
        release: async () => {
          const owner = await readOwner(file);
          if (owner?.pid === me.pid) await fs.promises.rm(file, { force: true });
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new WalIoError('lock', file, e);
    } finally {
      await fs.promises.rm(tmp, { force: true });
    }
    const owner = await readOwner(file);
    if (owner !== undefined && (await alive(owner))) throw new WalLockedError(dir, owner.pid);
    await takeOverStale(file, owner);
  }
  const owner = await readOwner(file);
  throw new WalLockedError(dir, owner?.pid ?? 0);
}

/**
 * Renames the stale file aside (atomic: of two processes racing, one wins) and puts it back if
 * what was renamed turns out to be a fresh lock another process created in between.
 */
async function takeOverStale(file: string, seen: Owner | undefined): Promise<void> {
  const aside = `${file}.stale-${process.pid}`;
  try {
    await fs.promises.rename(file, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new WalIoError('lock takeover', file, e);
  }
  const got = await readOwner(aside);
  if (got !== undefined && (seen === undefined || got.pid !== seen.pid) && (await alive(got))) {
    await fs.promises.rename(aside, file).catch(() => {});
    return;
  }
  await fs.promises.rm(aside, { force: true });
}

async function readOwner(file: string): Promise<Owner | undefined> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  const [pid, start] = text.trim().split(/\s+/);
  const n = Number(pid);
  if (!Number.isSafeInteger(n) || n <= 0) return undefined;
  return { pid: n, start: start === undefined || start === '-' ? undefined : start };
}

async function alive(o: Owner): Promise<boolean> {
  try {
    process.kill(o.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
    // EPERM: it exists, under another user.
  }
  if (o.start === undefined) return true;
  const now = await startTime(o.pid);
  return now === undefined || now === o.start;
}

/** Field 22 of /proc/<pid>/stat: clock ticks since boot when the process started. */
async function startTime(pid: number): Promise<string | undefined> {
  try {
    const stat = await fs.promises.readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}
