// Raft's safety properties, checked incrementally as the simulated drivers persist, commit and
// apply, so each step costs about as much as it changed. (Raft paper, Figure 3.)

import { isStorageError, type Entry, type MemoryStorage, type NodeId } from '../src/index.js';
import { majority } from '../src/quorum.js';

export class Violation extends Error {
  override readonly name = 'Violation';
  constructor(
    readonly invariant: string,
    details: string,
  ) {
    super(details);
  }
}

function digest(e: Entry): string {
  return `${e.type}:${Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength).toString('latin1')}`;
}

export class Invariants {
  private readonly leaderOfTerm = new Map<number, NodeId>();
  /** (index, term) -> the entry's content and the term before it, as first seen in any log. */
  private readonly logRegistry = new Map<string, { digest: string; prevTerm: number | undefined }>();
  /** index -> term of the entry known committed there. */
  private readonly committedTerm = new Map<number, number>();
  /**
   * index -> the term it was first seen committed in: the current term of the first node to persist
   * it as committed (no lower than the committing leader's term, so checks keyed on it only weaken).
   */
  private readonly committedIn = new Map<number, number>();
  private readonly appliedDigest = new Map<number, string>();
  /** Highest index known committed anywhere. */
  commit = 0;
  /** Highest commit index whose durability was checked at its leader. */
  private durableChecked = 0;

  /** Election safety: at most one leader per term. */
  leader(id: NodeId, term: number): void {
    const prev = this.leaderOfTerm.get(term);
    if (prev !== undefined && prev !== id) {
      throw new Violation('election safety', `nodes ${prev} and ${id} are both leader in term ${term}`);
    }
    this.leaderOfTerm.set(term, id);
  }

  /**
   * Log matching: entries with the same index and term are identical and follow the same term.
   * Called before `entries` are appended to `storage` (whose entry before the first is their predecessor).
   */
  appended(id: NodeId, storage: MemoryStorage, entries: readonly Entry[]): void {
    let prevTerm: number | undefined;
    if (entries.length > 0) {
      const t = storage.term(entries[0]!.index - 1);
      prevTerm = isStorageError(t) ? undefined : t;
    }
    for (const e of entries) {
      const key = `${e.index}:${e.term}`;
      const d = digest(e);
      const seen = this.logRegistry.get(key);
      if (seen === undefined) {
        this.logRegistry.set(key, { digest: d, prevTerm });
      } else {
        if (seen.digest !== d) {
          throw new Violation('log matching', `node ${id} has a different entry at index ${e.index} term ${e.term} than another node`);
        }
        if (seen.prevTerm !== undefined && prevTerm !== undefined && seen.prevTerm !== prevTerm) {
          throw new Violation(
            'log matching',
            `node ${id}: entry ${e.index} term ${e.term} follows term ${prevTerm}, elsewhere term ${seen.prevTerm}`,
          );
        }
        if (seen.prevTerm === undefined) seen.prevTerm = prevTerm;
      }
      prevTerm = e.term;
    }
  }

  /**
   * A node persisted commit index `commit` (its storage holds the entries). Records the terms of
   * newly committed entries, and checks that committed is durable: on a majority of one of
   * `configs`, the configurations its leader had since that leader last persisted a commit (a
   * leader may decide a commit, then apply a membership change, before the commit reaches disk).
   * Empty `configs` (no known leader) skips the durability check.
   */
  committed(
    id: NodeId,
    storage: MemoryStorage,
    commit: number,
    configs: readonly (readonly NodeId[])[],
    all: ReadonlyMap<NodeId, MemoryStorage>,
  ): void {
    const from = Math.max(storage.firstIndex(), 1);
    for (let i = Math.max(from, this.commit + 1 - 64); i <= commit; i++) {
      const t = storage.term(i);
      if (isStorageError(t)) continue;
      const known = this.committedTerm.get(i);
      if (known === undefined) {
        this.committedTerm.set(i, t);
        this.committedIn.set(i, storage.initialState().hardState.term);
      }
      else if (known !== t) {
        throw new Violation('leader completeness', `node ${id} committed index ${i} at term ${t}, but term ${known} was committed there`);
      }
    }
    // Durability is owed to the configuration that committed the entry: check it when the index
    // first becomes committed. (Later, a member holding it may be removed; the single-member
    // change rule keeps old and new majorities overlapping, which log matching covers.)
    if (commit > this.commit) this.commit = commit;
    // The leader decided the commit, so its configurations are the ones that count, even when a
    // follower persists the index first (the leader sends it before its own fsync completes).
    if (!configs.some((c) => c.length > 0) || commit <= this.durableChecked) return;
    this.durableChecked = commit;
    const term = this.committedTerm.get(commit);
    if (term === undefined) return;
    checkDurable(`node ${id} committed index ${commit}`, commit, term, configs, all);
  }

  /**
   * A leader applies an entry of a Ready it is still writing (write-behind): the entry must be on
   * disk on a majority of one of `configs` without counting on this node's write.
   */
  durable(id: NodeId, e: Entry, configs: readonly (readonly NodeId[])[], all: ReadonlyMap<NodeId, MemoryStorage>): void {
    checkDurable(`node ${id} applied index ${e.index} before writing it`, e.index, e.term, configs, all);
  }

  /**
   * Leader completeness: a new leader's (persisted) log holds every entry committed in an earlier
   * term. Not those committed in its own term or later: a delayed vote can still elect a leader of
   * an old term after a newer one committed entries it never saw, and that is safe (it cannot win
   * an append against the newer term).
   */
  newLeader(id: NodeId, storage: MemoryStorage): void {
    const term = storage.initialState().hardState.term;
    for (let i = Math.max(storage.firstIndex(), 1); i <= this.commit; i++) {
      const want = this.committedTerm.get(i);
      const inTerm = this.committedIn.get(i);
      if (want === undefined || inTerm === undefined || inTerm >= term) continue;
      if (i > storage.lastIndex()) {
        throw new Violation('leader completeness', `leader ${id} (term ${term}) has log up to ${storage.lastIndex()}, but ${i} was committed in term ${inTerm}`);
      }
      const t = storage.term(i);
      if (t !== want) {
        throw new Violation('leader completeness', `leader ${id} (term ${term}) has term ${String(t)} at index ${i}, committed at term ${want} in term ${inTerm}`);
      }
    }
  }

  /** State machine safety: no two nodes apply different entries at one index. */
  applied(id: NodeId, e: Entry): void {
    const d = digest(e);
    const seen = this.appliedDigest.get(e.index);
    if (seen === undefined) this.appliedDigest.set(e.index, d);
    else if (seen !== d) {
      throw new Violation('state machine safety', `node ${id} applied a different entry at index ${e.index} (term ${e.term})`);
    }
  }
}

function checkDurable(what: string, index: number, term: number, configs: readonly (readonly NodeId[])[], all: ReadonlyMap<NodeId, MemoryStorage>): void {
  const has = (v: NodeId) => {
    const s = all.get(v);
    return s !== undefined && (s.firstIndex() - 1 >= index || s.term(index) === term);
  };
  const durable = (voters: readonly NodeId[]) => voters.length > 0 && voters.filter(has).length >= majority(voters.length);
  if (configs.some(durable)) return;
  const voters = configs[configs.length - 1] ?? [];
  const holders = voters.filter(has).length;
  throw new Violation(
    'committed is durable',
    `${what} (term ${term}) but only ${holders} of voters [${voters.join(',')}] have it on disk (` +
      voters.map((v) => `${v}: last ${all.get(v)?.lastIndex()}, term there ${String(all.get(v)?.term(index))}`).join('; ') +
      ')',
  );
}
