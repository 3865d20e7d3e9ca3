// A linearizability checker in the manner of Porcupine: the Wing & Gong search with Lowe's
// memoization, run separately on independent sub-histories (P-compositionality: a history is
// linearizable iff each partition's sub-history is, so per-key checks keep the search small).
//
// The search walks a doubly linked list of call and return events in time order. It repeatedly
// tries to linearize a pending call (one that appears before the first return in the list): if
// the model accepts it and the pair (set of linearized ops, model state) has not been seen, the
// call and its return are lifted out of the list and the walk restarts from the head. Reaching a
// return whose call is still in the list means the current choices cannot be extended, so the
// last choice is undone. Lowe's cache is what keeps this from being exponential: the future of
// the search depends only on which ops are linearized and on the model state, so a pair already
// explored (and failed, or we would have stopped) need never be explored again.
//
// An operation that never completed may have taken effect at any time after its call, or never.
// Its return sits at +Infinity, so it may be linearized anywhere after its call; leaving it out is
// equivalent to placing it last, after which nothing else is constrained by it. The search thus
// succeeds as soon as every completed op is linearized.

export interface Operation<Input, Output> {
  readonly client: number;
  readonly input: Input;
  /** Invocation time (any monotone clock). */
  readonly call: number;
  /** Present iff the op completed. */
  readonly output?: Output;
  /** Completion time; undefined = never completed (outcome unknown). */
  readonly ret?: number;
}

export interface Model<State, Input, Output> {
  init(): State;
  /**
   * Apply input to state; return the new state if output is a legal result, else undefined. Must
   * not mutate state. Output undefined = outcome unknown (op never completed): any result is legal,
   * so the model must then return a state.
   */
  step(state: State, input: Input, output: Output | undefined): State | undefined;
  /** A key for memoization: equal keys mean equal states. */
  key(state: State): string;
  /** Split a history into independent sub-histories (P-compositionality), e.g. by KV key. */
  partition?(op: Operation<Input, Output>): string;
  describe?(input: Input, output: Output | undefined): string;
  /**
   * True if the input never changes the state. Such an op that never completed carries no
   * information (it can always be placed last), so it is dropped before the search.
   */
  readOnly?(input: Input): boolean;
  /**
   * Ops whose outcome is unknown and that have the same class here have the same effect on every
   * state (e.g. deletes of one key): which of them took effect is immaterial, so the search only
   * tries the earliest-called one still pending (the others stay available). Without it, every
   * pending delete of a key is a separate choice at every step, and a long history with many of
   * them exhausts any budget.
   */
  interchangeable?(input: Input): string | undefined;
}

export type CheckResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly partition: string; readonly message: string }
  /** The search budget ran out before an answer was found. */
  | { readonly ok: 'unknown'; readonly partition: string; readonly message: string };

export interface CheckOptions {
  /**
   * Budget per partition, in model steps. Unlimited by default: a hard history then takes long
   * rather than passing silently.
   */
  readonly maxSteps?: number;
}

type Outcome = 'ok' | 'fail' | 'budget';

/**
 * Checks a whole history. A definite violation in any partition wins over a partition whose
 * budget ran out, so one hard key cannot hide a real bug on another.
 */
export function checkOperations<S, I, O>(
  model: Model<S, I, O>,
  history: readonly Operation<I, O>[],
  opts: CheckOptions = {},
): CheckResult {
  const maxSteps = opts.maxSteps ?? Infinity;
  if (!(maxSteps >= 0)) throw new RangeError(`linearizability: maxSteps must be >= 0, got ${maxSteps}`);
  const parts = new Map<string, Operation<I, O>[]>();
  for (const op of history) {
    validate(op);
    if (!completed(op) && model.readOnly?.(op.input) === true) continue;
    const k = model.partition?.(op) ?? '';
    let p = parts.get(k);
    if (p === undefined) parts.set(k, (p = []));
    p.push(op);
  }
  let unknown: CheckResult | undefined;
  for (const [k, ops] of parts) {
    const r = search(model, ops, maxSteps);
    if (r === 'fail') return { ok: false, partition: k, message: explain(model, k, ops, maxSteps) };
    if (r === 'budget' && unknown === undefined) {
      unknown = {
        ok: 'unknown',
        partition: k,
        message: `partition ${JSON.stringify(k)}: gave up after ${maxSteps} model steps over ${ops.length} operations`,
      };
    }
  }
  return unknown ?? { ok: true };
}

