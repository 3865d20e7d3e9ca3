// A linearizability checker in the manner of Porcupine: the Wing & Gong search with Lowe's
// memoization, over histories split into independent parts (P-compositionality: a history is
// linearizable iff each key's sub-history is).
//
// An operation that never completed may have taken effect at any time after its call, or never:
// it gets a return time of +Infinity, so the search may place it anywhere after its call, and
// placing it last is the same as leaving it out.

export interface Operation<I, O> {
  readonly client: number;
  readonly input: I;
  /** Invocation time; any clock, but calls and returns must not tie (use a global event counter). */
  readonly call: number;
  /** Present iff the operation completed. */
  readonly output?: O;
  readonly ret?: number;
}

export interface Model<S, I, O> {
  init(): S;
  /** The state after `input` if `output` is a legal result (undefined output: unknown, any result). */
  step(state: S, input: I, output: O | undefined): S | undefined;
  /** Equal keys mean equal states (for memoization). */
  key(state: S): string;
  partition(op: Operation<I, O>): string;
  /** Operations that carry no information unless completed (reads) can be dropped up front. */
  readOnly(input: I): boolean;
  describe(input: I, output: O | undefined): string;
}

export type CheckResult = { readonly ok: true } | { readonly ok: false; readonly partition: string; readonly message: string };

interface Node<I, O> {
  /** Index of the operation within its partition. */
  readonly id: number;
  readonly time: number;
  readonly op: Operation<I, O>;
  /** For a call: its return node. Undefined on return nodes. */
  match: Node<I, O> | undefined;
  prev: Node<I, O> | undefined;
  next: Node<I, O> | undefined;
}

export function checkOperations<S, I, O>(model: Model<S, I, O>, history: readonly Operation<I, O>[]): CheckResult {
  const parts = new Map<string, Operation<I, O>[]>();
  for (const op of history) {
    if (op.ret === undefined && model.readOnly(op.input)) continue;
    const k = model.partition(op);
    let p = parts.get(k);
    if (p === undefined) parts.set(k, (p = []));
    p.push(op);
  }
  for (const [k, ops] of parts) {
    if (!checkPartition(model, ops)) {
      return { ok: false, partition: k, message: explain(model, k, ops) };
    }
  }
  return { ok: true };
}

function checkPartition<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[]): boolean {
  const head = buildList(ops);
  const n = ops.length;
  const linearized = new Uint32Array((n + 31) >>> 5);
  const seen = new Set<string>();
  const calls: { node: Node<I, O>; state: S }[] = [];
  let state = model.init();
  let entry = head.next;
  while (head.next !== undefined) {
    if (entry === undefined) throw new Error('linearizability: ran off the end of the history');
    if (entry.match !== undefined) {
      const next = model.step(state, entry.op.input, entry.op.output);
      if (next !== undefined) {
        linearized[entry.id >>> 5]! ^= 1 << (entry.id & 31);
        const key = `${linearized.join(',')}|${model.key(next)}`;
        if (!seen.has(key)) {
          seen.add(key);
          calls.push({ node: entry, state });
          state = next;
          lift(entry);
          entry = head.next;
          continue;
        }
        linearized[entry.id >>> 5]! ^= 1 << (entry.id & 31);
      }
      entry = entry.next;
    } else {
      // A return reached before its call was linearized: backtrack.
      const top = calls.pop();
      if (top === undefined) return false;
      state = top.state;
      linearized[top.node.id >>> 5]! ^= 1 << (top.node.id & 31);
      unlift(top.node);
      entry = top.node.next;
    }
  }
  return true;
}

function buildList<I, O>(ops: readonly Operation<I, O>[]): Node<I, O> {
  const nodes: Node<I, O>[] = [];
  ops.forEach((op, id) => {
    const ret: Node<I, O> = { id, time: op.ret ?? Infinity, op, match: undefined, prev: undefined, next: undefined };
    const call: Node<I, O> = { id, time: op.call, op, match: ret, prev: undefined, next: undefined };
    nodes.push(call, ret);
  });
  // Returns at +Infinity sort last; calls and returns never tie by the history's contract.
  nodes.sort((a, b) => a.time - b.time || (a.match !== undefined ? 1 : -1));
  const head: Node<I, O> = { id: -1, time: -Infinity, op: ops[0]!, match: undefined, prev: undefined, next: undefined };
  let prev = head;
  for (const n of nodes) {
    prev.next = n;
    n.prev = prev;
    prev = n;
  }
  return head;
}

/** Takes a call and its return out of the list: the call is linearized. */
function lift<I, O>(call: Node<I, O>): void {
  call.prev!.next = call.next;
  if (call.next) call.next.prev = call.prev;
  const ret = call.match!;
  ret.prev!.next = ret.next;
  if (ret.next) ret.next.prev = ret.prev;
}

function unlift<I, O>(call: Node<I, O>): void {
  const ret = call.match!;
  ret.prev!.next = ret;
  if (ret.next) ret.next.prev = ret;
  call.prev!.next = call;
  if (call.next) call.next.prev = call;
}

/** The shortest prefix (by call order) that is already not linearizable, for a human to read. */
function explain<S, I, O>(model: Model<S, I, O>, key: string, ops: readonly Operation<I, O>[]): string {
  const sorted = [...ops].sort((a, b) => a.call - b.call);
  let lo = 1;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    // Keep ops completed before the cut as they are; later-completing ones become "unknown".
    const cut = sorted[mid - 1]!.call;
    const prefix = sorted.slice(0, mid).map((o) => (o.ret !== undefined && o.ret > cut ? { ...o, ret: undefined, output: undefined } : o));
    if (checkPartition(model, prefix.filter((o) => !(o.ret === undefined && model.readOnly(o.input))))) lo = mid + 1;
    else hi = mid;
  }
  const shown = sorted.slice(Math.max(0, lo - 30), lo);
  const lines = shown.map(
    (o) => `  client ${o.client} [${o.call}, ${o.ret ?? '∞'}] ${model.describe(o.input, o.output)}`,
  );
  return `key ${JSON.stringify(key)}: no linearization of the first ${lo} operations (last ${shown.length} shown):\n${lines.join('\n')}`;
}

// ---------------------------------------------------------------- a key-value register model

export type KvInput =
  | { readonly kind: 'put'; readonly key: string; readonly value: string }
  | { readonly kind: 'get'; readonly key: string };
export type KvOutput = { readonly kind: 'put' } | { readonly kind: 'get'; readonly value: string | undefined };

/** The register's state; null while the key is absent (undefined is reserved for "illegal"). */
export type KvState = string | null;

export const kvModel: Model<KvState, KvInput, KvOutput> = {
  init: () => null,
  step(state, input, output) {
    if (input.kind === 'put') return input.value;
    if (output === undefined) return state;
    return output.kind === 'get' && (output.value ?? null) === state ? state : undefined;
  },
  key: (s) => (s === null ? '\u0000' : s),
  partition: (op) => op.input.key,
  readOnly: (input) => input.kind === 'get',
  describe(input, output) {
    if (input.kind === 'put') return `put(${input.key}, ${input.value})${output ? '' : ' (outcome unknown)'}`;
    return `get(${input.key}) -> ${output?.kind === 'get' ? (output.value ?? '<none>') : '?'}`;
  },
};
