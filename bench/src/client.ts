/**
 * The load generator's client: etcd's gRPC API spoken over Node's own HTTP/2 (nghttp2), with
 * nothing else in the way. Several channels, each its own HTTP/2 connection; requests serialized
 * once, ahead of time, with @capstan/server's protobuf codec (etcd's protos in proto/); responses
 * left as bytes unless a workload needs to read them.
 *
 * Not grpc-js: the load generator shares the machine's two cores with the members, and grpc-js
 * cost it a core at about 4,500 puts/s, with scavenges of 10 ms and more. Its own queueing was
 * then part of every latency measured, and it capped the throughput of both systems: 16 x 16
 * puts for 10 s against the same Capstan cluster gave 4,778 ops/s, p99 124 ms through grpc-js
 * at 97% of a core, and 9,750 ops/s, p99 67 ms this way at 76% (etcd: 3,323 and 7,288 ops/s).
 */
import { EventEmitter } from 'node:events';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import * as http2 from 'node:http2';
import { codec, type MessageCodec } from '@capstan/server';

/** A channel that is not connected within this long fails the run. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** A single request's deadline: a stuck cluster shows up as errors, not as a hang. */
export const CALL_TIMEOUT_MS = 10_000;
/**
 * Each stream's and the connection's receive window. Node's default, 64 KiB, makes a 1,000-key
 * range response (about 300 KiB) wait for window updates on the way; etcd's Go clients grow
 * their windows to several MiB.
 */
export const WINDOW_BYTES = 4 << 20;
/** HTTP/2 session memory (MiB) before Node refuses new streams: many streams share a connection (watch). */
export const SESSION_MEMORY_MB = 256;
/** How often calls past their deadline are looked for (the server's own deadline comes first). */
const SWEEP_MS = 1_000;
/** The gRPC message prefix: a compressed-flag byte and a 4-byte big-endian length. */
const PREFIX_BYTES = 5;

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

/** One message with its gRPC prefix. */
export function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(PREFIX_BYTES + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, PREFIX_BYTES);
  return out;
}

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

/** The status a response carries in its headers (trailers-only) or trailers; undefined if none. */
function statusOf(h: http2.IncomingHttpHeaders): GrpcError | null | undefined {
  const s = h['grpc-status'];
  if (s === undefined) return undefined;
  const code = Number(s);
  if (code === Status.OK) return null;
  const raw = h['grpc-message'];
  let details = typeof raw === 'string' ? raw : '';
  try {
    details = decodeURIComponent(details);
  } catch {
    // not percent-encoded after all: as sent
  }
  return new GrpcError(Number.isInteger(code) ? code : Status.UNKNOWN, details);
}

/** How a stream that closed ended: its status, or why it has none. */
function endOf(st: http2.ClientHttp2Stream, status: GrpcError | null | undefined, err: Error | undefined): GrpcError | null {
  if (status !== undefined) return status;
  if (err !== undefined) return new GrpcError(Status.UNAVAILABLE, err.message);
  return new GrpcError(st.rstCode === http2.constants.NGHTTP2_CANCEL ? Status.CANCELLED : Status.UNAVAILABLE, `stream closed without a status (RST ${st.rstCode ?? 'none'})`);
}

/** Request headers per method and timeout: Node copies them, so one object serves every call. */
const headersCache = new Map<string, http2.OutgoingHttpHeaders>();
function headersFor(method: string, timeoutMs: number | undefined): http2.OutgoingHttpHeaders {
  const key = `${method} ${timeoutMs ?? ''}`;
  let h = headersCache.get(key);
  if (h === undefined) {
    h = { ':method': 'POST', ':path': method, 'content-type': 'application/grpc', te: 'trailers' };
    if (timeoutMs !== undefined) h['grpc-timeout'] = `${timeoutMs}m`;
    headersCache.set(key, h);
  }
  return h;
}

/**
 * A bidirectional stream, message by message: 'data' (a message), 'error' (a GrpcError: a status
 * other than OK, or the stream lost), 'end' (closed with OK).
 */
export class BidiStream extends EventEmitter {
  private readonly deframer = new Deframer();
  private status: GrpcError | null | undefined;
  private failure: Error | undefined;

  constructor(private readonly st: http2.ClientHttp2Stream) {
    super();
    st.on('response', (h) => (this.status = statusOf(h)));
    st.on('trailers', (h) => (this.status = statusOf(h)));
    st.on('data', (chunk: Buffer) => {
      try {
        this.deframer.push(chunk, (m) => this.emit('data', m));
      } catch (err) {
        this.failure = err as Error;
        st.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      }
    });
    st.on('error', (err: Error) => (this.failure ??= err));
    st.on('close', () => {
      const end = this.failure instanceof GrpcError ? this.failure : endOf(st, this.status, this.failure);
      if (end === null) this.emit('end');
      else this.emit('error', end);
    });
  }

