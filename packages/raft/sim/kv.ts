// The state machine the simulated cluster replicates: a key-value map with per-client
// deduplication (a proposal duplicated by the network must not apply twice), and its encoding
// for Raft entries and snapshots.

export interface PutCommand {
  readonly client: number;
  readonly seq: number;
  readonly key: string;
  readonly value: string;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodePut(c: PutCommand): Uint8Array {
  return enc.encode(`${c.client}\u0001${c.seq}\u0001${c.key}\u0001${c.value}`);
}

export function decodePut(data: Uint8Array): PutCommand {
  const [client, seq, key, value] = dec.decode(data).split('\u0001');
  if (value === undefined) throw new Error(`sim: malformed command entry (${data.byteLength} bytes)`);
  return { client: Number(client), seq: Number(seq), key: key!, value };
}

export class KvStateMachine {
  readonly data = new Map<string, string>();
  /** Highest sequence number applied per client. */
  readonly lastSeq = new Map<number, number>();
  applied = 0;

  /** Applies a put; returns false when it is a duplicate of one already applied. */
  apply(index: number, c: PutCommand): boolean {
    this.applied = index;
    if ((this.lastSeq.get(c.client) ?? -1) >= c.seq) return false;
    this.lastSeq.set(c.client, c.seq);
    this.data.set(c.key, c.value);
    return true;
  }

  snapshot(): Uint8Array {
    return enc.encode(JSON.stringify({ data: [...this.data], lastSeq: [...this.lastSeq], applied: this.applied }));
  }

  static restore(bytes: Uint8Array): KvStateMachine {
    const sm = new KvStateMachine();
    if (bytes.byteLength === 0) return sm;
    const o = JSON.parse(dec.decode(bytes)) as { data: [string, string][]; lastSeq: [number, number][]; applied: number };
    for (const [k, v] of o.data) sm.data.set(k, v);
    for (const [c, s] of o.lastSeq) sm.lastSeq.set(c, s);
    sm.applied = o.applied;
    return sm;
  }
}
