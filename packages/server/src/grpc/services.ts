/**
 * etcd's client gRPC API (KV, Watch, Lease, Cluster, Maintenance, Auth) as a thin translation layer
 * over `Member`: requests are checked as etcd's v3rpc layer checks them, then proposed, read locally
 * or handed to the member; responses get etcd's header. Errors carrying a gRPC code (MvccError,
 * ServerError) go out as that status with etcd's message; anything else is INTERNAL, logged.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import {
  DEFAULT_BCRYPT_COST,
  MvccError,
  NO_USER,
  checkDelete,
  checkPut,
  checkRange,
  checkTxn,
  type ApplyRequest,
  type CompactionResponse,
  type DeleteRangeRequest,
  type Event,
  type DeleteRangeResponse,
  type LeaseGrantResponse,
  type LeaseRevokeResponse,
  type PutRequest,
  type PutResponse,
  type RangeRequest,
  type RequestOp,
  type TxnRequest,
  type TxnResponse,
  type WatchCreateRequest,
  type WatchResponse,
} from '@capstan/mvcc';
import { AlarmType, errRequestTooLarge, ServerError, type AlarmMember, type Member, type MemberInfo } from '../api.js';
import { AuthGate, authService, goStatusText, type AuthCall } from './auth.js';
import { codec, protoRoot } from './codec.js';
import type { FastMethod } from './server.js';
import { keyText as text, rangeText, txnText } from '../slow.js';
import { RequestTrace, type TraceFields } from '../trace.js';
import { encodeDeleteRangeResponse, encodeFramedWatchEvents, encodePutResponse, encodeRangeResponse, encodeWatchResponse, type HeaderFields } from './wire.js';

// ---------------------------------------------------------------- options and limits

/** etcd's grpcOverheadBytes: what a gRPC message may carry beyond --max-request-bytes. */
export const GRPC_OVERHEAD_BYTES = 512 * 1024;
/** etcd's default server-side send limit (math.MaxInt32). */
export const MAX_SEND_BYTES = 2 ** 31 - 1;
/** etcd's snapshotSendBufferSize. */
export const SNAPSHOT_CHUNK_BYTES = 32 * 1024;
/** etcd's ProgressReportInterval for progress_notify watchers. */
export const DEFAULT_PROGRESS_INTERVAL_MS = 10 * 60 * 1000;

/** What a request may weigh on the wire: etcd's --max-request-bytes plus the gRPC overhead it allows. */
export function maxReceiveBytes(limits: { readonly maxRequestBytes: number }): number {
  return limits.maxRequestBytes + GRPC_OVERHEAD_BYTES;
}

/** Where the services are registered: our GrpcServer, or a grpc-js Server. */
export interface ServiceRegistry {
  addService(def: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation): void;
}

/** The part of mvcc's WatchHub these services use. */
export interface WatchStreamLike {
  watch(req: WatchCreateRequest): void;
  cancel(watchId: number): void;
  requestProgress(): void;
  progressNotify(): void;
  drain(): void;
  close(): void;
}

export interface WatchHubLike {
  newStream(send: (resp: WatchResponse) => boolean, opts?: { maxResponseBytes?: number }): WatchStreamLike;
}

export interface ClientServicesOptions {
  /** One structured log record; default: a JSON line on stderr. */
  log?: (rec: Record<string, unknown>) => void;
  /** How often progress_notify watchers hear the current revision when idle (etcd: 10 minutes). */
  progressIntervalMs?: number;
  /** --bcrypt-cost: passwords are hashed with it before they are proposed. */
  bcryptCost?: number;
  /** --client-cert-auth: a call without a token is the user its client certificate's CN names. */
  clientCertAuth?: boolean;
}

// ---------------------------------------------------------------- errors

export const errMemberBadURLs = (): ServerError => new ServerError('INVALID_ARGUMENT', 'etcdserver: given member URLs are invalid');

interface CodedError {
  code: string;
  message: string;
  name: string;
}

