/**
 * The load generator's client: etcd's gRPC API over an HTTP/2 client of our own (h2client.ts),
 * with nothing else in the way. Several channels, each its own HTTP/2 connection; requests
 * serialized once, ahead of time, with @capstan/server's protobuf codec (etcd's protos in proto/);
 * responses left as bytes unless a workload needs to read them.
 *
 * Not grpc-js, nor node:http2: the load generator shares the machine's two cores with the
 * members, and its own stalls are counted as the servers' latency. grpc-js cost it a core at about
 * 4,500 puts/s and capped the throughput of both systems: 16 x 16 puts for 10 s against the same
 * Capstan cluster gave 4,778 ops/s, p99 124 ms through grpc-js at 97% of a core, and 9,750 ops/s,
 * p99 67 ms through node:http2 at 76% (etcd: 3,323 and 7,288 ops/s). node:http2 in turn spent
 * 12-15% of the load generator's time in scavenges of 8-30 ms (a native handle and a Duplex per
 * stream), and the slowest 1% of puts had spent 19-26 ms of their time inside them.
 */
import { EventEmitter } from 'node:events';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { codec, framedMessage as frame, GRPC_MESSAGE_PREFIX_BYTES as PREFIX_BYTES, type MessageCodec } from '@capstan/server';
import { ErrorCode } from '@capstan/server/h2/frames';
import { H2ClientConnection, type CloseReason, type StreamHandler } from './h2client.js';

/** A channel that is not connected within this long fails the run. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** A single request's deadline: a stuck cluster shows up as errors, not as a hang. */
export const CALL_TIMEOUT_MS = 10_000;
/**
 * Each stream's and the connection's receive window. HTTP/2's default, 64 KiB, makes a 1,000-key
 * range response (about 300 KiB) wait for window updates on the way; etcd's Go clients grow
 * their windows to several MiB.
 */
export const WINDOW_BYTES = 4 << 20;
/** How often calls past their deadline are looked for (the server's own deadline comes first). */
const SWEEP_MS = 1_000;

export const KV = '/etcdserverpb.KV/';
export const LEASE = '/etcdserverpb.Lease/';
export const WATCH = '/etcdserverpb.Watch/';

/** gRPC status codes the client makes itself (the others come from the server). */
export const Status = { OK: 0, CANCELLED: 1, UNKNOWN: 2, DEADLINE_EXCEEDED: 4, INTERNAL: 13, UNAVAILABLE: 14 } as const;

/** The codec of an etcdserverpb message (e.g. 'PutRequest'). */
export function msg<T>(name: string): MessageCodec<T> {
  return codec<T>(`etcdserverpb.${name}`);
}

/** `host:port` from `host:port` or `http://host:port/`. */
export function hostPort(endpoint: string): string {
  return endpoint.replace(/^https?:\/\//, '').replace(/\/$/, '');
}

/** A call that ended without OK: the gRPC status and its message, as grpc-js's ServiceError has them. */
export class GrpcError extends Error {
  constructor(
    readonly code: number,
    readonly details: string,
  ) {
    super(`${code} ${details}`);
    this.name = 'GrpcError';
  }
}

export type Callback = (err: GrpcError | null, res?: Buffer) => void;

/** Splits a stream's DATA into gRPC messages, whatever the chunks' boundaries. */
export class Deframer {
  private rest: Buffer | undefined;

  /** Calls `each` for every message `chunk` completes; throws on a compressed one (never asked for). */
  push(chunk: Buffer, each: (message: Buffer) => void): void {
    const b = this.rest === undefined ? chunk : Buffer.concat([this.rest, chunk]);
    let off = 0;
    while (b.length - off >= PREFIX_BYTES) {
      const len = b.readUInt32BE(off + 1);
      if (b.length - off - PREFIX_BYTES < len) break;
      if (b[off] !== 0) throw new GrpcError(Status.INTERNAL, 'compressed message, none was asked for');
      each(b.subarray(off + PREFIX_BYTES, off + PREFIX_BYTES + len));
      off += PREFIX_BYTES + len;
    }
    this.rest = off === b.length ? undefined : b.subarray(off);
  }

  /** Bytes of a message not yet complete. */
  get pending(): number {
    return this.rest?.length ?? 0;
  }
}

/** The status a header block carries (trailers, or the headers of an error): undefined if none. */
function statusOf(fields: readonly string[]): GrpcError | null | undefined {
  let code: number | undefined;
  let details = '';
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i] === 'grpc-status') code = Number(fields[i + 1]);
    else if (fields[i] === 'grpc-message') details = fields[i + 1]!;
  }
  if (code === undefined) return undefined;
  if (code === Status.OK) return null;
  try {
    details = decodeURIComponent(details);
  } catch {
    // not percent-encoded after all: as sent
  }
  return new GrpcError(Number.isInteger(code) ? code : Status.UNKNOWN, details);
}

