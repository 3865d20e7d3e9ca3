/**
 * The client port's gRPC server, on our own HTTP/2 connections (../h2/connection.ts) instead of
 * grpc-js's server on node:http2. The services (services.ts) are written as grpc-js handlers, and
 * are registered here unchanged with `addService`: each call gets an object with the part of
 * grpc-js's call surface they use (request, metadata, getAuthContext, write/end with 'drain',
 * 'data'/'end' for client messages, 'cancelled'/'close'/'finish', and `emit('error', status)` to
 * end a stream with a status, as grpc-js reads it). Unary methods with a FastMethod (all of
 * etcd's) skip the callback and the grpc-js message types: bytes in, bytes out.
 *
 * gRPC over HTTP/2 (the grpc PROTOCOL-HTTP2 spec): a request is HEADERS (POST, :path the method,
 * content-type application/grpc), then length-prefixed messages ([compressed u8][length u32 BE]
 * [bytes]); the answer is HEADERS, messages, and trailers with grpc-status and a percent-encoded
 * grpc-message, or, with no message, one trailers-only HEADERS. Messages compressed with gzip or
 * deflate are read (grpc-encoding); answers are never compressed.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { TLSSocket, type PeerCertificate } from 'node:tls';
import { gunzipSync, inflateSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { DEFAULT_H2_LIMITS, H2ServerConnection, type H2Limits, type H2Stream } from '../h2/connection.js';
import type { GrpcType } from './handled.js';
import { GRPC_MESSAGE_PREFIX_BYTES, framedMessage as framed } from './wire.js';
import type { HasAuthContext } from './identity.js';

const MESSAGE_HEADER_BYTES = GRPC_MESSAGE_PREFIX_BYTES;
/** grpc-timeout as grpc-js reads it: up to 8 digits and a unit. */
const TIMEOUT_HEADER = /(\d{1,8})\s*([HMSmun])/;
const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** The deadline's milliseconds from now, or undefined for a header grpc-js would refuse. */
export function parseGrpcTimeout(value: string): number | undefined {
  const m = TIMEOUT_HEADER.exec(value);
  return m === null ? undefined : (Number(m[1]) * TIMEOUT_UNIT_MS[m[2]!]!) | 0;
}

/** What a fast handler gets for the call: the subset of grpc-js's call the services read. */
export interface FastCall extends HasAuthContext {
  readonly metadata: grpc.Metadata;
}