function isCoded(err: unknown): err is CodedError {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as Partial<CodedError>;
  return (e.name === 'MvccError' || e.name === 'ServerError') && typeof e.code === 'string' && typeof e.message === 'string' && e.code in grpc.status;
}

/** A status with a code outside mvcc's GrpcCode list. */
export class StatusError extends Error {
  override readonly name = 'StatusError';
  constructor(
    readonly status: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

type Log = (rec: Record<string, unknown>) => void;

function toStatus(err: unknown, log: Log, method: string): grpc.StatusObject {
  if (err instanceof StatusError) return { code: err.status, details: err.message, metadata: new grpc.Metadata() };
  if (isCoded(err)) {
    return { code: grpc.status[err.code as keyof typeof grpc.status] as grpc.status, details: err.message, metadata: new grpc.Metadata() };
  }
  const message = err instanceof Error ? err.message : String(err);
  log({ level: 'error', msg: 'unexpected error in gRPC handler', method, error: message, stack: err instanceof Error ? err.stack : undefined });
  return { code: grpc.status.INTERNAL, details: message, metadata: new grpc.Metadata() };
}

// ---------------------------------------------------------------- service definitions

/** A decoded request with its size on the wire (etcd refuses proposals over --max-request-bytes). */
export interface Decoded<T> {
  readonly msg: T;
  readonly size: number;
}

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** grpc-js definitions of one etcdserverpb service, built from the proto's methods and our codec. */
export function serviceDefinition(service: string): grpc.ServiceDefinition<grpc.UntypedServiceImplementation> {
  const svc = protoRoot().lookupService(`etcdserverpb.${service}`);
  const def: Record<string, grpc.MethodDefinition<Decoded<Msg>, Msg>> = {};
  for (const m of svc.methodsArray) {
    m.resolve();
    const req = codec<Msg>(m.resolvedRequestType!.fullName.slice(1));
    const res = codec<Msg>(m.resolvedResponseType!.fullName.slice(1));
    def[m.name] = {
      path: `/etcdserverpb.${service}/${m.name}`,
      requestStream: m.requestStream === true,
      responseStream: m.responseStream === true,
      requestSerialize: (d) => req.encode(d.msg),
      requestDeserialize: (buf) => ({ msg: req.decode(buf), size: buf.length }),
      // Bytes are a message already encoded (watch responses: see wire.ts).
      responseSerialize: (r) => (Buffer.isBuffer(r) ? r : res.encode(r)),
      responseDeserialize: (buf) => res.decode(buf),
      originalName: m.name[0]!.toLowerCase() + m.name.slice(1),
    };
  }
  return def as grpc.ServiceDefinition<grpc.UntypedServiceImplementation>;
}

export const CLIENT_SERVICES = ['KV', 'Watch', 'Lease', 'Cluster', 'Maintenance', 'Auth'] as const;

// ---------------------------------------------------------------- helpers

/** The grpc-js call under a unary call's stream object: what sends the answer and the status. */
interface InnerCall {
  sendMessage(msg: unknown, done: () => void): void;
  sendStatus(status: { code: grpc.status; details: string; metadata: grpc.Metadata | null }): void;
}

/**
 * Answers a unary call with its message and OK status in one go. grpc-js's own callback sends the
 * status only once the DATA frame's write has called back, a turn of the event loop later, and
 * the client waits for that status: it cost a put its second write and whatever else that turn
 * held. Sent together, headers, message and trailers leave in one write. If the message cannot be
 * sent (too large), grpc-js answers with an error status itself and ignores the OK after it.
 */
function respondOk<T>(call: grpc.ServerUnaryCall<unknown, T>, res: T, cb: grpc.sendUnaryData<T>): void {
  const inner = (call as unknown as { call?: Partial<InnerCall> }).call;
  if (typeof inner?.sendMessage !== 'function' || typeof inner.sendStatus !== 'function') {
    cb(null, res);
    return;
  }
  inner.sendMessage(res, () => {});
  inner.sendStatus({ code: grpc.status.OK, details: 'OK', metadata: null });
}

function isReadOnlyTxn(r: TxnRequest): boolean {
  const ops: RequestOp[] = [...(r.success ?? []), ...(r.failure ?? [])];
  return ops.every((op) => op.requestRange !== undefined);
}

function isSerializableTxn(r: TxnRequest): boolean {
  const ops: RequestOp[] = [...(r.success ?? []), ...(r.failure ?? [])];
  return ops.every((op) => op.requestRange?.serializable === true);
}

/** etcd's types.NewURLs: http(s) URLs must be host:port without a path; unix(s) anything. */
function checkURLs(urls: readonly string[]): string[] {
  if (urls.length === 0) throw errMemberBadURLs();
  return urls.map((raw) => {
    const s = raw.trim();
    if (/^unixs?:\/\//.test(s)) return s;
    if (!/^https?:\/\/(\[[^\]]*\]|[^/?#:[\]]*):[^/?#:]*$/.test(s)) throw errMemberBadURLs();
    return s;
  });
}

/** A random positive int63, never 0: etcd's server picks a lease's ID when the client leaves it 0. */
function randomLeaseId(): bigint {
  for (;;) {
    const id = randomBytes(8).readBigUInt64BE() & ((1n << 63n) - 1n);
    if (id !== 0n) return id;
  }
}

function wireMember(m: MemberInfo): Msg {
  return { ID: m.id, name: m.name, peerURLs: [...m.peerURLs], clientURLs: [...m.clientURLs], isLearner: m.isLearner };
}

function wireAlarm(a: AlarmMember): Msg {
  return { memberID: a.memberID, alarm: a.alarm };
}

/** Resolves when the stream can take more, or is gone. */
export function drained(call: Pick<EventEmitter, 'on' | 'off'>): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      call.off('drain', done);
      call.off('cancelled', done);
      call.off('close', done);
      call.off('error', done);
      resolve();
    };
    call.on('drain', done);
    call.on('cancelled', done);
    call.on('close', done);
    call.on('error', done);
  });
}

// ---------------------------------------------------------------- the services

/**
 * Adds the client services to `server` and returns their unary methods by path, for GrpcServer to
 * answer from bytes with the same handlers (setFastMethods).
 */
export function addClientServices(server: ServiceRegistry, member: Member, watchHub: WatchHubLike, opts: ClientServicesOptions = {}): ReadonlyMap<string, FastMethod> {
  const log: Log = opts.log ?? ((rec) => process.stderr.write(JSON.stringify({ ts: new Date().toISOString(), ...rec }) + '\n'));
  const progressIntervalMs = opts.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS;

  const header = (revision?: number): HeaderFields => ({
    clusterId: member.clusterId,
    memberId: member.memberId,
    revision: revision !== undefined && revision > 0 ? revision : member.sm.store.rev,
    raftTerm: member.term(),
  });
  const withHeader = <T extends { header?: { revision: number } }>(r: T): T & { header: Msg } => ({ ...r, header: header(r.header?.revision) });

  const gate = new AuthGate(member, { bcryptCost: opts.bcryptCost ?? DEFAULT_BCRYPT_COST, clientCertAuth: opts.clientCertAuth });

  const checkSize = (size: number): void => {
    if (size > member.limits.maxRequestBytes) throw errRequestTooLarge();
  };

  type UnaryFn = (req: Msg, size: number, call: AuthCall) => Promise<Msg> | Msg;
  /** Each unary handler's function, for the calls answered from bytes (FastMethod, server.ts). */
  const unaryFns = new Map<unknown, UnaryFn>();
  const unary = (name: string, fn: UnaryFn): grpc.handleUnaryCall<Decoded<Msg>, Msg> => {
    const handler: grpc.handleUnaryCall<Decoded<Msg>, Msg> = (call, cb) => {
      let p: Promise<Msg>;
      try {
        p = Promise.resolve(fn(call.request.msg, call.request.size, call));
      } catch (err) {
        p = Promise.reject(err);
      }
      p.then(
        (res) => respondOk(call, res, cb),
        (err: unknown) => cb(toStatus(err, log, name)),
      );
    };
    unaryFns.set(handler, fn);
    return handler;
  };

  /** Every client proposal carries its sender, so the apply can check it in log order (etcd's RequestHeader). */
  const propose = <T>(call: AuthCall, req: ApplyRequest, trace?: RequestTrace): Promise<T> => {
    const anonymous = gate.anonymousHeader(call);
    if (anonymous !== undefined) return member.propose({ ...req, header: anonymous }, trace) as Promise<T>;
    return gate.header(call).then((header) => member.propose({ ...req, header }, trace) as Promise<T>);
  };

  /** A write's trace, logged if the request was slow, once it is answered (etcd logs none for a failed one). */
  const traced = <T extends { header?: { revision: number } }>(trace: RequestTrace, res: T, fields?: TraceFields): T => {
    if (!member.slow.isSlow(performance.now() - trace.start)) return res;
    for (const [k, v] of fields ?? []) trace.field(k, v);
    if (res.header !== undefined) trace.field('response_revision', res.header.revision);
    member.slow.logTrace(trace);
    return res;
  };

  /**
   * A read-only Range or Txn: warned of as etcd warns of an expensive read (the whole request,
   * ReadIndex wait included, failures too), and its trace logged if it was slow.
   */
  const slowRead = async <T extends { header?: { revision: number } }>(
    trace: RequestTrace,
    prefix: string,
    request: () => string,
    response: (res: T) => string,
    run: () => Promise<T>,
    fields?: (res: T) => TraceFields,
  ): Promise<T> => {
    let res: T | undefined;
    let error: Error | undefined;
    try {
      res = await run();
      return res;
    } catch (err) {
      error = err as Error;
      throw err;
    } finally {
      const done = res;
      const took = performance.now() - trace.start;
      member.slow.warnIfSlow(took, prefix, request, () => (done !== undefined ? response(done) : ''), error);
      if (done !== undefined && member.slow.isSlow(took)) traced(trace, done, fields?.(done));
    }
  };
  /** The trace step etcd marks once a linearizable read may go ahead. */
  const barrier = async (trace: RequestTrace): Promise<void> => {
    await member.readBarrier();
    trace.step('agreement among raft nodes before linearized reading');
  };

  // ------------------------------------------------------------ KV
  const kv: grpc.UntypedServiceImplementation = {
    // Reads are checked where they are served, after the ReadIndex barrier (etcd's doSerialize).
    Range: unary('Range', async (m, _size, call) => {
      const req = m as RangeRequest;
      checkRange(req);
      const trace = new RequestTrace('range', () => [
        ['range_begin', text(req.key)],
        ['range_end', text(req.rangeEnd)],
      ]);
      const res = await slowRead(trace, 'read-only range ', () => rangeText(req), (r) => `range_response_count:${r.kvs.length}`, async () => {
        if (req.serializable !== true) await barrier(trace);
        await gate.checkRange(call, req.key, req.rangeEnd);
        return member.sm.store.range(req);
      }, (r) => [['response_count', r.kvs.length]]);
      return encodeRangeResponse(res, header(res.header?.revision));
    }),
    Put: unary('Put', async (m, size, call) => {
      const req = m as PutRequest;
      checkPut(req);
      checkSize(size);
      const trace = new RequestTrace('put', () => [
        ['key', text(req.key)],
        ['req_size', size],
      ]);
      const res = traced(trace, await propose<PutResponse>(call, { put: req }, trace));
      return encodePutResponse(res, header(res.header?.revision));
    }),
    DeleteRange: unary('DeleteRange', async (m, size, call) => {
      const req = m as DeleteRangeRequest;
      checkDelete(req);
      checkSize(size);
      const trace = new RequestTrace('delete_range', () => [
        ['key', text(req.key)],
        ['range_end', text(req.rangeEnd)],
      ]);
      const res = traced(trace, await propose<DeleteRangeResponse>(call, { deleteRange: req }, trace));
      return encodeDeleteRangeResponse(res, header(res.header?.revision));
    }),
    Txn: unary('Txn', async (m, size, call) => {
      const req = m as TxnRequest;
      checkTxn(req, member.limits.maxTxnOps);
      const readOnly = isReadOnlyTxn(req);
      const trace = new RequestTrace('transaction', () => [['read_only', String(readOnly)]]);
      if (readOnly) {
        return slowRead(trace, 'read-only txn ', () => txnText(req), (r) => `response_count:${r.responses.length}`, async () => {
          if (!isSerializableTxn(req)) await barrier(trace);
          gate.store.checkTxn((await gate.info(call)) ?? NO_USER, req);
          return withHeader(member.sm.store.txn(req));
        });
      }
      checkSize(size);
      return withHeader(traced(trace, await propose<TxnResponse>(call, { txn: req }, trace)));
    }),
    Compact: unary('Compact', async (m, size, call) => {
      checkSize(size);
      // The member waits for the physical compaction when asked, as etcd does; the header then
      // carries the revision at answer time (etcd: s.kv.Rev()). etcd 3.4 checks no permission here.
      await propose<CompactionResponse>(call, { compaction: { revision: m.revision as number, physical: m.physical === true } });
      return { header: header() };
    }),
  };

  // ------------------------------------------------------------ Watch
  const watch: grpc.UntypedServiceImplementation = {
    Watch: (call: grpc.ServerDuplexStream<Decoded<Msg>, Msg>) => {
      let closed = false;
      // Our own server's calls take a message already framed; a grpc-js call (tests) does not.
      const framed = call as unknown as { writeFramed?: (msg: Buffer) => boolean };
      const writeFramed = framed.writeFramed?.bind(framed);
      // One header object for the fan-out's sends, refilled each time (no object per watcher and event).
      const fanOut = { clusterId: member.clusterId, memberId: member.memberId, revision: 0, raftTerm: 0 };
      const sendEvents = (watchId: number, revision: number, events: readonly Event[]): boolean => {
        if (closed) return true;
        fanOut.revision = revision;
        fanOut.raftTerm = member.term();
        return writeFramed!(encodeFramedWatchEvents(watchId, events, fanOut));
      };
      const stream = watchHub.newStream(
        (resp) => {
          if (closed) return true;
          return call.write(encodeWatchResponse(resp, header(resp.header.revision)));
        },
        {
          maxResponseBytes: member.limits.maxRequestBytes,
          ...(writeFramed === undefined ? {} : { sendEvents }),
        },
      );
      const timer = setInterval(() => {
        try {
          stream.progressNotify();
        } catch (err) {
          log({ level: 'error', msg: 'watch progress notify failed', error: String(err) });
        }
      }, progressIntervalMs);
      timer.unref();
      const close = (): void => {
        if (closed) return;
        closed = true;
        clearInterval(timer);
        stream.close();
      };
      call.on('drain', () => {
        if (!closed) stream.drain();
      });
      /**
       * etcd's isWatchPermitted, for each create: refused, it answers created and canceled with
       * watch ID -1 and the Go status text as the reason, and the stream goes on.
       */
      const permitted = async (key: Buffer, rangeEnd: Buffer | undefined): Promise<boolean> => {
        try {
          await gate.checkRange(call as unknown as AuthCall, key, rangeEnd);
          return true;
        } catch (err) {
          if (!(err instanceof MvccError)) throw err;
          if (!closed) {
            call.write({ header: header(), watchId: -1, created: true, canceled: true, cancelReason: goStatusText(err), compactRevision: 0, fragment: false, events: [] });
          }
          return false;
        }
      };
      const handle = async (r: Msg): Promise<void> => {
        if (closed) return;
        if (r.createRequest !== undefined) {
          const c = r.createRequest as Msg;
          // v3rpc: an empty key is \0, the smallest key; range_end \0 means "from key" (toRangeEnd).
          const key: Buffer = c.key.length === 0 ? Buffer.from([0]) : c.key;
          // etcd 3.4 checks a from-key watch (range_end \0) as its first key only; here it needs
          // read permission on every key from there on, as a from-key Range does.
          if (!(await permitted(key, c.rangeEnd)) || closed) return;
          const create: WatchCreateRequest = {
            key,
            rangeEnd: c.rangeEnd,
            startRevision: c.startRevision,
            progressNotify: c.progressNotify,
            filters: c.filters,
            prevKv: c.prevKv,
            watchId: c.watchId,
            fragment: c.fragment,
          };
          stream.watch(create);
        } else if (r.cancelRequest !== undefined) {
          stream.cancel((r.cancelRequest as Msg).watchId as number);
        } else if (r.progressRequest !== undefined) {
          stream.requestProgress();
        }
        // Anything else is ignored, as etcd ignores unknown requests on a watch stream.
      };
      // Requests are handled one at a time, in order: a create may wait for its permission check.
      let queue = Promise.resolve();
      call.on('data', (d: Decoded<Msg>) => {
        queue = queue
          .then(() => handle(d.msg))
          .catch((err: unknown) => {
            const st = toStatus(err, log, 'Watch');
            close();
            call.emit('error', st);
          });
      });
      // etcd keeps sending after the client half-closes; the stream ends when the call does.
      call.on('cancelled', close);
      call.on('close', close);
      call.on('error', close);
      call.on('finish', close);
    },
  };

  // ------------------------------------------------------------ Lease
  const lease: grpc.UntypedServiceImplementation = {
    // etcd 3.4 checks no permission to grant, list, renew or read a lease; a revoke needs write
    // permission on every key attached (checked when applied).
    LeaseGrant: unary('LeaseGrant', async (m, size, call) => {
      checkSize(size);
      const ID = (m.ID as bigint) === 0n ? randomLeaseId() : (m.ID as bigint);
      return withHeader(await propose<LeaseGrantResponse>(call, { leaseGrant: { TTL: m.TTL as number, ID } }));
    }),
    LeaseRevoke: unary('LeaseRevoke', async (m, size, call) => {
      checkSize(size);
      return withHeader(await propose<LeaseRevokeResponse>(call, { leaseRevoke: { ID: m.ID as bigint } }));
    }),
    LeaseTimeToLive: unary('LeaseTimeToLive', async (m) => {
      try {
        return withHeader(await member.leaseTimeToLive(m.ID as bigint, m.keys === true));
      } catch (err) {
        // etcd answers a missing lease with TTL -1 rather than an error.
        if (isCoded(err) && err.message === 'etcdserver: requested lease not found') {
          return { header: header(), ID: m.ID, TTL: -1, grantedTTL: 0, keys: [] };
        }
        throw err;
      }
    }),
    LeaseLeases: unary('LeaseLeases', async () => {
      const ids = await member.leaseLeases();
      return { header: header(), leases: ids.map((ID) => ({ ID })) };
    }),
    LeaseKeepAlive: (call: grpc.ServerDuplexStream<Decoded<Msg>, Msg>) => {
      // One at a time, in order, as etcd's loop of Recv / renew / Send.
      let chain = Promise.resolve();
      let failed = false;
      call.on('data', (d: Decoded<Msg>) => {
        const id = d.msg.ID as bigint;
        chain = chain.then(async () => {
          if (failed || call.cancelled) return;
          // The header is taken before the renew, as etcd: a revoke seen at rev N is never
          // followed by a keepalive answered at a later revision.
          const h = header();
          try {
            const ttl = await member.leaseKeepAlive(id);
            if (!call.cancelled && !call.writableEnded && !call.write({ header: h, ID: id, TTL: ttl })) await drained(call);
          } catch (err) {
            failed = true;
            call.emit('error', toStatus(err, log, 'LeaseKeepAlive'));
          }
        });
      });
      call.on('end', () => {
        chain = chain.then(() => {
          if (!failed && !call.cancelled && !call.writableEnded) call.end();
        });
      });
    },
  };

  // ------------------------------------------------------------ Cluster
  const cluster: grpc.UntypedServiceImplementation = {
    // Membership changes need the root role once auth is on (etcd's checkMembershipOperationPermission).
    MemberAdd: unary('MemberAdd', async (m, _size, call) => {
      await gate.checkAdmin(call);
      const urls = checkURLs(m.peerURLs as string[]);
      const r = await member.addMember(urls, m.isLearner === true);
      const added = r.member;
      return {
        header: header(),
        member: { ID: added.id, name: added.name, peerURLs: [...added.peerURLs], clientURLs: [...added.clientURLs], isLearner: added.isLearner },
        members: r.members.map(wireMember),
      };
    }),
    MemberRemove: unary('MemberRemove', async (m, _size, call) => {
      await gate.checkAdmin(call);
      return { header: header(), members: (await member.removeMember(m.ID as bigint)).map(wireMember) };
    }),
    MemberUpdate: unary('MemberUpdate', async (m, _size, call) => {
      await gate.checkAdmin(call);
      const urls = checkURLs(m.peerURLs as string[]);
      return { header: header(), members: (await member.updateMember(m.ID as bigint, urls)).map(wireMember) };
    }),
    MemberList: unary('MemberList', async (m) => {
      if (m.linearizable === true) await member.readBarrier();
      return { header: header(), members: member.members().map(wireMember) };
    }),
    MemberPromote: unary('MemberPromote', async (m, _size, call) => {
      await gate.checkAdmin(call);
      return { header: header(), members: (await member.promoteMember(m.ID as bigint)).map(wireMember) };
    }),
  };

  // ------------------------------------------------------------ Maintenance
  const maintenance: grpc.UntypedServiceImplementation = {
    Status: unary('Status', async () => {
      const s = await member.status();
      return {
        header: header(),
        version: s.version,
        dbSize: s.dbSize,
        leader: s.leader,
        raftIndex: s.raftIndex,
        raftTerm: s.raftTerm,
        raftAppliedIndex: s.raftAppliedIndex,
        errors: [...s.errors],
        dbSizeInUse: s.dbSizeInUse,
        isLearner: s.isLearner,
      };
    }),
    // etcd 3.4: Status, Alarm and MoveLeader check no permission (Alarm goes through Raft, so a bad
    // token is still refused); Hash, HashKV, Defragment and Snapshot need the root role.
    Alarm: unary('Alarm', async (m, _size, call) => {
      await gate.info(call);
      const action = m.action as number;
      const type = m.alarm as AlarmType;
      const id = m.memberID as bigint;
      const match = (a: AlarmMember): boolean => a.memberID === id && a.alarm === type;
      if (action === 0) {
        // GET: all alarms for NONE, else those of that type.
        const all = member.alarms();
        return { header: header(), alarms: all.filter((a) => type === AlarmType.NONE || a.alarm === type).map(wireAlarm) };
      }
      if (action === 1) {
        // etcd answers with the alarm it activated.
        const after = await member.alarm('activate', id, type);
        return { header: header(), alarms: after.filter(match).map(wireAlarm) };
      }
      if (action === 2) {
        // ...and with the alarm it deactivated, if there was one.
        const before = member.alarms().filter(match);
        await member.alarm('deactivate', id, type);
        return { header: header(), alarms: before.map(wireAlarm) };
      }
      return { header: header() };
    }),
    Defragment: unary('Defragment', async (_m, _size, call) => {
      await gate.checkMaintenance(call);
      await member.defragment();
      return { header: header() };
    }),
    // etcd hashes its whole bolt file; ours is the HashKV hash at the current revision (every key
    // record compaction keeps), which is equal on members that applied the same log.
    Hash: unary('Hash', async (_m, _size, call) => {
      await gate.checkMaintenance(call);
      const h = await member.sm.store.hashKV(0);
      return { header: header(h.header.revision), hash: h.hash };
    }),
    HashKV: unary('HashKV', async (m, _size, call) => {
      await gate.checkMaintenance(call);
      return withHeader(await member.sm.store.hashKV(m.revision as number));
    }),
    MoveLeader: unary('MoveLeader', async (m) => {
      await member.moveLeader(m.targetID as bigint);
      return { header: header() };
    }),
    Snapshot: (call: grpc.ServerWritableStream<Decoded<Msg>, Msg>) => {
      void sendSnapshot(call).catch((err: unknown) => {
        if (!call.cancelled) call.emit('error', toStatus(err, log, 'Snapshot'));
      });
    },
  };

  /**
   * etcd's Snapshot: the backend in 32 KiB messages, then the sha256 of everything sent as a last
   * message of its own. The size is not known up front (the member streams it), so remaining_bytes
   * counts the bytes already read ahead: 0 exactly on the last data message.
   */
  async function sendSnapshot(call: grpc.ServerWritableStream<Decoded<Msg>, Msg>): Promise<void> {
    await gate.checkMaintenance(call);
    const chunks = await member.snapshot();
    const sha = createHash('sha256');
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const send = async (blob: Buffer, remaining: number): Promise<boolean> => {
      if (call.cancelled) return false;
      if (!call.write({ header: header(), remainingBytes: remaining, blob })) await drained(call);
      return !call.cancelled;
    };
    // Holds back one full chunk so the last data message can say remaining 0.
    let held: Buffer | undefined;
    for await (const c of chunks) {
      pending.push(c);
      pendingBytes += c.length;
      while (pendingBytes >= SNAPSHOT_CHUNK_BYTES) {
        const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending);
        const piece = all.subarray(0, SNAPSHOT_CHUNK_BYTES);
        const rest = all.subarray(SNAPSHOT_CHUNK_BYTES);
        pending = rest.length > 0 ? [rest] : [];
        pendingBytes = rest.length;
        if (held !== undefined) {
          sha.update(held);
          if (!(await send(held, piece.length + pendingBytes))) return;
        }
        held = piece;
      }
    }
    const tail = Buffer.concat(pending);
    if (held !== undefined) {
      sha.update(held);
      if (!(await send(held, tail.length))) return;
    }
    if (tail.length > 0 || held === undefined) {
      sha.update(tail);
      if (!(await send(tail, 0))) return;
    }
    if (!(await send(sha.digest(), 0))) return;
    call.end();
  }

