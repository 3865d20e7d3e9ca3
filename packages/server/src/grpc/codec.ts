/**
 * The protobuf codec for etcd's client API: etcd's own .proto files (proto/ at the repository root)
 * loaded with protobufjs reflection at startup, plus a converter between protobufjs messages and the
 * plain shapes of @capstan/mvcc's types.ts.
 *
 * Why reflection and not generated code: protobufjs-cli (pbjs/pbts) is not installed and pulls in
 * jsdoc and friends; its static output is JavaScript beside a .d.ts, which a composite `tsc -b`
 * project would have to take in with allowJs or a prebuild step. Reflection compiles the same
 * specialised encode/decode functions at runtime, once, from the same files; the conversion below
 * is needed with generated code too, because protobufjs represents int64 as Long.
 *
 * Conversions, per field:
 * - 64-bit IDs (lease IDs, member, cluster and target IDs, the leader) are bigint, full 64 bits;
 *   every other int64/uint64 (revisions, counts, TTLs, terms, sizes) is a number.
 * - bytes are Buffers.
 * - Decoding: an absent scalar reads as its proto3 default (0, 0n, false, '', empty Buffer), an
 *   absent message or oneof member as undefined, an absent repeated field as [].
 * - Encoding: proto3 defaults and undefined are left out; messages and oneof members are written
 *   whenever they are set, even when empty, as proto3 does.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

type Long = protobuf.Long;

/** Field names that carry a 64-bit ID rather than a count; these decode to bigint. */
const ID_FIELDS = new Set(['ID', 'lease', 'clusterId', 'memberId', 'memberID', 'targetID', 'leader']);

const LONG_TYPES = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);

const EMPTY = Buffer.alloc(0);

type Kind = 'num' | 'big' | 'bytes' | 'bool' | 'string' | 'int' | 'msg';

interface FieldPlan {
  readonly name: string;
  readonly kind: Kind;
  readonly repeated: boolean;
  readonly oneof: boolean;
  readonly unsigned: boolean;
  plan?: TypePlan;
}

interface TypePlan {
  readonly type: protobuf.Type;
  readonly fields: FieldPlan[];
}

const plans = new Map<protobuf.Type, TypePlan>();

function planFor(type: protobuf.Type): TypePlan {
  let p = plans.get(type);
  if (p !== undefined) return p;
  const fields: FieldPlan[] = [];
  p = { type, fields };
  plans.set(type, p); // before recursing: messages may nest themselves (TxnRequest)
  for (const f of type.fieldsArray) {
    f.resolve();
    let kind: Kind;
    if (f.resolvedType instanceof protobuf.Type) kind = 'msg';
    else if (f.resolvedType instanceof protobuf.Enum) kind = 'int';
    else if (LONG_TYPES.has(f.type)) kind = ID_FIELDS.has(f.name) ? 'big' : 'num';
    else if (f.type === 'bytes') kind = 'bytes';
    else if (f.type === 'bool') kind = 'bool';
    else if (f.type === 'string') kind = 'string';
    else kind = 'int'; // int32, uint32, double...: numbers as they are
    const fp: FieldPlan = {
      name: f.name,
      kind,
      repeated: f.repeated,
      oneof: f.partOf !== null && f.partOf !== undefined,
      unsigned: f.type === 'uint64' || f.type === 'fixed64',
    };
    fields.push(fp);
    if (kind === 'msg') fp.plan = planFor(f.resolvedType as protobuf.Type);
  }
  return p;
}

// ---------------------------------------------------------------- 64-bit values

function isLong(v: unknown): v is Long {
  return typeof v === 'object' && v !== null && 'low' in v && 'high' in v;
}

