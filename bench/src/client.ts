/**
 * The load generator's client: etcd's gRPC API with as little in the way as grpc-js allows.
 * Several channels, each its own HTTP/2 connection (grpc-js shares one subchannel between
 * channels of equal target and options, so each channel gets a local subchannel pool and an
 * option of its own); requests serialized once, ahead of time, with @capstan/server's protobuf
 * codec (etcd's protos in proto/); responses left as bytes unless a workload needs to read them.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { codec, type MessageCodec } from '@capstan/server';

/** A channel that is not connected within this long fails the run. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** A single request's deadline: a stuck cluster shows up as errors, not as a hang. */
export const CALL_TIMEOUT_MS = 10_000;

const identity = (b: Buffer): Buffer => b;

export const KV = '/etcdserverpb.KV/';
export const LEASE = '/etcdserverpb.Lease/';
export const WATCH = '/etcdserverpb.Watch/';

/** The codec of an etcdserverpb message (e.g. 'PutRequest'). */
export function msg<T>(name: string): MessageCodec<T> {
  return codec<T>(`etcdserverpb.${name}`);
}

/** `host:port` from `host:port` or `http://host:port/`. */
export function hostPort(endpoint: string): string {
  return endpoint.replace(/^https?:\/\//, '').replace(/\/$/, '');
}

export type Callback = (err: grpc.ServiceError | null, res?: Buffer) => void;

export class RawClient {
  private constructor(
    readonly channels: readonly grpc.Client[],
    /** The endpoint (host:port) of each channel. */
    readonly addresses: readonly string[],
  ) {}

  /**
   * n channels, channel i to endpoints[i % endpoints.length], each connected before this
   * resolves (or it throws).
   */
  static async open(endpoints: readonly string[], n: number): Promise<RawClient> {
    if (endpoints.length === 0) throw new Error('no endpoints');
    const chans: grpc.Client[] = [];
    const addrs: string[] = [];
    for (let i = 0; i < n; i++) {
      const addr = hostPort(endpoints[i % endpoints.length]!);
      addrs.push(addr);
      chans.push(
        new grpc.Client(addr, grpc.credentials.createInsecure(), {
          'grpc.use_local_subchannel_pool': 1,
          // Unknown to grpc-js, but part of the channel's identity: no two channels are one.
          'capstan.bench.channel': i,
          'grpc.max_receive_message_length': -1,
          'grpc.max_send_message_length': -1,
          // Many streams in flight on one connection (the watch workload): not the 10 MB default.
          'grpc-node.max_session_memory': 256,
        } as grpc.ChannelOptions),
      );
    }
    const c = new RawClient(chans, addrs);
    try {
      const deadline = Date.now() + CONNECT_TIMEOUT_MS;
      await Promise.all(
        chans.map(
          (ch, i) =>
            new Promise<void>((resolve, reject) =>
              ch.waitForReady(deadline, (err) => (err ? reject(new Error(`cannot connect to ${addrs[i]}: ${err.message}`)) : resolve())),
            ),
        ),
      );
    } catch (err) {
      c.close();
      throw err;
    }
    return c;
  }

  get size(): number {
    return this.channels.length;
  }

  /** One unary call on channel ch with a serialized request; the response stays serialized. */
  unary(ch: number, method: string, req: Buffer, cb: Callback, timeoutMs = CALL_TIMEOUT_MS): void {
    this.channels[ch % this.channels.length]!.makeUnaryRequest(method, identity, identity, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
      cb(err ?? null, res),
    );
  }

  unaryAsync(ch: number, method: string, req: Buffer, timeoutMs = CALL_TIMEOUT_MS): Promise<Buffer> {
    return new Promise((resolve, reject) => this.unary(ch, method, req, (err, res) => (err ? reject(err) : resolve(res!)), timeoutMs));
  }

  /** A bidirectional stream on channel ch, bytes both ways (Watch, LeaseKeepAlive). */
  stream(ch: number, method: string): grpc.ClientDuplexStream<Buffer, Buffer> {
    return this.channels[ch % this.channels.length]!.makeBidiStreamRequest(method, identity, identity);
  }

  close(): void {
    for (const ch of this.channels) ch.close();
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