/** A unary method answered from bytes, without grpc-js's message types and callback. */
export interface FastMethod {
  /** Decodes the request, answers it, and gives the answer's bytes, or throws a coded error. */
  run(request: Buffer, call: FastCall): Promise<Buffer>;
  /** Maps a thrown error to the status sent (the same mapping the handler's callback uses). */
  status(err: unknown): { code: grpc.status; details: string };
}
/** What grpc-js removes from a call's metadata before a handler sees it. */
const TRANSPORT_HEADERS = new Set(['grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'accept-encoding', 'te', 'content-type', 'user-agent']);
const ACCEPTED_ENCODINGS = 'identity,deflate,gzip';
const OK_HEADERS = [':status', '200', 'content-type', 'application/grpc', 'grpc-accept-encoding', ACCEPTED_ENCODINGS];
const OK_TRAILERS = ['grpc-status', '0', 'grpc-message', 'OK'];
/** How long close() lets open calls finish before the connections are cut. */
const CLOSE_GRACE_MS = 2000;

export interface GrpcServerOptions {
  /** grpc.max_receive_message_length: a larger message is refused with RESOURCE_EXHAUSTED, as grpc-js does. */
  readonly maxReceiveBytes: number;
  /** Each call's status (the handled-calls metric); calls the client cancelled have none. */
  readonly onStatus?: (path: string, type: GrpcType, code: grpc.status) => void;
  readonly limits?: H2Limits;
  /** What went wrong inside a connection that is not the client's fault (the connection is closed). */
  readonly log?: (msg: string, fields: Record<string, unknown>) => void;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDef = grpc.MethodDefinition<any, any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyHandler = (...args: any[]) => void;

interface Route {
  readonly def: AnyDef;
  readonly type: GrpcType;
  readonly handler: AnyHandler;
  fast: FastMethod | undefined;
}

/** A status sent as grpc-js sends it: code and details (what `emit('error', ...)` and callbacks carry). */
interface StatusLike {
  code?: number;
  details?: string;
  message?: string;
  metadata?: grpc.Metadata;
}

/** Trailers with a handler's metadata after them, as grpc-js sends it. */
function withMetadata(trailers: readonly string[], md: grpc.Metadata | undefined): readonly string[] {
  if (!(md instanceof grpc.Metadata)) return trailers;
  const out = [...trailers];
  for (const [k, v] of Object.entries(md.toHttp2Headers())) {
    for (const value of Array.isArray(v) ? v : [v]) out.push(k, String(value));
  }
  return out;
}

export class GrpcServer {
  private readonly routes = new Map<string, Route>();
  private readonly conns = new Set<H2ServerConnection>();
  private readonly limits: H2Limits;

  constructor(private readonly opts: GrpcServerOptions) {
    this.limits = opts.limits ?? DEFAULT_H2_LIMITS;
  }

  /** As grpc.Server.addService: the handlers by method name (or its lower-case original name). */
  addService(def: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation): void {
    for (const [name, md] of Object.entries(def) as [string, AnyDef][]) {
      const handler = (impl[name] ?? impl[md.originalName ?? '']) as AnyHandler | undefined;
      if (handler === undefined) continue;
      const type: GrpcType = md.requestStream ? (md.responseStream ? 'bidi_stream' : 'client_stream') : md.responseStream ? 'server_stream' : 'unary';
      this.routes.set(md.path, { def: md, type, handler, fast: undefined });
    }
  }

  /** Unary methods answered from bytes (addClientServices returns them). */
  setFastMethods(methods: ReadonlyMap<string, FastMethod>): void {
    for (const [path, m] of methods) {
      const r = this.routes.get(path);
      if (r !== undefined && r.type === 'unary') r.fast = m;
    }
  }

  /** Serves gRPC on a connection that has not sent anything yet (listen.ts routes it here). */
  accept(socket: Duplex): void {
    const conn = new H2ServerConnection(socket, (s) => this.onStream(s), this.limits, (err) =>
      this.opts.log?.('HTTP/2 connection closed on an internal error', { error: err.message, stack: err.stack }),
    );
    this.conns.add(conn);
    socket.once('close', () => this.conns.delete(conn));
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  /** GOAWAY on every connection; open calls get CLOSE_GRACE_MS to finish, then are cut. */
  async close(): Promise<void> {
    const all = Promise.all([...this.conns].map((c) => c.close()));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, CLOSE_GRACE_MS);
    });
    await Promise.race([all, late]);
    clearTimeout(timer);
    this.forceClose();
  }

  forceClose(): void {
    for (const c of this.conns) c.destroy();
  }

  private onStream(s: H2Stream): void {
    if (s.header(':method') !== 'POST') return s.respond([':status', '405'], true);
    const ct = s.header('content-type');
    if (ct === undefined || !ct.startsWith('application/grpc')) return s.respond([':status', '415'], true);
    const path = s.header(':path') ?? '';
    const route = this.routes.get(path);
    const call = new Call(s, path, route?.type ?? 'unary', route?.def, this.opts);
    if (route === undefined) return call.fail(grpc.status.UNIMPLEMENTED, `The server does not implement the method ${path}`);
    const enc = s.header('grpc-encoding');
    if (enc !== undefined && enc !== 'identity' && enc !== 'gzip' && enc !== 'deflate') {
      return call.fail(grpc.status.UNIMPLEMENTED, `Received message compressed with unsupported encoding "${enc}"`);
    }
    const timeout = s.header('grpc-timeout');
    if (timeout !== undefined) {
      const ms = parseGrpcTimeout(timeout);
      if (ms === undefined) return call.fail(grpc.status.INTERNAL, `Invalid grpc-timeout value "${timeout}"`);
      call.setDeadline(ms);
    }
    if (route.def.requestStream) {
      call.listen();
      readMessages(call, this.opts.maxReceiveBytes, (msg) => call.deliver(msg), () => call.deliverEnd());
      run(call, route);
      return;
    }
    readOne(call, this.opts.maxReceiveBytes, (msg) => {
      const fast = route.fast;
      if (fast !== undefined) return runFast(call, fast, msg);
      let request: unknown;
      try {
        request = route.def.requestDeserialize(msg);
      } catch {
        return call.fail(grpc.status.INTERNAL, 'Error deserializing request');
      }
      call.request = request;
      call.listen();
      run(call, route);
    });
  }
}

/**
 * Calls the route's handler as grpc-js would: (call) for server streams and bidi, (call, callback)
 * for unary and client streams. A synchronous throw ends the call with UNKNOWN, as grpc-js
 * answers it; never the process.
 */
function run(call: Call, route: Route): void {
  try {
    if (route.def.responseStream) route.handler(call);
    else route.handler(call, unaryCallback(call));
  } catch {
    call.fail(grpc.status.UNKNOWN, 'Unknown error');
  }
}

/** grpc-js's callback for unary and client-streaming handlers: an error status, or the answer (with trailing metadata). */
function unaryCallback(call: Call): (err: StatusLike | null, value?: unknown, trailer?: grpc.Metadata) => void {
  return (err, value, trailer) => {
    if (err !== null && err !== undefined) return call.failWith(err);
    const bytes = call.serialize(value);
    if (bytes !== undefined) call.answer(bytes, trailer);
  };
}

function runFast(call: Call, fast: FastMethod, msg: Buffer): void {
  fast.run(msg, call).then(
    (res) => call.answer(res),
    (err: unknown) => {
      const st = fast.status(err);
      call.fail(st.code, st.details);
    },
  );
}


/**
 * A compressed message's bytes, inflated no further than `max` (a small message may inflate to
 * gigabytes); or undefined when the call was answered with an error instead.
 */
function inflate(call: Call, msg: Buffer, max: number): Buffer | undefined {
  const enc = call.stream.header('grpc-encoding');
  try {
    if (enc === 'gzip') return gunzipSync(msg, { maxOutputLength: max });
    if (enc === 'deflate') return inflateSync(msg, { maxOutputLength: max });
  } catch (err) {
    if (err instanceof RangeError) {
      call.fail(grpc.status.RESOURCE_EXHAUSTED, `Received message that decompresses to a size larger than ${max}`);
      return undefined;
    }
  }
  call.fail(grpc.status.INTERNAL, 'Compressed message without grpc-encoding, or that does not inflate');
  return undefined;
}

function tooLarge(call: Call, len: number, max: number): void {
  call.fail(grpc.status.RESOURCE_EXHAUSTED, `Received message larger than max (${len} vs ${max})`);
}

/** The length in a message's prefix, once its 5 bytes are in (chunks hold `bytes` bytes), else -1. */
function prefixLength(chunks: readonly Buffer[], bytes: number): number {
  if (bytes < MESSAGE_HEADER_BYTES) return -1;
  const head = chunks[0]!.length >= MESSAGE_HEADER_BYTES ? chunks[0]! : Buffer.concat(chunks, bytes);
  return head.readUInt32BE(1);
}

/** A unary or server-streaming request: one message, whole when the client half-closes. */
function readOne(call: Call, max: number, onMessage: (msg: Buffer) => void): void {
  const s = call.stream;
  const chunks: Buffer[] = [];
  let bytes = 0;
  let checked = false;
  s.onData = (chunk) => {
    if (call.done) return;
    bytes += chunk.length;
    chunks.push(chunk);
    if (!checked) {
      // Refused as soon as its prefix says it is too large, naming its length, as grpc-js does.
      const len = prefixLength(chunks, bytes);
      if (len > max) return tooLarge(call, len, max);
      checked = len >= 0;
    }
    if (bytes > max + MESSAGE_HEADER_BYTES) tooLarge(call, bytes - MESSAGE_HEADER_BYTES, max);
  };
  s.onEnd = () => {
    if (call.done) return;
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, bytes);
    if (body.length < MESSAGE_HEADER_BYTES || body.readUInt32BE(1) !== body.length - MESSAGE_HEADER_BYTES) {
      return call.fail(grpc.status.INTERNAL, body.length === 0 ? 'No message received' : 'Malformed message framing');
    }
    let msg = body.subarray(MESSAGE_HEADER_BYTES);
    if (body[0] !== 0) {
      const inflated = inflate(call, msg, max);
      if (inflated === undefined) return;
      msg = inflated;
    }
    onMessage(msg);
  };
}