function longToBig(v: Long | number, unsigned: boolean): bigint {
  if (typeof v === 'number') return BigInt(v);
  if (v.high === 0 && v.low >= 0) return BigInt(v.low);
  const u = (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
  return unsigned ? u : BigInt.asIntN(64, u);
}

function longToNum(v: Long | number, unsigned: boolean): number {
  if (typeof v === 'number') return v;
  if (v.high === 0 && v.low >= 0) return v.low;
  return unsigned ? (v.high >>> 0) * 4294967296 + (v.low >>> 0) : v.high * 4294967296 + (v.low >>> 0);
}

/** What protobufjs' writer takes for a 64-bit value: anything with low/high 32-bit halves. */
function bigToBits(v: bigint): { low: number; high: number } {
  const u = BigInt.asUintN(64, v);
  return { low: Number(u & 0xffffffffn) | 0, high: Number(u >> 32n) | 0 };
}

// ---------------------------------------------------------------- decode

function scalarFrom(f: FieldPlan, v: unknown): unknown {
  switch (f.kind) {
    case 'num':
      return isLong(v) || typeof v === 'number' ? longToNum(v, f.unsigned) : 0;
    case 'big':
      return isLong(v) || typeof v === 'number' ? longToBig(v, f.unsigned) : 0n;
    case 'bytes':
      return Buffer.isBuffer(v) ? v : v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : EMPTY;
    default:
      return v;
  }
}

function defaultOf(f: FieldPlan): unknown {
  switch (f.kind) {
    case 'num':
    case 'int':
      return 0;
    case 'big':
      return 0n;
    case 'bytes':
      return EMPTY;
    case 'bool':
      return false;
    case 'string':
      return '';
    default:
      return undefined;
  }
}

function fromMessage(p: TypePlan, m: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of p.fields) {
    const own = Object.prototype.hasOwnProperty.call(m, f.name);
    const v = own ? m[f.name] : undefined;
    if (f.repeated) {
      const arr = Array.isArray(v) ? v : [];
      out[f.name] = f.kind === 'msg' ? arr.map((x) => fromMessage(f.plan!, x as Record<string, unknown>)) : arr.map((x) => scalarFrom(f, x));
    } else if (f.kind === 'msg') {
      out[f.name] = v === undefined || v === null ? undefined : fromMessage(f.plan!, v as Record<string, unknown>);
    } else if (v === undefined || v === null) {
      out[f.name] = f.oneof ? undefined : defaultOf(f);
    } else {
      out[f.name] = scalarFrom(f, v);
    }
  }
  return out;
}

// ---------------------------------------------------------------- encode

function isDefault(f: FieldPlan, v: unknown): boolean {
  switch (f.kind) {
    case 'num':
    case 'int':
      return v === 0;
    case 'big':
      return v === 0n;
    case 'bytes':
      return (v as Uint8Array).length === 0;
    case 'bool':
      return v === false;
    case 'string':
      return v === '';
    default:
      return false;
  }
}

function scalarTo(f: FieldPlan, v: unknown): unknown {
  if (f.kind === 'big') return bigToBits(typeof v === 'bigint' ? v : BigInt(v as number));
  if (f.kind === 'num' && typeof v === 'bigint') return bigToBits(v);
  return v;
}

function toMessage(p: TypePlan, o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of p.fields) {
    const v = o[f.name];
    if (v === undefined || v === null) continue;
    if (f.repeated) {
      const arr = v as unknown[];
      if (arr.length === 0) continue;
      out[f.name] = f.kind === 'msg' ? arr.map((x) => toMessage(f.plan!, x as Record<string, unknown>)) : arr.map((x) => scalarTo(f, x));
    } else if (f.kind === 'msg') {
      out[f.name] = toMessage(f.plan!, v as Record<string, unknown>);
    } else if (f.oneof || !isDefault(f, v)) {
      out[f.name] = scalarTo(f, v);
    }
  }
  return out;
}

// ---------------------------------------------------------------- loading

/** proto/ at the repository root, found by walking up from this module (src/grpc or dist/src/grpc). */
export function protoDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'proto', 'rpc.proto'))) return join(dir, 'proto');
    const up = dirname(dir);
    if (up === dir) throw new Error('etcd protos not found: no proto/rpc.proto above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

let rootCache: protobuf.Root | undefined;

export function protoRoot(): protobuf.Root {
  if (rootCache === undefined) {
    const root = new protobuf.Root();
    root.loadSync(join(protoDir(), 'rpc.proto'), { keepCase: false });
    root.resolveAll();
    rootCache = root;
  }
  return rootCache;
}

/** Encodes and decodes one message type between bytes and plain objects (see the header comment). */
export class MessageCodec<T> {
  private readonly plan: TypePlan;

  constructor(readonly type: protobuf.Type) {
    this.plan = planFor(type);
  }

  decode(buf: Uint8Array): T {
    const m = this.type.decode(buf) as unknown as Record<string, unknown>;
    return fromMessage(this.plan, m) as T;
  }

  encode(obj: T): Buffer {
    const w = this.type.encode(toMessage(this.plan, obj as Record<string, unknown>));
    const out = w.finish();
    return Buffer.isBuffer(out) ? out : Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  }
}

const codecs = new Map<string, MessageCodec<unknown>>();

/** The codec of a message by its full name, e.g. 'etcdserverpb.RangeRequest'. */
export function codec<T>(name: string): MessageCodec<T> {
  let c = codecs.get(name);
  if (c === undefined) {
    c = new MessageCodec<unknown>(protoRoot().lookupType(name));
    codecs.set(name, c);
  }
  return c as MessageCodec<T>;
}