  /** Whether a write can still reach the server. */
  get open(): boolean {
    return !this.st.destroyed && this.st.writable;
  }

  write(message: Buffer): void {
    this.st.write(frame(message));
  }

  /** Ends the call from this side (RST_STREAM CANCEL); its 'error' is a CANCELLED status. */
  cancel(): void {
    if (!this.st.destroyed) this.st.close(http2.constants.NGHTTP2_CANCEL);
  }
}

/** A unary call in flight: what the deadline sweep needs. */
interface InFlight {
  readonly st: http2.ClientHttp2Stream;
  readonly deadline: number;
}

export class RawClient {
  private readonly inFlight = new Set<InFlight>();
  private readonly sweeper: NodeJS.Timeout;

  private constructor(
    private readonly sessions: readonly http2.ClientHttp2Session[],
    /** The endpoint (host:port) of each channel. */
    readonly addresses: readonly string[],
  ) {
    // A server that answers nothing (stopped, partitioned) leaves calls that its own deadline cannot end.
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
  }

  /**
   * n channels, channel i to endpoints[i % endpoints.length], each its own connection and each
   * connected before this resolves (or it throws).
   */
  static async open(endpoints: readonly string[], n: number): Promise<RawClient> {
    if (endpoints.length === 0) throw new Error('no endpoints');
    const sessions: http2.ClientHttp2Session[] = [];
    const addrs: string[] = [];
    const connected: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const addr = hostPort(endpoints[i % endpoints.length]!);
      addrs.push(addr);
      const s = http2.connect(`http://${addr}`, { settings: { enablePush: false, initialWindowSize: WINDOW_BYTES }, maxSessionMemory: SESSION_MEMORY_MB });
      // A lost connection fails its calls through their streams; the session's own error must not end the process.
      s.on('error', () => {});
      sessions.push(s);
      connected.push(
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`cannot connect to ${addr}: no connection within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
          s.once('connect', () => {
            clearTimeout(timer);
            s.setLocalWindowSize(WINDOW_BYTES);
            resolve();
          });
          s.once('error', (err) => {
            clearTimeout(timer);
            reject(new Error(`cannot connect to ${addr}: ${err.message}`));
          });
        }),
      );
    }
    const c = new RawClient(sessions, addrs);
    try {
      await Promise.all(connected);
    } catch (err) {
      c.close();
      throw err;
    }
    return c;
  }

  get size(): number {
    return this.sessions.length;
  }

  /** One unary call on channel ch with a serialized request; the response stays serialized. */
  unary(ch: number, method: string, req: Buffer, cb: Callback, timeoutMs = CALL_TIMEOUT_MS): void {
    const session = this.sessions[ch % this.sessions.length]!;
    if (session.closed || session.destroyed) {
      setImmediate(() => cb(new GrpcError(Status.UNAVAILABLE, `connection to ${this.addresses[ch % this.addresses.length]} closed`)));
      return;
    }
    const st = session.request(headersFor(method, timeoutMs));
    const call: InFlight = { st, deadline: performance.now() + timeoutMs };
    this.inFlight.add(call);
    let res: Buffer | undefined;
    let status: GrpcError | null | undefined;
    let failure: Error | undefined;
    const deframer = new Deframer();
    st.on('response', (h) => (status = statusOf(h)));
    st.on('trailers', (h) => (status = statusOf(h)));
    st.on('data', (chunk: Buffer) => {
      try {
        deframer.push(chunk, (m) => (res ??= m));
      } catch (err) {
        failure = err as Error;
      }
    });
    st.on('error', (err: Error) => (failure ??= err));
    st.on('close', () => {
      this.inFlight.delete(call);
      const end = failure instanceof GrpcError ? failure : endOf(st, status, failure);
      if (end !== null) cb(end);
      else if (res === undefined) cb(new GrpcError(Status.INTERNAL, 'OK without a response message'));
      else cb(null, res);
    });
    st.end(frame(req));
  }

  unaryAsync(ch: number, method: string, req: Buffer, timeoutMs = CALL_TIMEOUT_MS): Promise<Buffer> {
    return new Promise((resolve, reject) => this.unary(ch, method, req, (err, res) => (err ? reject(err) : resolve(res!)), timeoutMs));
  }

  /** A bidirectional stream on channel ch, bytes both ways (Watch, LeaseKeepAlive). */
  stream(ch: number, method: string): BidiStream {
    return new BidiStream(this.sessions[ch % this.sessions.length]!.request(headersFor(method, undefined)));
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const s of this.sessions) s.destroy();
  }

  private sweep(): void {
    const now = performance.now();
    for (const call of this.inFlight) {
      if (call.deadline > now) continue;
      this.inFlight.delete(call);
      call.st.destroy(new GrpcError(Status.DEADLINE_EXCEEDED, 'deadline exceeded (no answer from the server)'));
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
