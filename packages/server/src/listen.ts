/** gRPC servers on the member's URLs. */
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