/** How a call ended: its status (null: OK), from the trailers or from why the stream closed. */
function endOf(status: GrpcError | null | undefined, why: CloseReason | undefined): GrpcError | null {
  if (why?.error !== undefined) return new GrpcError(Status.UNAVAILABLE, why.error.message);
  if (why?.rstCode !== undefined) {
    if (why.rstCode === ErrorCode.Cancel) return new GrpcError(Status.CANCELLED, 'cancelled');
    return new GrpcError(why.rstCode === ErrorCode.RefusedStream ? Status.UNAVAILABLE : Status.INTERNAL, `stream reset by the server (RST_STREAM code ${why.rstCode})`);
  }
  return status === undefined ? new GrpcError(Status.INTERNAL, 'stream ended without a grpc-status') : status;
}

/** What a call has received: its messages, whole however DATA falls, and the status that ends it. */
class Received {
  private readonly deframer = new Deframer();
  private status: GrpcError | null | undefined;
  private failure: GrpcError | undefined;

  /** A header block (headers or trailers): keeps the status it carries, if any. */
  headers(fields: readonly string[]): void {
    const st = statusOf(fields);
    if (st !== undefined) this.status = st;
  }

  /**
   * DATA: each message it completes goes to `each`. Returns the error when this chunk made the
   * call fail (a message it cannot read), so the caller can reset the stream once; after that,
   * DATA is ignored.
   */
  data(payload: Buffer, each: (message: Buffer) => void): GrpcError | undefined {
    if (this.failure !== undefined) return undefined;
    try {
      this.deframer.push(payload, each);
      return undefined;
    } catch (err) {
      this.failure = err as GrpcError;
      return this.failure;
    }
  }

  /** How the call ended: null for OK. */
  end(why: CloseReason | undefined): GrpcError | null {
    return this.failure ?? endOf(this.status, why);
  }
}

/**
 * A bidirectional stream, message by message: 'data' (a message: a view, valid during the call),
 * 'error' (a GrpcError: a status other than OK, the stream cancelled, or the connection lost),
 * 'end' (closed with OK).
 */
export class BidiStream extends EventEmitter implements StreamHandler {
  private readonly received = new Received();
  private closed = false;
  private id = 0;

  constructor(private readonly conn: H2ClientConnection) {
    super();
  }

  /** Opens it on the connection with these request headers. */
  start(fields: readonly string[]): void {
    const id = this.conn.open(fields, this, undefined, false);
    if (id instanceof Error) setImmediate(() => this.onClose({ error: id }));
    else this.id = id;
  }

  /** Whether a write can still reach the server. */
  get open(): boolean {
    return !this.closed && this.conn.usable;
  }

  write(message: Buffer): void {
    if (!this.closed) this.conn.write(this.id, frame(message), false);
  }

  /** Ends the call from this side (RST_STREAM CANCEL); its 'error' is a CANCELLED status. */
  cancel(): void {
    if (!this.closed) this.conn.reset(this.id);
  }

  onHeaders(fields: string[]): void {
    this.received.headers(fields);
  }

  onData(payload: Buffer): void {
    if (this.received.data(payload, (m) => this.emit('data', m)) !== undefined) this.conn.reset(this.id, ErrorCode.InternalError);
  }

  onClose(why: CloseReason | undefined): void {
    if (this.closed) return;
    this.closed = true;
    const end = this.received.end(why);
    if (end === null) this.emit('end');
    else this.emit('error', end);
  }
}

/** A unary call in flight. */
class UnaryCall implements StreamHandler {
  id = 0;
  /** Set by the deadline sweep before it resets the stream. */
  expired = false;
  private res: Buffer | undefined;
  private readonly received = new Received();

  constructor(
    private readonly owner: Set<UnaryCall>,
    readonly conn: H2ClientConnection,
    readonly deadline: number,
    private readonly cb: Callback,
  ) {}

  onHeaders(fields: string[]): void {
    this.received.headers(fields);
  }

  onData(payload: Buffer): void {
    this.received.data(payload, (m) => (this.res ??= m));
  }

  onClose(why: CloseReason | undefined): void {
    this.owner.delete(this);
    if (this.expired) return this.cb(new GrpcError(Status.DEADLINE_EXCEEDED, 'deadline exceeded (no answer from the server)'));
    const end = this.received.end(why);
    if (end !== null) this.cb(end);
    else if (this.res === undefined) this.cb(new GrpcError(Status.INTERNAL, 'OK without a response message'));
    else this.cb(null, this.res);
  }
}

