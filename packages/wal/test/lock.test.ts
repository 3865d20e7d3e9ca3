import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LOCK_FILE, Wal, WalLockedError } from '../src/index.js';
import { entries, openWal, tempDir } from './helpers.js';

const CHILD = fileURLToPath(new URL('./crash-child.js', import.meta.url));

function holdInChild(dir: string): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, 'hold', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (s: string) => {
      if (s.includes('ready')) resolve(child);
    });
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`holder exited early (${code})`)));
  });
}

function killAndReap(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.removeAllListeners('exit');
    child.on('exit', () => resolve());
    process.kill(child.pid!, 'SIGKILL');
  });
}

t.test('a data directory held by another process refuses to open; a dead holder does not count', async (t) => {
  const dir = tempDir(t);
  await (await openWal(dir)).wal.close();
  const holder = await holdInChild(dir);
  t.teardown(() => {
    if (holder.exitCode === null && holder.signalCode === null) process.kill(holder.pid!, 'SIGKILL');
  });
  const err = await Wal.open(dir, { logger: () => {} }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof WalLockedError, 'locked');
  t.equal((err as WalLockedError).pid, holder.pid, 'names the holder');
  t.equal((err as WalLockedError).dir, dir);
  t.match(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8'), new RegExp(`^${holder.pid} `));

  await killAndReap(holder);
  const { wal, replay } = await Wal.open(dir, { logger: () => {} });
  t.notOk(replay.created, 'the stale lock was taken over');
  t.match(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8'), new RegExp(`^${process.pid} `));
  await wal.save({ entries: entries(1, 2, 1) });
  await wal.close();
  t.notOk(fs.existsSync(path.join(dir, LOCK_FILE)), 'released on close');
});

t.test('the same process cannot open one directory twice', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir);
  await t.rejects(Wal.open(dir, { logger: () => {} }), { code: 'WAL_LOCKED', pid: process.pid });
  await wal.close();
  const again = await Wal.open(dir, { logger: () => {} });
  await again.wal.close();
});

t.test('a lock whose pid was recycled by another process is stale', async (t) => {
  const dir = tempDir(t);
  await (await openWal(dir)).wal.close();
  // Our own pid, but a start time that is not ours: whoever wrote it is gone.
  fs.writeFileSync(path.join(dir, LOCK_FILE), `${process.pid} 1\n`);
  const { wal } = await Wal.open(dir, { logger: () => {} });
  await wal.close();
  // A pid that cannot be running.
  fs.writeFileSync(path.join(dir, LOCK_FILE), `${2 ** 22 + 17} -\n`);
  const { wal: w2 } = await Wal.open(dir, { logger: () => {} });
  await w2.close();
  // Garbage in the lock file is no owner either.
  fs.writeFileSync(path.join(dir, LOCK_FILE), 'garbage');
  const { wal: w3 } = await Wal.open(dir, { logger: () => {} });
  await w3.close();
});