function validate(op: Operation<unknown, unknown>): void {
  if (!Number.isFinite(op.call)) throw new RangeError(`linearizability: call time ${op.call} is not finite`);
  if (op.ret !== undefined && !(op.ret >= op.call)) {
    throw new RangeError(`linearizability: client ${op.client} returned at ${op.ret}, before its call at ${op.call}`);
  }
}

/** A return at +Infinity is the same as no return: the outcome is unknown. */
function completed(op: Operation<unknown, unknown>): boolean {
  return op.ret !== undefined && op.ret !== Infinity;
}

// ---------------------------------------------------------------- the search

/** 32-bit finalizer (murmur3's): spreads op ids and string hashes over the whole word. */
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

interface CacheEntry {
  readonly bits: Uint32Array;
  readonly key: string;
}

function sameBits(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Wing & Gong with Lowe's cache over one partition. Event nodes are integers: 2*id is op id's
 * call, 2*id+1 its return, 2*n the list head; -1 ends the list.
 */
function search<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[], maxSteps: number): Outcome {
  const n = ops.length;
  let remaining = 0;
  for (const op of ops) if (completed(op)) remaining++;
  if (remaining === 0) return 'ok';

  const head = 2 * n;
  const next = new Int32Array(2 * n + 1);
  const prev = new Int32Array(2 * n + 1);
  const order = new Array<number>(2 * n);
  const time = (node: number): number => {
    const op = ops[node >>> 1]!;
    return (node & 1) === 0 ? op.call : completed(op) ? op.ret! : Infinity;
  };
  for (let i = 0; i < 2 * n; i++) order[i] = i;
  // At equal times calls go first: a tie cannot show which happened first, so the two ops count as
  // concurrent (the permissive reading, as Porcupine's; it also keeps an op's call before its own
  // return when both share a time).
  order.sort((a, b) => {
    const ta = time(a);
    const tb = time(b);
    if (ta !== tb) return ta < tb ? -1 : 1;
    return (a & 1) - (b & 1) || a - b;
  });
  let last = head;
  for (const node of order) {
    next[last] = node;
    prev[node] = last;
    last = node;
  }
  next[last] = -1;

  const lift = (call: number): void => {
    next[prev[call]!] = next[call]!;
    if (next[call]! !== -1) prev[next[call]!] = prev[call]!;
    const ret = call + 1;
    next[prev[ret]!] = next[ret]!;
    if (next[ret]! !== -1) prev[next[ret]!] = prev[ret]!;
  };
  // Exactly the reverse of lift: the removed nodes still hold their old neighbours.
  const unlift = (call: number): void => {
    const ret = call + 1;
    next[prev[ret]!] = ret;
    if (next[ret]! !== -1) prev[next[ret]!] = ret;
    next[prev[call]!] = call;
    if (next[call]! !== -1) prev[next[call]!] = call;
  };

  // Zobrist hashing makes the hash of the linearized set O(1) to update.
  const zobrist = new Uint32Array(n);
  for (let i = 0; i < n; i++) zobrist[i] = fmix32(Math.imul(i + 1, 0x9e3779b1));
  const bits = new Uint32Array((n + 31) >>> 5);
  const cache = new Map<number, CacheEntry[]>();

  // Interchangeable pending ops: per class, its ops in call order; only the first not yet
  // linearized may be linearized next (the search order is by call time, so it comes first).
  const classOf = new Int32Array(n).fill(-1);
  const classes: number[][] = [];
  if (model.interchangeable !== undefined) {
    const byName = new Map<string, number>();
    const ids = [...Array(n).keys()].filter((i) => !completed(ops[i]!)).sort((a, b) => ops[a]!.call - ops[b]!.call || a - b);
    for (const i of ids) {
      const name = model.interchangeable(ops[i]!.input);
      if (name === undefined) continue;
      let c = byName.get(name);
      if (c === undefined) {
        byName.set(name, (c = classes.length));
        classes.push([]);
      }
      classOf[i] = c;
      classes[c]!.push(i);
    }
  }
  const isLinearized = (id: number): boolean => (bits[id >>> 5]! & (1 << (id & 31))) !== 0;
  /** False for a pending op whose class has an earlier-called op not yet linearized. */
  const canonical = (id: number): boolean => {
    const c = classOf[id]!;
    if (c < 0) return true;
    for (const other of classes[c]!) {
      if (other === id) return true;
      if (!isLinearized(other)) return false;
    }
    return true;
  };

  const stackId = new Int32Array(n);
  const stackHash = new Uint32Array(n);
  const stackPhase = new Uint8Array(n);
  const stackState: S[] = [];
  let depth = 0;

  // Each walk from the head goes in two phases: first only completed ops, then, from the head
  // again, every op. Ops of unknown outcome are thus tried only where no completed op can go
  // next, which is where they are needed; tried first, they were placed early, failed much later,
  // and a long history ran out of budget backtracking over them. The choices tried at each point
  // are the same, so the answer is too (repeats in the second phase hit the cache).
  let phase: 1 | 2 = 1;
  let state = model.init();
  let setHash = 0;
  let steps = 0;
  let node = next[head]!;
  for (;;) {
    // remaining > 0 here, so a finite return is still in the list and the walk stops on it
    // before running off the end (returns at +Infinity sort after every finite one).
    if ((node & 1) === 0) {
      const id = node >>> 1;
      const op = ops[id]!;
      const done = completed(op);
      if (!done && (phase === 1 || !canonical(id))) {
        node = next[node]!;
        continue;
      }
      if (++steps > maxSteps) return 'budget';
      const after = model.step(state, op.input, done ? op.output : undefined);
      if (after !== undefined) {
        const word = id >>> 5;
        const bit = 1 << (id & 31);
        bits[word]! |= bit;
        const newHash = (setHash ^ zobrist[id]!) >>> 0;
        const key = model.key(after);
        const h = fmix32(newHash ^ hashString(key));
        let bucket = cache.get(h);
        let seen = false;
        if (bucket === undefined) cache.set(h, (bucket = []));
        else for (const e of bucket) if (e.key === key && sameBits(e.bits, bits)) { seen = true; break; }
        if (!seen) {
          bucket.push({ bits: bits.slice(), key });
          stackId[depth] = id;
          stackHash[depth] = setHash;
          stackState[depth] = state;
          stackPhase[depth] = phase;
          depth++;
          state = after;
          setHash = newHash;
          lift(node);
          if (done && --remaining === 0) return 'ok';
          phase = 1;
          node = next[head]!;
          continue;
        }
        bits[word]! &= ~bit;
      }
      node = next[node]!;
    } else {
      if (phase === 1) {
        phase = 2;
        node = next[head]!;
        continue;
      }
      if (depth === 0) return 'fail';
      depth--;
      const id = stackId[depth]!;
      phase = stackPhase[depth] as 1 | 2;
      state = stackState[depth]!;
      setHash = stackHash[depth]!;
      bits[id >>> 5]! &= ~(1 << (id & 31));
      if (completed(ops[id]!)) remaining++;
      unlift(2 * id);
      node = next[2 * id]!;
    }
  }
}

