/**
 * etcd's warning for a request that took too long (`apply request took too long`, counted in
 * etcd_server_slow_apply_total): for a proposal, the time its apply took on each member; for a
 * read-only Range or Txn, the whole request, ReadIndex wait included. The threshold is
 * --experimental-warning-apply-duration (100 ms, etcd's default), which here also sets when a
 * request's trace is logged (trace.ts; etcd fixes that one at 100 ms).
 */
import type { ApplyRequest, ApplyResult, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest } from '@capstan/mvcc';
import { goDuration } from '@capstan/wal';
import type { RequestTrace, TraceLog } from './trace.js';

/** etcd's default for --experimental-warning-apply-duration. */
export const DEFAULT_WARNING_APPLY_MS = 100;

export class SlowRequests {
  /** Requests that went over the threshold (etcd_server_slow_apply_total). */
  count = 0;

  constructor(
    readonly thresholdMs: number,
    private readonly log: TraceLog,
  ) {}

  isSlow(took: number): boolean {
    return took > this.thresholdMs;
  }

  /** Logs the request's trace if it took longer than the threshold. */
  logTrace(trace: RequestTrace): void {
    trace.logIfLong(this.thresholdMs, this.log);
  }

  /**
   * Warns when `took` is over the threshold. `request` and `response` are only called then, so a
   * request that was quick costs no string.
   */
  warnIfSlow(took: number, prefix: string, request: () => string, response: () => string, error?: Error): void {
    if (!this.isSlow(took)) return;
    this.count++;
    this.log('warn', 'apply request took too long', {
      took: goDuration(took),
      'expected-duration': goDuration(this.thresholdMs),
      prefix,
      request: request(),
      response: response(),
      ...(error !== undefined ? { error: error.message } : {}),
    });
  }
}

/**
 * A request in the protobuf text form etcd logs (its InternalRaftStringer), values left out as
 * their size, as etcd does. Requests other than key-value ones are named without their fields.
 */
export function describeRequest(req: ApplyRequest): string {
  if (req.put !== undefined) return `put:<${putText(req.put)}>`;
  if (req.deleteRange !== undefined) return `delete_range:<${rangeText(req.deleteRange)}>`;
  if (req.txn !== undefined) return `txn:<${txnText(req.txn)}>`;
  if (req.range !== undefined) return `range:<${rangeText(req.range)}>`;
  if (req.compaction !== undefined) return `compaction:<revision:${req.compaction.revision} >`;
  if (req.leaseGrant !== undefined) return `lease_grant:<ttl:${req.leaseGrant.TTL} id:${req.leaseGrant.ID} >`;
  if (req.leaseRevoke !== undefined) return `lease_revoke:<id:${req.leaseRevoke.ID} >`;
  const op = Object.keys(req).find((k) => k !== 'header' && (req as Record<string, unknown>)[k] !== undefined);
  return op === undefined ? '' : `${op.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}:<>`;
}

/** An apply's outcome for the warning: the revision it answered with (etcd logs the response's size). */
export function describeResult(r: ApplyResult): string {
  if (r.kind !== 'ok') return r.kind === 'skipped' ? 'skipped' : '';
  const rev = (r.response as { header?: { revision?: number } }).header?.revision;
  return rev !== undefined ? `response_revision:${rev}` : '';
}

/** A key and the end of its range, as a Range, a DeleteRange and a Compare each carry them. */
export function rangeText(r: Pick<RangeRequest, 'key' | 'rangeEnd'>): string {
  return `key:${quote(r.key)} ${r.rangeEnd !== undefined && r.rangeEnd.length > 0 ? `range_end:${quote(r.rangeEnd)} ` : ''}`;
}

export function txnText(t: TxnRequest): string {
  const cmp = (t.compare ?? []).map((c) => `compare:<${compareText(c)}> `).join('');
  const ops = (name: string, list: RequestOp[] | undefined): string => (list ?? []).map((op) => `${name}:<${opText(op)}> `).join('');
  return `${cmp}${ops('success', t.success)}${ops('failure', t.failure)}`;
}

function putText(p: PutRequest): string {
  const lease = p.lease !== undefined && p.lease !== 0n ? `lease:${p.lease} ` : '';
  return `key:${quote(p.key)} value_size:${p.value?.length ?? 0} ${lease}`;
}

function compareText(c: Compare): string {
  return `target:${c.target} ${rangeText(c)}`;
}

function opText(op: RequestOp): string {
  if (op.requestPut !== undefined) return `request_put:<${putText(op.requestPut)}>`;
  if (op.requestDeleteRange !== undefined) return `request_delete_range:<${rangeText(op.requestDeleteRange)}>`;
  if (op.requestRange !== undefined) return `request_range:<${rangeText(op.requestRange)}>`;
  if (op.requestTxn !== undefined) return `request_txn:<${txnText(op.requestTxn)}>`;
  return '';
}

function quote(b: Uint8Array): string {
  return JSON.stringify(keyText(b));
}

/** A key as text, as etcd's traces print string(key). */
export function keyText(b: Uint8Array | undefined): string {
  return b === undefined ? '' : Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
}