/** A client-streaming request: each message as it completes, then the end. */
function readMessages(call: Call, max: number, onMessage: (msg: Buffer) => void, onEnd: () => void): void {
  const s = call.stream;
  let buf: Buffer | undefined;
  s.onData = (chunk) => {
    if (call.done) return;
    buf = buf === undefined ? chunk : Buffer.concat([buf, chunk]);
    while (buf !== undefined && buf.length >= MESSAGE_HEADER_BYTES) {
      const len: number = buf.readUInt32BE(1);
      if (len > max) return tooLarge(call, len, max);
      if (buf.length < MESSAGE_HEADER_BYTES + len) break;
      let msg = buf.subarray(MESSAGE_HEADER_BYTES, MESSAGE_HEADER_BYTES + len);
      const compressed = buf[0] !== 0;
      buf = buf.length === MESSAGE_HEADER_BYTES + len ? undefined : buf.subarray(MESSAGE_HEADER_BYTES + len);
      if (compressed) {
        const inflated = inflate(call, msg, max);
        if (inflated === undefined) return;
        msg = inflated;
      }
      // A stream kept for long must not pin the socket chunk this message was cut from.
      onMessage(Buffer.from(msg));
      if (call.done) return;
    }
  };
  s.onEnd = () => {
    if (call.done) return;
    if (buf !== undefined) return call.fail(grpc.status.INTERNAL, 'Malformed message framing');
    onEnd();
  };
}

