// Named failpoints over the FileSystem seam: arm one and the next matching operation fails with
// the errno you chose (EIO, ENOSPC, ...), as a real disk would report it. Tests and chaos runs use
// it; the WAL itself cannot tell it from the real thing.
import type { FileHandle, FileSystem, OpenMode } from './fs.js';

export type FailpointName =
  | 'open'
  | 'write'
  | 'read'
  | 'datasync'
  | 'sync'
  | 'readFile'
  | 'readdir'
  | 'mkdir'
  | 'rename'
  | 'unlink'
  | 'syncDir';

export interface Failpoint {
  /** The errno to fail with, e.g. 'EIO' or 'ENOSPC'. */
  readonly code: string;
  /** Only paths containing this substring match (default: every path). */
  readonly pathIncludes?: string;
  /** Let this many matching calls through before failing (default 0). */
  readonly after?: number;
  /** Fail this many matching calls, then disarm (default: forever). */
  readonly times?: number;
}

interface Armed {
  readonly fp: Failpoint;
  skip: number;
  left: number;
}

export class FaultInjectingFileSystem implements FileSystem {
  private readonly armed = new Map<FailpointName, Armed>();
  /** Open handles, so a rename moves their path too: a failpoint on "*.wal" must hit a segment
   * that was opened under its temporary name. */
  private readonly handles = new Set<FaultyHandle>();
  /** How many times each failpoint fired, for assertions. */
  readonly fired = new Map<FailpointName, number>();

  constructor(private readonly inner: FileSystem) {}

  arm(name: FailpointName, fp: Failpoint): void {
    this.armed.set(name, { fp, skip: fp.after ?? 0, left: fp.times ?? Infinity });
  }

  disarm(name: FailpointName): void {
    this.armed.delete(name);
  }

  /** Throws the armed error if `name` matches `path` now. */
  check(name: FailpointName, path: string): void {
    const a = this.armed.get(name);
    if (a === undefined || a.left <= 0) return;
    if (a.fp.pathIncludes !== undefined && !path.includes(a.fp.pathIncludes)) return;
    if (a.skip > 0) {
      a.skip--;
      return;
    }
    a.left--;
    this.fired.set(name, (this.fired.get(name) ?? 0) + 1);
    throw Object.assign(new Error(`${a.fp.code}: injected failure at failpoint ${name} (${path})`), {
      code: a.fp.code,
      syscall: name,
      path,
    });
  }

  async open(path: string, mode: OpenMode): Promise<FileHandle> {
    this.check('open', path);
    const h = new FaultyHandle(await this.inner.open(path, mode), this, path);
    this.handles.add(h);
    return h;
  }

  /** @internal */
  closed(h: FaultyHandle): void {
    this.handles.delete(h);
  }
  async readFile(path: string): Promise<Buffer> {
    this.check('readFile', path);
    return this.inner.readFile(path);
  }
  async readdir(path: string): Promise<string[]> {
    this.check('readdir', path);
    return this.inner.readdir(path);
  }
  async mkdir(path: string): Promise<void> {
    this.check('mkdir', path);
    return this.inner.mkdir(path);
  }
  async rename(from: string, to: string): Promise<void> {
    this.check('rename', from);
    await this.inner.rename(from, to);
    for (const h of this.handles) if (h.path === from) h.path = to;
  }
  async unlink(path: string): Promise<void> {
    this.check('unlink', path);
    return this.inner.unlink(path);
  }
  async syncDir(path: string): Promise<void> {
    this.check('syncDir', path);
    return this.inner.syncDir(path);
  }
  exists(path: string): Promise<boolean> {
    return this.inner.exists(path);
  }
}

class FaultyHandle implements FileHandle {
  constructor(
    private readonly inner: FileHandle,
    private readonly fs: FaultInjectingFileSystem,
    public path: string,
  ) {}
  async write(buf: Uint8Array, offset: number, length: number, position: number, background?: boolean): Promise<void> {
    this.fs.check('write', this.path);
    return this.inner.write(buf, offset, length, position, background);
  }
  async read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    this.fs.check('read', this.path);
    return this.inner.read(buf, offset, length, position);
  }
  async datasync(inline?: boolean): Promise<void> {
    this.fs.check('datasync', this.path);
    return this.inner.datasync(inline);
  }
  async sync(): Promise<void> {
    this.fs.check('sync', this.path);
    return this.inner.sync();
  }
  size(): Promise<number> {
    return this.inner.size();
  }
  close(): Promise<void> {
    this.fs.closed(this);
    return this.inner.close();
  }
}
