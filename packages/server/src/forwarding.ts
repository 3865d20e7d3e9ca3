/**
 * Requests a member forwards to its leader (lease keepalives and time-to-live, a joining member
 * asking for the cluster) travel on one long-lived gRPC stream per peer, each message tagged with
 * an id, rather than as a unary call each. A unary call is a fresh HTTP/2 stream with headers,
 * metadata and a call stack on both sides. Under the bench's 256 keepalive streams spread over
 * three members, that capped the cluster at 50,790 keepalives/s against 236,284/s sent to the
 * leader alone, and it left garbage whose clearing made every member's full collections 20-90 ms
 * long, pauses that fell on whatever ran next (bench/FINDINGS.md, "Forwarded keepalives").
 */
import * as grpc from '@grpc/grpc-js';
import { packr } from './peercodec.js';

/** A forwarded request that gets no answer in this long fails (the caller maps it to a timeout). */
export const FORWARD_TIMEOUT_MS = 5000;
/** Forwarded requests awaiting answers from one peer; more fail at once rather than queue without bound. */
export const MAX_FORWARDS_INFLIGHT = 16_384;
/** How often requests past their deadline are failed: deadlines are kept to within this. */
const DEADLINE_SWEEP_MS = 250;

/** Why a forwarded request got no answer: the caller decides what its client sees. */
export class ForwardError extends Error {
  override readonly name = 'ForwardError';
}

interface Pending {
  readonly resolve: (res: unknown) => void;
  readonly reject: (err: Error) => void;
  readonly deadline: number;
}

/** [id, payload]: a request going out, or its answer coming back. */
type Envelope = [number, unknown];

function unpackEnvelope(b: Buffer): Envelope | undefined {
  let m: unknown;
  try {
    m = packr.unpack(b);
  } catch {
    return undefined;
  }
  return Array.isArray(m) && m.length === 2 && Number.isSafeInteger(m[0]) ? (m as Envelope) : undefined;
}

/**
 * The asking side: opens the stream on first use and again after it breaks. A break fails every
 * request waiting on it; the answer to one that already failed is ignored.
 */
export class ForwardClient {
  private call: grpc.ClientDuplexStream<Buffer, Buffer> | undefined;
  /** In id order, which is deadline order: the sweep stops at the first that has time left. */
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly open: () => grpc.ClientDuplexStream<Buffer, Buffer>,
    private readonly timeoutMs = FORWARD_TIMEOUT_MS,
  ) {}

  request(req: unknown): Promise<unknown> {
    if (this.closed) return Promise.reject(new ForwardError('peer removed'));
    if (this.pending.size >= MAX_FORWARDS_INFLIGHT) {
      return Promise.reject(new ForwardError(`${MAX_FORWARDS_INFLIGHT} forwarded requests already in flight`));
    }
    const call = this.call ?? this.start();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadline: performance.now() + this.timeoutMs });
      call.write(packr.pack([id, req] satisfies Envelope));
    });
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.failAll(new ForwardError('peer removed'));
  }

  private start(): grpc.ClientDuplexStream<Buffer, Buffer> {
    const call = this.open();
    const broken = (err: Error): void => {
      if (this.call !== call) return;
      this.call = undefined;
      this.failAll(new ForwardError(`forward stream broke: ${err.message}`));
    };
    call.on('data', (b: Buffer) => this.answer(b));
    call.on('error', broken);
    call.on('end', () => broken(new Error('ended by the peer')));
    this.call = call;
    this.sweeper ??= setInterval(() => this.sweep(), DEADLINE_SWEEP_MS).unref();
    return call;
  }

  private answer(b: Buffer): void {
    const env = unpackEnvelope(b);
    if (env === undefined) return;
    const p = this.pending.get(env[0]);
    if (p === undefined) return;
    this.pending.delete(env[0]);
    p.resolve(env[1]);
  }

  private sweep(): void {
    const now = performance.now();
    for (const [id, p] of this.pending) {
      if (p.deadline > now) return;
      this.pending.delete(id);
      p.reject(new ForwardError(`no answer in ${this.timeoutMs} ms`));
    }
  }

  private failAll(err: Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(err);
  }
}

/**
 * The answering side of one peer's stream: each request is handed to `handle` as it arrives, and
 * answers go back as they resolve, in any order. A message that is not an envelope ends the
 * stream with INVALID_ARGUMENT; when the peer half-closes, the stream ends once all are answered.
 */
export function serveForwards(call: grpc.ServerDuplexStream<Buffer, Buffer>, handle: (req: unknown) => Promise<unknown>): void {
  let unanswered = 0;
  let peerDone = false;
  let done = false;
  const finish = (): void => {
    if (done) return;
    done = true;
    call.end();
  };
  call.on('data', (b: Buffer) => {
    if (done) return;
    const env = unpackEnvelope(b);
    if (env === undefined) {
      done = true;
      call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'forwarded request is not an [id, request] envelope' });
      return;
    }
    unanswered++;
    void handle(env[1]).then(
      (res) => reply(env[0], res),
      (err: unknown) => reply(env[0], { error: errorPayload(err) }),
    );
  });
  const reply = (id: number, res: unknown): void => {
    unanswered--;
    if (done || call.cancelled) return;
    call.write(packr.pack([id, res] satisfies Envelope));
    if (peerDone && unanswered === 0) finish();
  };
  call.on('end', () => {
    peerDone = true;
    if (unanswered === 0) finish();
  });
  // A cancelled call (the peer went away) emits this; its answers are dropped above.
  call.on('error', () => {});
}

/** An error as a forwarded answer carries it: a gRPC-ish code the asking member maps back, and the message. */
export function errorPayload(err: unknown): { code: string; message: string } {
  const e = err as { code?: unknown; message?: unknown };
  return { code: typeof e.code === 'string' ? e.code : 'INTERNAL', message: String(e.message ?? err) };
}