/**
 * One call: what a handler gets. An EventEmitter with grpc-js's event names, since the services
 * listen for them; the HTTP/2 stream underneath does the sending.
 */
class Call extends EventEmitter {
  request: unknown;
  cancelled = false;
  writableEnded = false;
  /** A status was sent (or the stream is gone): nothing more goes out. */
  done = false;
  private md: grpc.Metadata | undefined;
  private deadline: NodeJS.Timeout | undefined;
  /** Client messages (and their end) that came before a handler listened for them: grpc-js keeps them too. */
  private queued: unknown[] | undefined;
  private endQueued = false;

  constructor(
    readonly stream: H2Stream,
    private readonly path: string,
    private readonly type: GrpcType,
    private readonly def: AnyDef | undefined,
    private readonly opts: GrpcServerOptions,
  ) {
    super();
  }

  /**
   * Wires the stream to grpc-js's call events, for a call a handler sees. A fast unary call skips
   * it: nothing listens, and a call the client reset is noticed when its answer finds the stream closed.
   */
  listen(): void {
    // grpc-js: a handler ends a stream with an error status by emitting it.
    this.on('error', (err: StatusLike) => this.failWith(err));
    this.on('newListener', (event: string) => {
      // Called before the listener is added: hand over what waited once it is.
      if (event === 'data' && (this.queued !== undefined || this.endQueued)) process.nextTick(() => this.flushQueued());
    });
    this.stream.onDrain = () => this.emit('drain');
    this.stream.onClose = (reset) => {
      if (this.deadline !== undefined) clearTimeout(this.deadline);
      if (reset && !this.done) {
        this.done = true;
        this.cancelled = true;
        this.emit('cancelled');
      }
      this.emit('close');
    };
  }

  get metadata(): grpc.Metadata {
    if (this.md === undefined) {
      const h = this.stream.headers;
      const obj: Record<string, string | string[]> = {};
      for (let i = 0; i < h.length; i += 2) {
        const name = h[i]!;
        if (name.startsWith(':') || TRANSPORT_HEADERS.has(name)) continue;
        const prev = obj[name];
        obj[name] = prev === undefined ? h[i + 1]! : [...(Array.isArray(prev) ? prev : [prev]), h[i + 1]!];
      }
      this.md = grpc.Metadata.fromHttp2Headers(obj);
    }
    return this.md;
  }

  firstMetadata(name: string): string | Buffer | undefined {
    const key = name.toLowerCase();
    if (this.md !== undefined || key.endsWith('-bin') || TRANSPORT_HEADERS.has(key)) return this.metadata.get(key)[0];
    return this.stream.header(key);
  }