// ---------------------------------------------------------------- explaining a failure

const MAX_LINES = 200;

/** Sorts never-returned ops after all others without Infinity - Infinity = NaN. */
function retOrder(o: Operation<unknown, unknown>): number {
  return completed(o) ? o.ret! : Number.MAX_VALUE;
}

/**
 * Finds the earliest time T at which the history as observed so far (ops called by T, those not
 * returned by T treated as pending) already has no linearization, and prints those ops.
 * Non-linearizability of such prefixes is monotone in T: a linearization of a later prefix,
 * cut before its first op called after T, is one of the earlier prefix (ops completed by T
 * precede every op called after T; the pending rest can go last). So a binary search finds T.
 * Only a return can make a prefix fail, so the candidates are the return times.
 */
function explain<S, I, O>(model: Model<S, I, O>, key: string, ops: readonly Operation<I, O>[], maxSteps: number): string {
  const asOf = (t: number): Operation<I, O>[] => {
    const out: Operation<I, O>[] = [];
    for (const o of ops) {
      if (o.call > t) continue;
      if (completed(o) && o.ret! <= t) out.push(o);
      else if (model.readOnly?.(o.input) !== true) out.push({ client: o.client, input: o.input, call: o.call });
    }
    return out;
  };
  const rets = [...new Set(ops.filter(completed).map((o) => o.ret!))].sort((a, b) => a - b);
  // The whole history is known to fail; a prefix whose search runs out of budget is treated as
  // passing, so the answer may be longer than the shortest but is always a failing prefix.
  let lo = 0;
  let hi = rets.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (search(model, asOf(rets[mid]!), maxSteps) === 'fail') hi = mid;
    else lo = mid + 1;
  }
  const t = rets[lo]!;
  const describe = (i: I, o: O | undefined): string =>
    model.describe?.(i, o) ?? `${JSON.stringify(i)} -> ${o === undefined ? '?' : JSON.stringify(o)}`;
  const shown = ops
    .filter((o) => o.call <= t && ((completed(o) && o.ret! <= t) || model.readOnly?.(o.input) !== true))
    .sort((a, b) => a.call - b.call || retOrder(a) - retOrder(b));
  const trigger = shown.filter((o) => o.ret === t);
  const line = (o: Operation<I, O>): string => {
    if (!completed(o)) return `  client ${o.client} [${o.call}, never returned] ${describe(o.input, undefined)}`;
    if (o.ret! > t) return `  client ${o.client} [${o.call}, ${o.ret}] ${describe(o.input, undefined)} (pending at ${t})`;
    return `  client ${o.client} [${o.call}, ${o.ret}] ${describe(o.input, o.output)}`;
  };
  const lines = shown.slice(-MAX_LINES).map(line);
  const omitted = shown.length - lines.length;
  return [
    `partition ${JSON.stringify(key)}: no linearization exists for its first ${shown.length} operations in call order, ` +
      `as of time ${t} (when ${trigger.map((o) => `client ${o.client}'s ${describe(o.input, o.output)}`).join(' and ')} returned):`,
    ...(omitted > 0 ? [`  ... ${omitted} earlier operations not shown`] : []),
    ...lines,
  ].join('\n');
}

