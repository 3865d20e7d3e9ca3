/** gRPC servers on the member's URLs. */
import type { Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { target } from './peer.js';

export async function listen(server: grpc.Server, urls: readonly string[]): Promise<number[]> {
  const ports: number[] = [];
  for (const url of urls) {
    ports.push(
      await new Promise<number>((resolve, reject) =>
        server.bindAsync(target(url), grpc.ServerCredentials.createInsecure(), (err, port) => (err === null ? resolve(port) : reject(err))),
      ),
    );
  }
  return ports;
}

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
  close(): Promise<void>;
}

/**
 * etcd serves gRPC and plain HTTP (/health, /metrics, /version) on the same client port (cmux):
 * each connection's first bytes say which it is, and it is handed to the gRPC server (through its
 * connection injector) or to the HTTP server.
 */
export async function listenMux(urls: readonly string[], server: grpc.Server, http: HttpServer): Promise<Mux> {
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const listeners: NetServer[] = [];
  const sockets = new Set<Socket>();
  const route = (socket: Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      if (head.length < H2_PREFIX.length) return;
      socket.off('data', onData);
      socket.pause();
      socket.unshift(head);
      if (head.subarray(0, H2_PREFIX.length).equals(H2_PREFIX)) injector.injectConnection(socket);
      else {
        http.emit('connection', socket);
        socket.resume();
      }
    };
    socket.on('data', onData);
    socket.on('error', () => socket.destroy());
  };
  try {
    for (const url of urls) {
      const u = new URL(url);
      const s = createNetServer(route);
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(Number(u.port), u.hostname.replace(/^\[|\]$/g, ''), () => resolve());
      });
      listeners.push(s);
    }
  } catch (err) {
    for (const s of listeners) s.close();
    injector.destroy();
    throw err;
  }
  return {
    close: async () => {
      // A listener's close callback waits for its connections to end: end them first, or an
      // open client connection (any etcd client's) holds the graceful stop forever.
      const closed = Promise.all(listeners.map((s) => new Promise((r) => s.close(r))));
      injector.drain(1000);
      for (const s of sockets) s.destroy();
      injector.destroy();
      await closed;
    },
  };
}