  /** As grpc-js: the verified peer certificate of a TLS connection, else nothing. */
  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: PeerCertificate } {
    const socket = this.stream.socket;
    if (!(socket instanceof TLSSocket) || !socket.authorized) return {};
    const cert = socket.getPeerCertificate();
    return { transportSecurityType: 'ssl', ...(cert.raw !== undefined ? { sslPeerCertificate: cert } : {}) };
  }

  getPeer(): string {
    const s = this.stream.socket as { remoteAddress?: string; remotePort?: number };
    return `${s.remoteAddress ?? 'unknown'}:${s.remotePort ?? 0}`;
  }

  getPath(): string {
    return this.path;
  }

  /** A client message of a streaming request, to the handler's 'data' listener (or kept until there is one). */
  deliver(msg: Buffer): void {
    let req: unknown;
    try {
      req = this.def!.requestDeserialize(msg);
    } catch {
      return this.fail(grpc.status.INTERNAL, 'Error deserializing request');
    }
    if (this.queued !== undefined || this.listenerCount('data') === 0) (this.queued ??= []).push(req);
    else this.emit('data', req);
  }

  /** The client half-closed: 'end', after every message was handed over. */
  deliverEnd(): void {
    if (this.queued !== undefined || this.listenerCount('data') === 0) this.endQueued = true;
    else this.emit('end');
  }

  private flushQueued(): void {
    const q = this.queued;
    this.queued = undefined;
    for (const req of q ?? []) {
      if (this.done) return;
      this.emit('data', req);
    }
    if (this.endQueued && !this.done) {
      this.endQueued = false;
      this.emit('end');
    }
  }

  /** A handler's answer as bytes, or undefined when it does not serialize (the call then ends INTERNAL, as grpc-js ends it). */
  serialize(value: unknown): Buffer | undefined {
    try {
      return this.def!.responseSerialize(value);
    } catch {
      this.fail(grpc.status.INTERNAL, 'Error serializing response');
      return undefined;
    }
  }

  setDeadline(ms: number): void {
    this.deadline = setTimeout(() => {
      this.fail(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded');
      this.cancelled = true;
      this.emit('cancelled');
    }, ms);
  }

  /** A unary call's answer: headers, the message and OK trailers (with a handler's metadata), in one write. */
  answer(res: Buffer, trailer?: grpc.Metadata): void {
    if (this.done) return;
    this.finished(grpc.status.OK);
    const s = this.stream;
    s.respond(OK_HEADERS);
    s.write(framed(res));
    s.end(withMetadata(OK_TRAILERS, trailer));
  }

  /** Sends a message on a server stream; false when the caller should wait for 'drain'. */
  write(msg: unknown): boolean {
    if (this.done || this.writableEnded) return false;
    const bytes = this.serialize(msg);
    if (bytes === undefined) return false;
    return this.writeFramed(framed(bytes));
  }

  /** write() for a message already serialized and framed (encodeFramedWatchEvents): sent as it is. */
  writeFramed(framedMsg: Buffer): boolean {
    if (this.done || this.writableEnded) return false;
    const s = this.stream;
    if (!s.headersSent) s.respond(OK_HEADERS);
    return s.write(framedMsg);
  }

  /** Ends a stream with OK. */
  end(): void {
    if (this.writableEnded) return;
    this.writableEnded = true;
    if (this.done) return;
    this.finished(grpc.status.OK);
    if (this.stream.headersSent) this.stream.end(OK_TRAILERS);
    else this.stream.respond([...OK_HEADERS, ...OK_TRAILERS], true);
    process.nextTick(() => this.emit('finish'));
  }

  failWith(err: StatusLike): void {
    this.fail(typeof err.code === 'number' ? err.code : grpc.status.UNKNOWN, err.details ?? err.message ?? '', err.metadata);
  }

  /** Ends the call with an error status: trailers, or a trailers-only answer when nothing was sent. */
  fail(code: grpc.status, details: string, metadata?: grpc.Metadata): void {
    if (this.done) return;
    this.finished(code);
    const s = this.stream;
    const status = withMetadata(['grpc-status', String(code), 'grpc-message', encodeURI(details)], metadata);
    if (s.headersSent) s.end(status);
    else s.respond([':status', '200', 'content-type', 'application/grpc', ...status], true);
  }

  private finished(code: grpc.status): void {
    this.done = true;
    if (this.deadline !== undefined) clearTimeout(this.deadline);
    // A stream closed before its status was sent was reset by the client: no status, not counted.
    if (!this.stream.closed) this.opts.onStatus?.(this.path, this.type, code);
  }
}
