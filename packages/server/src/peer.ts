/**
 * Member-to-member transport: one Raft stream per peer (raftstream.ts: plain TCP or TLS, frames of
 * Raft message batches, peercodec.ts), redialed with exponential backoff when it breaks; over gRPC, the
 * snapshot stream and a stream of requests only the leader can answer (lease keepalives,
 * time-to-live; forwarding.ts). The gRPC service is defined with identity serializers: the payloads
 * are already bytes.
 */
import type { Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { Message, NodeId } from '@capstan/raft';
import { NO_CHANNELZ } from './grpc/channelz.js';
import { ForwardClient, serveForwards } from './forwarding.js';
import { decodeMessages, encodeMessages, packr } from './peercodec.js';
import { dialRaftStream, FRAME_HEADER_BYTES, FrameDecoder, sealFrame } from './raftstream.js';
import { peerChannelCredentials, type TLSConfig } from './tls.js';

/** Largest peer message: a snapshot travels in one MsgSnap for now, so this bounds the store size that can be sent. */
export const MAX_PEER_MESSAGE_BYTES = 512 * 1024 * 1024;
/** Messages queued for one peer before further ones are dropped (Raft retries what it needs). */
export const MAX_PEER_QUEUE = 4096;
const BACKOFF_MIN_MS = 50;
const BACKOFF_MAX_MS = 1000;

const identity = (b: Buffer): Buffer => b;
/** A peer method on bytes that are already encoded (msgpack), so the serializers pass them through. */
function method(name: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path: `/capstan.peer.Peer/${name}`,
    requestStream,
    responseStream,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}
export const PEER_SERVICE: grpc.ServiceDefinition = {
  snapshot: method('Snapshot', true, false),
  forwards: method('Forwards', true, true),
};
const PeerClient = grpc.makeGenericClientConstructor(PEER_SERVICE, 'Peer');

export interface PeerHandlers {
  onMessages(msgs: Message[]): void;
  /** A peer could not be reached: Raft should slow down probing it. */
  onUnreachable(id: NodeId): void;
  /** A request forwarded by a peer; the answer goes back to it. */
  onForward(req: unknown): Promise<unknown>;
  /** A MsgSnap and the leader's store as a stream; resolves once installed. */
  onSnapshot(msg: Message, data: AsyncIterable<Buffer>): Promise<void>;
}

const CHANNEL_OPTIONS = {
  ...NO_CHANNELZ,
  'grpc.max_receive_message_length': MAX_PEER_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_PEER_MESSAGE_BYTES,
  'grpc.initial_reconnect_backoff_ms': BACKOFF_MIN_MS,
  'grpc.max_reconnect_backoff_ms': BACKOFF_MAX_MS,
  'grpc.keepalive_time_ms': 10_000,
};

class Peer {
  private client: grpc.Client;
  private forwards: ForwardClient;
  private stream: Socket | undefined;
  private backoff = BACKOFF_MIN_MS;
  private retryAt = 0;
  private closed = false;

  constructor(
    readonly id: NodeId,
    private url: string,
    private readonly handlers: PeerHandlers,
    private readonly tls: TLSConfig | undefined,
  ) {
    this.client = new PeerClient(target(url), peerChannelCredentials(url, tls), CHANNEL_OPTIONS);
    this.forwards = this.forwardClient();
  }

  send(msgs: Message[]): void {
    if (this.closed) return;
    const s = this.open();
    if (s === undefined) {
      this.handlers.onUnreachable(this.id);
      return;
    }
    // Backpressure: a peer that cannot keep up loses messages, which Raft recovers from; memory must not grow.
    if (s.writableLength > MAX_PEER_QUEUE * 1024) {
      this.handlers.onUnreachable(this.id);
      return;
    }
    s.write(sealFrame(encodeMessages(msgs, FRAME_HEADER_BYTES)));
  }

  forward(req: unknown): Promise<unknown> {
    return this.forwards.request(req);
  }

  private forwardClient(): ForwardClient {
    const client = this.client as unknown as { forwards(): grpc.ClientDuplexStream<Buffer, Buffer> };
    return new ForwardClient(() => client.forwards());
  }

  /** Streams a MsgSnap followed by the store's chunks; resolves when the peer installed it. */
  sendSnapshot(msg: Message, chunks: AsyncIterable<Buffer>): Promise<void> {
    return new Promise((resolve, reject) => {
      const client = this.client as unknown as {
        snapshot(cb: (err: grpc.ServiceError | null) => void): grpc.ClientWritableStream<Buffer>;
      };
      const call = client.snapshot((err) => (err === null ? resolve() : reject(err)));
      call.on('error', () => {});
      void (async () => {
        try {
          call.write(packr.pack(msg));
          for await (const c of chunks) {
            if (!call.write(c)) await new Promise((r) => call.once('drain', r));
          }
          call.end();
        } catch (err) {
          call.cancel();
          reject(err as Error);
        }
      })();
    });
  }

  setUrl(url: string): void {
    if (url === this.url) return;
    this.url = url;
    this.stream?.destroy();
    this.stream = undefined;
    this.forwards.close();
    this.client.close();
    this.client = new PeerClient(target(url), peerChannelCredentials(url, this.tls), CHANNEL_OPTIONS);
    this.forwards = this.forwardClient();
  }

  close(): void {
    this.closed = true;
    this.stream?.destroy();
    this.forwards.close();
    this.client.close();
  }

  private open(): Socket | undefined {
    if (this.stream !== undefined) return this.stream;
    if (Date.now() < this.retryAt) return undefined;
    const s = dialRaftStream(this.url, this.tls);
    // Until the peer is heard from again, each break backs off exponentially.
    s.on('error', () => this.broken(s));
    s.on('close', () => this.broken(s));
    this.stream = s;
    return s;
  }

  private broken(s: Socket): void {
    if (this.stream !== s) return;
    this.stream = undefined;
    s.destroy();
    this.retryAt = Date.now() + this.backoff;
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.handlers.onUnreachable(this.id);
  }

  /** A message arrived from this peer: its link works, so the next break retries quickly. */
  heard(): void {
    this.backoff = BACKOFF_MIN_MS;
    this.retryAt = 0;
  }
}

export class PeerTransport {
  private readonly peers = new Map<NodeId, Peer>();

  constructor(
    private readonly handlers: PeerHandlers,
    private readonly tls?: TLSConfig,
  ) {}

  /**
   * Reads a peer's Raft stream: a connection the peer listener routed here by its preface (paused).
   * A connection that breaks the framing is closed; a garbled batch is dropped (Raft retransmits).
   */
  readonly acceptStream = (socket: Socket): void => {
    const decoder = new FrameDecoder(MAX_PEER_MESSAGE_BYTES);
    socket.on('data', (chunk: Buffer) => {
      const frames = decoder.push(chunk);
      if (frames instanceof Error) {
        socket.destroy();
        return;
      }
      for (const f of frames) {
        const msgs = decodeMessages(f);
        if (msgs instanceof Error) continue;
        if (msgs.length > 0) this.peers.get(msgs[0]!.from)?.heard();
        this.handlers.onMessages(msgs);
      }
    });
    socket.resume();
  };

  /** Registers the peer service (snapshots, forwarded requests) on the member's peer gRPC server. */
  register(server: grpc.Server): void {
    server.addService(PEER_SERVICE, {
      snapshot: (call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        const it = call[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
        void (async () => {
          const first = await it.next();
          if (first.done === true) throw new Error('empty snapshot stream');
          const msg = packr.unpack(first.value) as Message;
          const rest: AsyncIterable<Buffer> = { [Symbol.asyncIterator]: () => it };
          await this.handlers.onSnapshot(msg, rest);
        })().then(
          () => callback(null, Buffer.alloc(0)),
          (err: unknown) => callback({ code: grpc.status.INTERNAL, details: String((err as Error)?.message ?? err) }),
        );
      },
      forwards: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => serveForwards(call, (req) => this.handlers.onForward(req)),
    });
  }

  setPeer(id: NodeId, url: string): void {
    const p = this.peers.get(id);
    if (p === undefined) this.peers.set(id, new Peer(id, url, this.handlers, this.tls));
    else p.setUrl(url);
  }

  removePeer(id: NodeId): void {
    this.peers.get(id)?.close();
    this.peers.delete(id);
  }

  send(msgs: readonly Message[]): void {
    const byPeer = new Map<NodeId, Message[]>();
    for (const m of msgs) {
      let list = byPeer.get(m.to);
      if (list === undefined) byPeer.set(m.to, (list = []));
      list.push(m);
    }
    for (const [to, list] of byPeer) {
      const p = this.peers.get(to);
      if (p === undefined) continue;
      p.send(list);
    }
  }

  sendSnapshot(to: NodeId, msg: Message, chunks: AsyncIterable<Buffer>): Promise<void> {
    const p = this.peers.get(to);
    if (p === undefined) return Promise.reject(new Error(`no peer ${to}`));
    return p.sendSnapshot(msg, chunks);
  }

  forward(to: NodeId, req: unknown): Promise<unknown> {
    const p = this.peers.get(to);
    if (p === undefined) return Promise.reject(new Error(`no peer ${to}`));
    return p.forward(req);
  }

  close(): void {
    for (const p of this.peers.values()) p.close();
    this.peers.clear();
  }
}

/** "http://127.0.0.1:2380" -> "127.0.0.1:2380", what grpc-js dials. */
export function target(url: string): string {
  const u = new URL(url);
  return u.host;
}

/** Asks peers (by URL) one at a time until one answers a forwarded request: a joining member learning the cluster. */
export async function askPeers(urls: readonly string[], req: unknown, tls?: TLSConfig): Promise<unknown> {
  let last: unknown = new Error('no peer URLs to ask');
  for (const url of urls) {
    const peer = new Peer(0, url, { onMessages: () => {}, onUnreachable: () => {}, onForward: async () => undefined, onSnapshot: async () => {} }, tls);
    try {
      const res = (await peer.forward(req)) as { error?: { message: string } };
      if (res !== null && typeof res === 'object' && 'error' in res && res.error !== undefined) throw new Error(res.error.message);
      return res;
    } catch (err) {
      last = err;
    } finally {
      peer.close();
    }
  }
  throw new Error(`could not reach any peer of the existing cluster: ${String((last as Error)?.message ?? last)}`);
}