export class RawClient {
  private readonly inFlight = new Set<UnaryCall>();
  private readonly sweeper: NodeJS.Timeout;
  /** Request header lists by `channel method timeout`: built once, HPACK-encoded per call. */
  private readonly headers = new Map<string, string[]>();

  private constructor(
    private readonly conns: readonly H2ClientConnection[],
    /** The endpoint (host:port) of each channel. */
    readonly addresses: readonly string[],
  ) {
    // A server that answers nothing (stopped, partitioned) leaves calls that its own deadline cannot end.
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
  }

  /**
   * n channels, channel i to endpoints[i % endpoints.length], each its own connection and each
   * connected (the server's HTTP/2 SETTINGS received) before this resolves, or it throws.
   */
  static async open(endpoints: readonly string[], n: number): Promise<RawClient> {
    if (endpoints.length === 0) throw new Error('no endpoints');
    const addrs = Array.from({ length: n }, (_, i) => hostPort(endpoints[i % endpoints.length]!));
    const results = await Promise.allSettled(
      addrs.map((addr) => {
        const colon = addr.lastIndexOf(':');
        return H2ClientConnection.connect(addr.slice(0, colon).replace(/^\[|\]$/g, ''), Number(addr.slice(colon + 1)), {
          windowBytes: WINDOW_BYTES,
          connectTimeoutMs: CONNECT_TIMEOUT_MS,
        });
      }),
    );
    const failed = results.findIndex((r) => r.status === 'rejected');
    if (failed >= 0) {
      for (const r of results) if (r.status === 'fulfilled') r.value.destroy();
      throw new Error(`cannot connect to ${addrs[failed]}: ${((results[failed] as PromiseRejectedResult).reason as Error).message}`);
    }
    return new RawClient(
      results.map((r) => (r as PromiseFulfilledResult<H2ClientConnection>).value),
      addrs,
    );
  }

  get size(): number {
    return this.conns.length;
  }

  /** One unary call on channel ch with a serialized request; the response stays serialized (a view). */
  unary(ch: number, method: string, req: Buffer, cb: Callback, timeoutMs = CALL_TIMEOUT_MS): void {
    const i = ch % this.conns.length;
    const conn = this.conns[i]!;
    const call = new UnaryCall(this.inFlight, conn, performance.now() + timeoutMs, cb);
    const id = conn.open(this.headersFor(i, method, timeoutMs), call, frame(req), true);
    if (id instanceof Error) {
      setImmediate(() => cb(new GrpcError(Status.UNAVAILABLE, `${this.addresses[i]}: ${id.message}`)));
      return;
    }
    call.id = id;
    this.inFlight.add(call);
  }

  unaryAsync(ch: number, method: string, req: Buffer, timeoutMs = CALL_TIMEOUT_MS): Promise<Buffer> {
    return new Promise((resolve, reject) => this.unary(ch, method, req, (err, res) => (err ? reject(err) : resolve(res!)), timeoutMs));
  }

  /** A bidirectional stream on channel ch, bytes both ways (Watch, LeaseKeepAlive). */
  stream(ch: number, method: string): BidiStream {
    const i = ch % this.conns.length;
    const s = new BidiStream(this.conns[i]!);
    s.start(this.headersFor(i, method, undefined));
    return s;
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const c of this.conns) c.destroy();
  }

  private headersFor(ch: number, method: string, timeoutMs: number | undefined): string[] {
    const key = `${ch} ${method} ${timeoutMs ?? ''}`;
    let h = this.headers.get(key);
    if (h === undefined) {
      h = [':method', 'POST', ':scheme', 'http', ':path', method, ':authority', this.addresses[ch]!, 'content-type', 'application/grpc', 'te', 'trailers'];
      if (timeoutMs !== undefined) h.push('grpc-timeout', `${timeoutMs}m`);
      this.headers.set(key, h);
    }
    return h;
  }

  private sweep(): void {
    const now = performance.now();
    for (const call of this.inFlight) {
      if (call.deadline > now) continue;
      call.expired = true;
      call.conn.reset(call.id);
    }
  }
}

/**
 * Established TCP connections this process holds to any of the given ports (Linux: /proc), for
 * checking that n channels are n connections; undefined where /proc cannot tell.
 */
export function connectionsTo(ports: readonly number[]): number | undefined {
  try {
    const inodes = new Set<string>();
    for (const fd of readdirSync('/proc/self/fd')) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      } catch {
        // closed meanwhile
      }
    }
    let n = 0;
    for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch {
        continue;
      }
      for (const line of text.split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f.length < 10 || f[3] !== '01') continue;
        const remotePort = parseInt(f[2]!.slice(f[2]!.lastIndexOf(':') + 1), 16);
        if (ports.includes(remotePort) && inodes.has(f[9]!)) n++;
      }
    }
    return n;
  } catch {
    return undefined;
  }
}
