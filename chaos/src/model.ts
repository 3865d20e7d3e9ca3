/**
 * The register each key is, for the linearizability search: puts, deletes, reads and
 * compare-and-swap on the value. Absent is null (undefined means "illegal" to the checker).
 */
import type { Model, Operation } from '@capstan/raft/linearizability';

export type KvInput =
  | { readonly kind: 'put'; readonly key: string; readonly value: string }
  | { readonly kind: 'delete'; readonly key: string }
  | { readonly kind: 'get'; readonly key: string }
  | { readonly kind: 'cas'; readonly key: string; readonly expect: string | null; readonly value: string };

export type KvOutput =
  | { readonly kind: 'put' }
  | { readonly kind: 'delete' }
  | { readonly kind: 'get'; readonly value: string | null }
  | { readonly kind: 'cas'; readonly ok: boolean };

export type KvOperation = Operation<KvInput, KvOutput>;

export const registerModel: Model<string | null, KvInput, KvOutput> = {
  init: () => null,
  step(state, input, output) {
    switch (input.kind) {
      case 'put':
        return input.value;
      case 'delete':
        return null;
      case 'get':
        if (output === undefined) return state;
        return output.kind === 'get' && output.value === state ? state : undefined;
      case 'cas': {
        const hit = input.expect === state;
        if (output !== undefined && (output.kind !== 'cas' || output.ok !== hit)) return undefined;
        return hit ? input.value : state;
      }
    }
  },
  key: (s) => (s === null ? '' : `=${s}`),
  partition: (op) => op.input.key,
  readOnly: (input) => input.kind === 'get',
  // Every delete of a key leaves it absent: pending ones are one choice, not one each.
  interchangeable: (input) => (input.kind === 'delete' ? `delete ${input.key}` : undefined),
  describe(input, output) {
    const v = (x: string | null | undefined): string => (x === null || x === undefined ? '<none>' : JSON.stringify(x));
    switch (input.kind) {
      case 'put':
        return `put(${input.key}, ${v(input.value)})${output === undefined ? ' ?' : ''}`;
      case 'delete':
        return `delete(${input.key})${output === undefined ? ' ?' : ''}`;
      case 'get':
        return `get(${input.key}) -> ${output?.kind === 'get' ? v(output.value) : '?'}`;
      case 'cas':
        return `cas(${input.key}, ${v(input.expect)} => ${v(input.value)}) -> ${output?.kind === 'cas' ? (output.ok ? 'ok' : 'failed') : '?'}`;
    }
  },
};