  // ------------------------------------------------------------ Auth
  const auth = authService(member, gate, unary as Parameters<typeof authService>[2], header);

  const impls: Record<(typeof CLIENT_SERVICES)[number], grpc.UntypedServiceImplementation> = {
    KV: kv,
    Watch: watch,
    Lease: lease,
    Cluster: cluster,
    Maintenance: maintenance,
    Auth: auth,
  };
  const fast = new Map<string, FastMethod>();
  for (const name of CLIENT_SERVICES) {
    const def = serviceDefinition(name);
    server.addService(def, impls[name]);
    for (const [method, handler] of Object.entries(impls[name])) {
      const fn = unaryFns.get(handler);
      const md = def[method];
      if (fn === undefined || md === undefined || md.requestStream || md.responseStream) continue;
      fast.set(md.path, {
        async run(request, call) {
          let req: Decoded<Msg>;
          try {
            req = md.requestDeserialize(request) as Decoded<Msg>;
          } catch {
            // grpc-js's answer to a request that does not decode.
            throw new ServerError('INTERNAL', 'Error deserializing request');
          }
          const res = await fn(req.msg, req.size, call as AuthCall);
          return Buffer.isBuffer(res) ? res : md.responseSerialize(res);
        },
        status: (err) => toStatus(err, log, method),
      });
    }
  }
  return fast;
}
