// The seam between the log and the operating system. Everything the WAL and the snapshot store do
// to the disk goes through `FileSystem`, so tests and chaos runs can fail any single operation
// (see failpoints.ts) while the product code stays the same.
import * as fs from 'node:fs';

/** An open file. Positions are absolute: the log never relies on a file offset cursor. */
export interface FileHandle {
  readonly path: string;
  /**
   * Writes all `length` bytes at `position` (looping over short writes). `background`: through
   * libuv's thread pool even when small enough to write on the calling thread (SYNC_WRITE_MAX_BYTES),
   * for a long run of writes that must not hold the event loop.
   */
  write(buf: Uint8Array, offset: number, length: number, position: number, background?: boolean): Promise<void>;
  read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  /**
   * fdatasync: data and the metadata needed to read it back, not timestamps. `inline`: on the
   * calling thread, which it blocks, instead of libuv's thread pool (see Wal's INLINE_SYNC_*).
   */
  datasync(inline?: boolean): Promise<void>;
  /** fsync: data and all metadata (used where the file size changes). */
  sync(): Promise<void>;
  size(): Promise<number>;
  close(): Promise<void>;
}

export type OpenMode =
  /** O_RDONLY */
  | 'read'
  /** O_RDWR on an existing file */
  | 'readwrite'
  /** O_RDWR | O_CREAT | O_TRUNC */
  | 'create'
  /** O_RDWR | O_CREAT | O_EXCL */
  | 'createExclusive';

export interface FileSystem {
  open(path: string, mode: OpenMode): Promise<FileHandle>;
  readFile(path: string): Promise<Buffer>;
  /** Names in a directory; an empty list when it does not exist. */
  readdir(path: string): Promise<string[]>;
  /** mkdir -p */
  mkdir(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** fsync on a directory, so a create, rename or unlink in it survives a crash. */
  syncDir(path: string): Promise<void>;
  exists(path: string): Promise<boolean>;
}

const OPEN_FLAGS: Record<OpenMode, number> = {
  read: fs.constants.O_RDONLY,
  readwrite: fs.constants.O_RDWR,
  create: fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC,
  createExclusive: fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL,
};
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
/**
 * Writes up to this size go to the page cache synchronously. Copying a batch into the page cache
 * takes microseconds, while a round trip through libuv's thread pool costs tens of them (about
 * 60 us on a 2-core VM, a third of an fdatasync there): it is the one hop a save can skip.
 * Larger writes may block on dirty-page throttling, so they stay off the event loop.
 */
export const SYNC_WRITE_MAX_BYTES = 1024 * 1024;

// Callback-style fs on a raw fd: one libuv request per call and no FileHandle bookkeeping, which
// is what keeps an append + fdatasync close to the disk's own latency.
class NodeFileHandle implements FileHandle {
  constructor(
    readonly path: string,
    private readonly fd: number,
  ) {}

  async write(buf: Uint8Array, offset: number, length: number, position: number, background = false): Promise<void> {
    if (length <= SYNC_WRITE_MAX_BYTES && !background) {
      while (length > 0) {
        const n = fs.writeSync(this.fd, buf, offset, length, position);
        offset += n;
        position += n;
        length -= n;
      }
      return;
    }
    while (length > 0) {
      const n = await new Promise<number>((resolve, reject) =>
        fs.write(this.fd, buf, offset, length, position, (err, written) => (err ? reject(err) : resolve(written))),
      );
      offset += n;
      position += n;
      length -= n;
    }
  }

  read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return new Promise((resolve, reject) =>
      fs.read(this.fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))),
    );
  }

  datasync(inline = false): Promise<void> {
    if (inline) {
      try {
        fs.fdatasyncSync(this.fd);
        return Promise.resolve();
      } catch (e) {
        return Promise.reject(e as Error);
      }
    }
    return new Promise<void>((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
  }

  sync(): Promise<void> {
    return new Promise((resolve, reject) => fs.fsync(this.fd, (err) => (err ? reject(err) : resolve())));
  }

  size(): Promise<number> {
    return new Promise((resolve, reject) => fs.fstat(this.fd, (err, st) => (err ? reject(err) : resolve(st.size))));
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) => fs.close(this.fd, (err) => (err ? reject(err) : resolve())));
  }
}

export const nodeFileSystem: FileSystem = {
  async open(path, mode) {
    const fd = await new Promise<number>((resolve, reject) =>
      fs.open(path, OPEN_FLAGS[mode], FILE_MODE, (err, fd) => (err ? reject(err) : resolve(fd))),
    );
    return new NodeFileHandle(path, fd);
  },
  readFile: (path) => fs.promises.readFile(path),
  async readdir(path) {
    try {
      return await fs.promises.readdir(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  },
  async mkdir(path) {
    await fs.promises.mkdir(path, { recursive: true, mode: DIR_MODE });
  },
  rename: (from, to) => fs.promises.rename(from, to),
  unlink: (path) => fs.promises.unlink(path),
  async syncDir(path) {
    const fh = await fs.promises.open(path, fs.constants.O_RDONLY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
  async exists(path) {
    try {
      await fs.promises.stat(path);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  },
};
