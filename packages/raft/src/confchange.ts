// Membership changes: their encoding inside a ConfChange entry, and the rules for applying them.
// One member changes at a time, so the old and new majorities always overlap.

import {
  ConfChangeType,
  type ConfChange,
  type ConfState,
  type NodeId,
} from './messages.js';

const VERSION = 1;
const HEADER_BYTES = 10; // version u8, type u8, node id f64

export function encodeConfChange(cc: ConfChange): Uint8Array {
  const ctx = cc.context ?? new Uint8Array(0);
  const out = new Uint8Array(HEADER_BYTES + ctx.byteLength);
  const dv = new DataView(out.buffer);
  dv.setUint8(0, VERSION);
  dv.setUint8(1, cc.type);
  dv.setFloat64(2, cc.nodeId);
  out.set(ctx, HEADER_BYTES);
  return out;
}

export class ConfChangeDecodeError extends Error {
  override readonly name = 'ConfChangeDecodeError';
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  if (data.byteLength < HEADER_BYTES) throw new ConfChangeDecodeError(`raft: conf change too short (${data.byteLength} bytes)`);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (dv.getUint8(0) !== VERSION) throw new ConfChangeDecodeError(`raft: unknown conf change version ${dv.getUint8(0)}`);
  const type = dv.getUint8(1);
  if (!(type in ConfChangeType)) throw new ConfChangeDecodeError(`raft: unknown conf change type ${type}`);
  const nodeId = dv.getFloat64(2);
  if (!Number.isSafeInteger(nodeId) || nodeId <= 0) throw new ConfChangeDecodeError(`raft: invalid node id ${nodeId}`);
  const context = data.subarray(HEADER_BYTES);
  return { type: type as ConfChangeType, nodeId, ...(context.byteLength > 0 ? { context } : {}) };
}

/** Why a change cannot be applied to a configuration; undefined when it can. */
export function validateConfChange(cs: ConfState, cc: ConfChange): string | undefined {
  const voter = cs.voters.includes(cc.nodeId);
  const learner = cs.learners.includes(cc.nodeId);
  switch (cc.type) {
    case ConfChangeType.AddNode:
      return voter ? `node ${cc.nodeId} is already a voter` : undefined;
    case ConfChangeType.AddLearnerNode:
      if (voter) return `node ${cc.nodeId} is a voter and cannot be demoted to learner`;
      return learner ? `node ${cc.nodeId} is already a learner` : undefined;
    case ConfChangeType.RemoveNode:
      if (!voter && !learner) return `node ${cc.nodeId} is not a member`;
      if (voter && cs.voters.length === 1) return 'removing the last voter';
      return undefined;
  }
}

/** The configuration after a (valid) change. Invalid changes leave it as it was. */
export function applyToConfState(cs: ConfState, cc: ConfChange): ConfState {
  if (validateConfChange(cs, cc) !== undefined) return cs;
  const without = (ids: readonly NodeId[]) => ids.filter((id) => id !== cc.nodeId);
  switch (cc.type) {
    case ConfChangeType.AddNode:
      return { voters: sorted([...cs.voters, cc.nodeId]), learners: without(cs.learners) };
    case ConfChangeType.AddLearnerNode:
      return { voters: cs.voters, learners: sorted([...cs.learners, cc.nodeId]) };
    case ConfChangeType.RemoveNode:
      return { voters: without(cs.voters), learners: without(cs.learners) };
  }
}

function sorted(ids: NodeId[]): NodeId[] {
  return ids.sort((a, b) => a - b);
}
