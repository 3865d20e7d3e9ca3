/**
 * The checks etcd's v3rpc layer makes before a request is proposed (key_server.go: checkRangeRequest
 * and friends), so a request that would fail them never enters the Raft log. The store runs them too:
 * it is the state machine, and must refuse the same things whoever calls it.
 */
import {
  errDuplicateKey,
  errEmptyKey,
  errInvalidSortOption,
  errKeyNotFound,
  errLeaseProvided,
  errTooManyOps,
  errValueProvided,
} from './errors.js';
import { latin1 } from './treeindex.js';
import { SortOrder, SortTarget, type DeleteRangeRequest, type PutRequest, type RangeRequest, type RequestOp, type TxnRequest } from './types.js';

/** etcd's --max-txn-ops default. */
export const DEFAULT_MAX_TXN_OPS = 128;

const SORT_ORDERS = new Set<number>(Object.values(SortOrder));
const SORT_TARGETS = new Set<number>(Object.values(SortTarget));

export function checkRange(r: RangeRequest): void {
  if (r.key.length === 0) throw errEmptyKey();
  if (!SORT_ORDERS.has(r.sortOrder ?? 0) || !SORT_TARGETS.has(r.sortTarget ?? 0)) throw errInvalidSortOption();
}

export function checkPut(r: PutRequest): void {
  if (r.key.length === 0) throw errEmptyKey();
  if (r.ignoreValue === true && (r.value?.length ?? 0) !== 0) throw errValueProvided();
  if (r.ignoreLease === true && (r.lease ?? 0n) !== 0n) throw errLeaseProvided();
}

export function checkDelete(r: DeleteRangeRequest): void {
  if (r.key.length === 0) throw errEmptyKey();
}

export function checkTxn(r: TxnRequest, maxTxnOps = DEFAULT_MAX_TXN_OPS): void {
  checkTxnOps(r, maxTxnOps);
  checkIntervals(r.success ?? []);
  checkIntervals(r.failure ?? []);
}

function checkTxnOps(r: TxnRequest, maxTxnOps: number): void {
  const cmps = r.compare ?? [];
  if (cmps.length > maxTxnOps || (r.success?.length ?? 0) > maxTxnOps || (r.failure?.length ?? 0) > maxTxnOps) throw errTooManyOps();
  for (const c of cmps) if (c.key.length === 0) throw errEmptyKey();
  for (const op of r.success ?? []) checkRequestOp(op, maxTxnOps);
  for (const op of r.failure ?? []) checkRequestOp(op, maxTxnOps);
}

/** Exactly one of the oneof's fields; none is what etcd answers with "key not found". */
export function checkRequestOp(op: RequestOp, maxTxnOps = DEFAULT_MAX_TXN_OPS): void {
  if (op.requestRange !== undefined) checkRange(op.requestRange);
  else if (op.requestPut !== undefined) checkPut(op.requestPut);
  else if (op.requestDeleteRange !== undefined) checkDelete(op.requestDeleteRange);
  else if (op.requestTxn !== undefined) checkTxnOps(op.requestTxn, maxTxnOps);
  else throw errKeyNotFound();
}

/**
 * [begin, end) over strings, with etcd's adt "affine" reading: an empty end is +infinity. A point
 * is [k, k+"\0"). Note etcd builds a delete's interval from range_end literally, so a "from key"
 * delete (range_end "\0") is an empty interval and never conflicts: kept, to refuse exactly what
 * etcd refuses.
 */
interface Interval {
  readonly begin: string;
  readonly end: string;
}

function below(a: string, b: string): boolean {
  if (b === '') return a !== '';
  if (a === '') return false;
  return a < b;
}

function intersectsPoint(ivs: readonly Interval[], k: string): boolean {
  const end = k + '\0';
  return ivs.some((iv) => below(iv.begin, end) && below(k, iv.end));
}

/**
 * etcd's checkIntervals: in one branch list, no key may be put twice, nor put and deleted; a key
 * put in both branches of one nested txn is fine (only one runs).
 */
function checkIntervals(reqs: readonly RequestOp[]): { puts: Set<string>; dels: Interval[] } {
  const dels: Interval[] = [];
  for (const r of reqs) {
    const d = r.requestDeleteRange;
    if (d === undefined) continue;
    const k = latin1(d.key);
    const end = d.rangeEnd !== undefined && d.rangeEnd.length > 0 ? latin1(d.rangeEnd) : k + '\0';
    dels.push({ begin: k, end });
  }
  const puts = new Set<string>();
  for (const r of reqs) {
    const t = r.requestTxn;
    if (t === undefined) continue;
    const then = checkIntervals(t.success ?? []);
    const otherwise = checkIntervals(t.failure ?? []);
    for (const k of then.puts) {
      if (puts.has(k) || intersectsPoint(dels, k)) throw errDuplicateKey();
      puts.add(k);
    }
    for (const k of otherwise.puts) {
      if ((puts.has(k) && !then.puts.has(k)) || intersectsPoint(dels, k)) throw errDuplicateKey();
      puts.add(k);
    }
    dels.push(...then.dels, ...otherwise.dels);
  }
  for (const r of reqs) {
    const p = r.requestPut;
    if (p === undefined) continue;
    const k = latin1(p.key);
    if (puts.has(k) || intersectsPoint(dels, k)) throw errDuplicateKey();
    puts.add(k);
  }
  return { puts, dels };
}
