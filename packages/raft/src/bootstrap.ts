// Starting a brand-new cluster. The initial members are written into the log as committed
// ConfChange entries, as etcd does, so that a member added later learns the whole membership
// history by replaying the log like everyone else.

import { encodeConfChange } from './confchange.js';
import { ConfChangeType, EntryType, type Entry, type NodeId } from './messages.js';
import type { MemoryStorage } from './storage.js';

export class BootstrapError extends Error {
  override readonly name = 'BootstrapError';
}

export function bootstrap(storage: MemoryStorage, voters: readonly NodeId[]): void {
  if (voters.length === 0) throw new BootstrapError('raft: must provide at least one peer to bootstrap');
  if (storage.lastIndex() !== 0) throw new BootstrapError('raft: can\'t bootstrap a nonempty storage');
  const ents: Entry[] = voters.map((nodeId, i) => ({
    term: 1,
    index: i + 1,
    type: EntryType.ConfChange,
    data: encodeConfChange({ type: ConfChangeType.AddNode, nodeId }),
  }));
  storage.append(ents);
  storage.setHardState({ term: 1, vote: 0, commit: ents.length });
}
