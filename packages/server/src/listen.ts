/** A member's listeners: gRPC and HTTP on its URLs, in the clear or over TLS. */
import type { Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { GrpcServer } from './grpc/server.js';
import { RAFT_STREAM_SNIFF } from './raftstream.js';
import { checkPeerSAN, tlsServerOptions, type TLSConfig } from './tls.js';

export function shutdown(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => server.forceShutdown(), 2000);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

/** The first bytes of every HTTP/2 connection (RFC 9113 §3.4); no HTTP/1 method starts with "PR". */
const H2_PREFIX = Buffer.from('PR');

export interface Mux {
  /** The port each URL got (a URL with port 0 gets one from the OS). */
  readonly ports: readonly number[];
  close(): Promise<void>;
}

export interface MuxOptions {
  /** Serves the HTTP/2 connections: our own server (the client port) or grpc-js's (the peer port). */
  readonly grpc?: grpc.Server | GrpcServer;
  /** Serves the HTTP/1 connections (/health, /metrics, /version). */
  readonly http?: HttpServer;
  /** Takes the connections that open with the Raft stream's preface (raftstream.ts), paused. */
  readonly raft?: (socket: Socket) => void;
  /** What https URLs present and require; needed if any URL is https. */
  readonly tls?: TLSConfig;
  /** etcd's peer listeners check that a client certificate naming hosts names the connection's address. */
  readonly checkSAN?: boolean;
  readonly log?: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

/**
 * Listens on `urls` (http or https) and hands each connection to gRPC or HTTP, as etcd's cmux does
 * on the client port. In the clear, a connection's first bytes say which (HTTP/2's preface starts
 * with "PR"). Over TLS, the handshake happens here (node:tls, with the client certificate required
 * when the config says so) and the protocol negotiated by ALPN says which ("h2" is gRPC), or the
 * first decrypted bytes when the client offered none. gRPC gets the connection through grpc-js's
 * connection injector (an insecure one: the TLS socket it gets is already decrypted, and calls still
 * see its verified peer certificate through getAuthContext()).
 */
export async function listenMux(urls: readonly string[], opts: MuxOptions): Promise<Mux> {
  const { grpc: server, http, raft } = opts;
  if (server === undefined && http === undefined && raft === undefined) throw new Error('listenMux: nothing to serve');
  const own = server instanceof GrpcServer ? server : undefined;
  const injector = server instanceof grpc.Server ? server.createConnectionInjector(grpc.ServerCredentials.createInsecure()) : undefined;
  const listeners: NetServer[] = [];
  const sockets = new Set<Socket>();
  const track = (socket: Socket): void => {
    // As Go's listeners (etcd's): small frames go out at once, not after the peer's delayed ACK.
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const toGrpc = (socket: Socket): void => {
    if (own !== undefined) own.accept(socket);
    else if (injector !== undefined) injector.injectConnection(socket);
    else socket.destroy();
  };
  const toHttp = (socket: Socket): void => {
    if (http === undefined) {
      socket.destroy();
      return;
    }
    http.emit('connection', socket);
    socket.resume();
  };
  const toRaft = (socket: Socket): void => {
    if (raft !== undefined) raft(socket);
    else socket.destroy();
  };
  /** Routes by the first bytes: the Raft stream's preface to it, HTTP/2 to gRPC, anything else to HTTP. */
  const sniff = (socket: Socket): void => {
    if (raft === undefined && http === undefined) return toGrpc(socket);
    if (raft === undefined && server === undefined) return toHttp(socket);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      if (head.length < H2_PREFIX.length) return;
      socket.off('data', onData);
      socket.pause();
      socket.unshift(head);
      const first = head.subarray(0, H2_PREFIX.length);
      if (first.equals(RAFT_STREAM_SNIFF)) toRaft(socket);
      else if (first.equals(H2_PREFIX) || http === undefined) toGrpc(socket);
      else toHttp(socket);
    };
    socket.on('data', onData);
    // A TLS socket arrives here paused after the peer-certificate check.
    socket.resume();
  };
  const plain = (socket: Socket): void => {
    track(socket);
    sniff(socket);
  };
  const secure = (socket: TLSSocket): void => {
    track(socket);
    const route = (): void => {
      if (socket.alpnProtocol === 'h2') toGrpc(socket);
      else if (socket.alpnProtocol === 'http/1.1') toHttp(socket);
      else sniff(socket);
    };
    if (opts.checkSAN !== true || !socket.authorized) return route();
    socket.pause();
    void checkPeerSAN(socket.getPeerCertificate(), socket.remoteAddress ?? '').then((err) => {
      if (socket.destroyed) return; // closed (or the listener closed) while names were looked up
      if (err === undefined) return route();
      opts.log?.('warn', 'rejected connection', { 'remote-addr': `${socket.remoteAddress}:${socket.remotePort}`, error: err });
      socket.destroy();
    });
  };
  const alpn = [...(server !== undefined ? ['h2'] : []), ...(http !== undefined ? ['http/1.1'] : [])];
  try {
    for (const url of urls) {
      const u = new URL(url);
      let s: NetServer;
      if (u.protocol === 'https:') {
        if (opts.tls === undefined) throw new Error(`${url}: an https URL needs a certificate and key`);
        const ts = createTlsServer(tlsServerOptions(opts.tls, alpn), secure);
        // Sockets still shaking hands are closed with the listener too.
        ts.on('connection', (raw: Socket) => track(raw));
        ts.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
          opts.log?.('warn', 'rejected connection', { 'remote-addr': `${socket.remoteAddress}:${socket.remotePort}`, 'server-url': url, error: err.message });
        });
        s = ts;
      } else {
        s = createNetServer(plain);
      }
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(Number(u.port), u.hostname.replace(/^\[|\]$/g, ''), () => resolve());
      });
      listeners.push(s);
    }
  } catch (err) {
    for (const s of listeners) s.close();
    injector?.destroy();
    throw err;
  }
  return {
    ports: listeners.map((l) => (l.address() as AddressInfo).port),
    close: async () => {
      // A listener's close callback waits for every connection to end, and a client may never
      // hang up (the etcd3 client leaves the connection of each Authenticate call open): give
      // them the drain's second, then cut what is left.
      const closed = Promise.all(listeners.map((s) => new Promise((r) => s.close(r))));
      injector?.drain(1000);
      void own?.close();
      await Promise.race([closed, new Promise((r) => setTimeout(r, 1000).unref())]);
      for (const s of sockets) s.destroy();
      injector?.destroy();
      await closed;
    },
  };
}
