/**
 * grpc_server_handled_total, as go-grpc-prometheus counts it for etcd: the RPCs the client server
 * answers, by type, service, method and status code: every call that ends with a status,
 * including the ones the server refuses itself (an unknown method, a message over the receive
 * limit or one that does not decode, a passed deadline). Calls the client cancelled (no status is
 * sent) are not counted. The hot path only bumps a number; the labelled series are built when
 * /metrics is scraped.
 */
import * as grpc from '@grpc/grpc-js';

export type GrpcType = 'unary' | 'client_stream' | 'server_stream' | 'bidi_stream';

export interface HandledSeries {
  readonly type: GrpcType;
  readonly service: string;
  readonly method: string;
  readonly code: string;
  readonly count: number;
}

/** grpc.status names by number: OK, CANCELLED, ... */
const CODE_NAMES: readonly string[] = (() => {
  const names: string[] = [];
  for (const [name, n] of Object.entries(grpc.status)) if (typeof n === 'number') names[n] = name;
  return names;
})();

interface MethodCounts {
  readonly type: GrpcType;
  readonly service: string;
  readonly method: string;
  /** Indexed by status code. */
  readonly byCode: number[];
}

export class HandledCounter {
  private readonly methods = new Map<string, MethodCounts>();

  /** Counts the status a call ended with (GrpcServer's onStatus). */
  count(path: string, type: GrpcType, code: grpc.status): void {
    const m = this.method(path, type);
    m.byCode[code] = (m.byCode[code] ?? 0) + 1;
  }

  /** Every method and code seen, with its count. */
  series(): HandledSeries[] {
    const out: HandledSeries[] = [];
    for (const m of this.methods.values()) {
      m.byCode.forEach((count, code) => {
        if (count > 0) out.push({ type: m.type, service: m.service, method: m.method, code: CODE_NAMES[code] ?? String(code), count });
      });
    }
    return out;
  }

  private method(path: string, type: GrpcType): MethodCounts {
    let m = this.methods.get(path);
    if (m === undefined) {
      // "/etcdserverpb.KV/Range": service etcdserverpb.KV, method Range.
      const slash = path.lastIndexOf('/');
      m = { type, service: path.slice(1, slash), method: path.slice(slash + 1), byCode: [] };
      this.methods.set(path, m);
    }
    return m;
  }
}
