/**
 * A bare client for etcd's client API over our own codec: exact 64-bit values and raw responses,
 * and a token sent as given (the etcd3 client hides its token and re-authenticates by itself).
 * For tests and harnesses that need to see exactly what a member answers.
 */
import * as grpc from '@grpc/grpc-js';
import { TOKEN_METADATA } from './auth.js';
import { serviceDefinition } from './services.js';

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** One promise-returning function per unary method of the service, by its proto name. */
export type RawCalls = Record<string, (req: Record<string, unknown>) => Promise<Msg>>;

export interface RawClientOptions {
  /** Sent as the `token` metadata of every call (etcd's simple or JWT token). */
  token?: string;
}

function metadata(opts: RawClientOptions): grpc.Metadata {
  const md = new grpc.Metadata();
  if (opts.token !== undefined) md.set(TOKEN_METADATA, opts.token);
  return md;
}

export function rawClient(addr: string, service: string, opts: RawClientOptions = {}): { call: RawCalls; client: grpc.Client } {
  const def = serviceDefinition(service);
  const client = new grpc.Client(addr, grpc.credentials.createInsecure());
  const call: RawCalls = {};
  for (const name of Object.keys(def)) {
    const m = def[name]!;
    if (m.requestStream || m.responseStream) continue;
    call[name] = (req) =>
      new Promise((res, rej) => {
        client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, { msg: req, size: 0 }, metadata(opts), (err: grpc.ServiceError | null, r?: Msg) =>
          err ? rej(err) : res(r!),
        );
      });
  }
  return { call, client };
}

export interface RawWatch {
  /** Write `{ msg: WatchRequest, size: 0 }`. */
  call: grpc.ClientDuplexStream<unknown, Msg>;
  /** The next response, in order; rejects after 5 s without one. */
  next: () => Promise<Msg>;
  close: () => void;
}

/** A raw bidirectional Watch call, read one response at a time. */
export function rawWatch(addr: string, opts: RawClientOptions = {}): RawWatch {
  const def = serviceDefinition('Watch').Watch!;
  const client = new grpc.Client(addr, grpc.credentials.createInsecure());
  const call = client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, metadata(opts));
  const queue: Msg[] = [];
  const waiters: Array<(m: Msg) => void> = [];
  call.on('data', (m: Msg) => {
    const w = waiters.shift();
    if (w) w(m);
    else queue.push(m);
  });
  call.on('error', () => undefined);
  return {
    call,
    next: () => {
      const m = queue.shift();
      if (m !== undefined) return Promise.resolve(m);
      return new Promise((res, rej) => {
        const timer = setTimeout(() => rej(new Error('no watch response within 5s')), 5000);
        waiters.push((x) => {
          clearTimeout(timer);
          res(x);
        });
      });
    },
    close: () => {
      call.cancel();
      client.close();
    },
  };
}
