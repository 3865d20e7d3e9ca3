/**
 * Unary calls answered straight from the HTTP/2 stream, beside grpc-js. grpc-js spends about 66 us
 * of CPU on a unary call where node:http2 alone needs about 42 (a 2-core VM): per call it builds an
 * intercepting call with its listeners, a Metadata object, a decoder, a writable stream and the
 * status trailers through several layers. The hot methods (Range, Put, DeleteRange, Txn, ...) come
 * here when the call is a plain one: `application/grpc`, no compression and a handler registered
 * for its path. A deadline (`grpc-timeout`, which nearly every client sends) is kept as grpc-js
 * keeps it: a timer that answers DEADLINE_EXCEEDED, and INTERNAL for a header it cannot read.
 * Everything else (streams, compressed or unknown calls) goes to grpc-js unchanged.
 *
 * The wire format: a request is one length-prefixed message ([compressed u8][length u32 BE]
 * [bytes]); the answer is HEADERS, one such message and trailers with grpc-status 0, or, on error,
 * a trailers-only answer carrying the status and its percent-encoded message, as grpc-js sends.
 */
import type { ServerHttp2Stream, IncomingHttpHeaders, Http2Server } from 'node:http2';
import { TLSSocket, type PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { HasAuthContext } from './identity.js';

const MESSAGE_HEADER_BYTES = 5;
/** What grpc-js removes from a call's metadata before a handler sees it. */
const TRANSPORT_HEADERS = ['grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'accept-encoding', 'te', 'content-type'] as const;
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

export interface FastMethod {
  /** Decodes the request, answers it, and gives the answer's bytes, or throws a coded error. */
  run(request: Buffer, call: FastCall): Promise<Buffer>;
  /** Maps a thrown error to the status sent (the same mapping grpc-js's path uses). */
  status(err: unknown): { code: grpc.status; details: string };
}

export interface FastUnaryOptions {
  /** grpc.max_receive_message_length: a larger request is refused with RESOURCE_EXHAUSTED, as grpc-js does. */
  readonly maxReceiveBytes: number;
  /** Each answered call's status code (the handled-calls metric). */
  readonly onStatus?: (path: string, code: grpc.status) => void;
}

class CallInfo implements FastCall {
  private md: grpc.Metadata | undefined;

  constructor(
    private readonly headers: IncomingHttpHeaders,
    private readonly stream: ServerHttp2Stream,
  ) {}

  get metadata(): grpc.Metadata {
    if (this.md === undefined) {
      this.md = grpc.Metadata.fromHttp2Headers(this.headers);
      for (const h of TRANSPORT_HEADERS) this.md.remove(h);
    }
    return this.md;
  }

  /** As grpc-js: the verified peer certificate of a TLS connection, else nothing. */
  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: PeerCertificate } {
    const socket = this.stream.session?.socket;
    if (!(socket instanceof TLSSocket) || !socket.authorized) return {};
    const cert = socket.getPeerCertificate();
    return { transportSecurityType: 'ssl', ...(cert.raw !== undefined ? { sslPeerCertificate: cert } : {}) };
  }
}

/** Answers a plain unary call of a registered method; false leaves the stream to grpc-js. */
export function fastUnary(methods: ReadonlyMap<string, FastMethod>, opts: FastUnaryOptions): (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => boolean {
  return (stream, headers) => {
    const path = headers[':path'];
    if (path === undefined) return false;
    const method = methods.get(path);
    if (method === undefined) return false;
    if (headers['content-type'] !== 'application/grpc') return false;
    const enc = headers['grpc-encoding'];
    if (enc !== undefined && enc !== 'identity') return false;
    serve(stream, headers, path, method, opts);
    return true;
  };
}

function serve(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, path: string, method: FastMethod, opts: FastUnaryOptions): void {
  // Errors after a reset or a closed session have nowhere to go (grpc-js ignores them too).
  stream.on('error', () => {});
  const chunks: Buffer[] = [];
  let bytes = 0;
  /** Answered (or refused): whatever comes after is dropped, as grpc-js drops it. */
  let done = false;
  let deadline: NodeJS.Timeout | undefined;
  const fail = (code: grpc.status, details: string): void => {
    answer(code, () => stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': encodeURI(details) }, { endStream: true }));
  };
  /** Sends unless answered already or the client went away first (a reset stream refuses headers; grpc-js drops those answers too). */
  const answer = (code: grpc.status, send: () => void): void => {
    if (done) return;
    done = true;
    if (deadline !== undefined) clearTimeout(deadline);
    opts.onStatus?.(path, code);
    if (stream.destroyed || stream.closed || stream.headersSent) return;
    try {
      send();
    } catch {
      stream.destroy();
    }
  };
  const timeout = headers['grpc-timeout'] as string | undefined;
  if (timeout !== undefined) {
    const ms = parseGrpcTimeout(timeout);
    if (ms === undefined) {
      fail(grpc.status.INTERNAL, `Invalid grpc-timeout value "${timeout}"`);
      return;
    }
    deadline = setTimeout(() => fail(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded'), ms);
    stream.once('close', () => clearTimeout(deadline));
  }
  stream.on('data', (chunk: Buffer) => {
    if (done) return;
    bytes += chunk.length;
    if (bytes > opts.maxReceiveBytes + MESSAGE_HEADER_BYTES) {
      fail(grpc.status.RESOURCE_EXHAUSTED, `Received message larger than max (${bytes - MESSAGE_HEADER_BYTES} vs ${opts.maxReceiveBytes})`);
      return;
    }
    chunks.push(chunk);
  });
  stream.on('end', () => {
    if (done) return;
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, bytes);
    if (body.length < MESSAGE_HEADER_BYTES || body.readUInt32BE(1) !== body.length - MESSAGE_HEADER_BYTES) {
      fail(grpc.status.INTERNAL, body.length === 0 ? 'No message received' : 'Malformed message framing');
      return;
    }
    if (body[0] !== 0) {
      fail(grpc.status.INTERNAL, 'Compressed message without grpc-encoding');
      return;
    }
    method.run(body.subarray(MESSAGE_HEADER_BYTES), new CallInfo(headers, stream)).then(
      (res) => {
        answer(grpc.status.OK, () => {
          const frame = Buffer.allocUnsafe(MESSAGE_HEADER_BYTES + res.length);
          frame[0] = 0;
          frame.writeUInt32BE(res.length, 1);
          res.copy(frame, MESSAGE_HEADER_BYTES);
          stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-accept-encoding': 'identity' }, { waitForTrailers: true });
          stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'OK' }));
          stream.end(frame);
        });
      },
      (err: unknown) => {
        const st = method.status(err);
        fail(st.code, st.details);
      },
    );
  });
}

/**
 * Puts `route` in front of grpc-js's handling of the streams of the HTTP/2 server behind the
 * connection injector just created on `server`. Reaches into grpc-js (its private map of HTTP/2
 * servers, pinned version 1.14): if that shape is not there, nothing changes and every call goes
 * through grpc-js.
 */
export function routeStreamsBefore(server: grpc.Server, route: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => boolean): boolean {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) return false;
  const h2 = [...(servers as Map<Http2Server, unknown>).keys()].at(-1)!;
  const theirs = h2.listeners('stream') as ((stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number) => void)[];
  if (theirs.length === 0) return false;
  h2.removeAllListeners('stream');
  h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number) => {
    if (route(stream, headers)) return;
    for (const f of theirs) f.call(h2, stream, headers, flags);
  });
  return true;
}