// ---------------------------------------------------------------- a key-value register model

export type KvInput =
  | { readonly kind: 'put'; readonly key: string; readonly value: string }
  | { readonly kind: 'get'; readonly key: string }
  | { readonly kind: 'cas'; readonly key: string; readonly expect: string | undefined; readonly value: string };
export type KvOutput =
  | { readonly kind: 'put' }
  | { readonly kind: 'get'; readonly value: string | undefined }
  | { readonly kind: 'cas'; readonly ok: boolean };

/**
 * One key's value; null while the key is absent, because step() already uses undefined for
 * "illegal result".
 */
export type KvState = string | null;

export const kvModel: Model<KvState, KvInput, KvOutput> = {
  init: () => null,
  step(state, input, output) {
    switch (input.kind) {
      case 'put':
        return input.value;
      case 'get':
        if (output === undefined) return state;
        return output.kind === 'get' && (output.value ?? null) === state ? state : undefined;
      case 'cas': {
        const hit = (input.expect ?? null) === state;
        if (output === undefined) return hit ? input.value : state;
        if (output.kind !== 'cas' || output.ok !== hit) return undefined;
        return hit ? input.value : state;
      }
    }
  },
  // A prefix keeps "absent" distinct from every value, the empty string included.
  key: (s) => (s === null ? '' : `=${s}`),
  partition: (op) => op.input.key,
  readOnly: (input) => input.kind === 'get',
  describe(input, output) {
    const show = (v: string | undefined): string => (v === undefined ? '<none>' : JSON.stringify(v));
    switch (input.kind) {
      case 'put':
        return `put(${input.key}, ${show(input.value)})${output === undefined ? ' (outcome unknown)' : ''}`;
      case 'get':
        return `get(${input.key}) -> ${output?.kind === 'get' ? show(output.value) : '?'}`;
      case 'cas':
        return `cas(${input.key}, ${show(input.expect)} => ${show(input.value)}) -> ${
          output?.kind === 'cas' ? (output.ok ? 'ok' : 'failed') : '? (outcome unknown)'
        }`;
    }
  },
};
