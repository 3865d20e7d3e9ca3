/**
 * The checkers a recorded run goes through. Each returns violations as values; an empty list is a
 * clean run.
 */
import { checkOperations } from '@capstan/raft/linearizability';
import { registerModel, type KvOperation, type KvOutput } from './model.js';
import type { Recorded, WatchEvent } from './workload.js';

/**
 * A target's own bug, understood and explained, which a run against that target reports apart
 * from its violations. Capstan has none: a run against it counts everything it finds.
 */
export type KnownDefect = 'etcd-prev-kv-race';

export const KNOWN_DEFECTS: Readonly<Record<KnownDefect, string>> = {
  'etcd-prev-kv-race':
    "etcd 3.4 keeps a watch's prev_kv flag in a map of v3rpc's serverWatchStream apart from the watcher itself, and sendLoop reads it for each response: recvLoop registers the watcher (watchStream.Watch) before it sets sws.prevKV[id], so the first catch-up can go out without prev_kv; and it deletes the flag once a cancel is processed while events already queued for the watcher are still sent, so the events that arrive after the client asked to cancel can lack prev_kv too",
};

export interface Violation {
  readonly check: string;
  readonly detail: string;
  /** Set when this is a known defect of the target, not counted as a violation. */
  readonly known?: KnownDefect;
}

/**
 * Every written value is unique, so the watch from revision 1 settles most writes whose outcome is
 * unknown (DESIGN section 7's advice). A put or CAS whose value never shows up there did not take
 * effect and is dropped (a CAS that failed changed nothing either). One whose value does show up
 * took effect, and before the watch received it: it becomes a completed op returning then, which
 * spares the search a fork at every step until the end. An unknown delete with no delete event of
 * its key received after its call changed nothing (a delete of an absent key has no event) and is
 * dropped too. Dropping needs a watch that saw everything: no errors, drained to the sentinel
 * written after the final reads, and the final reads find every key as its last event left it;
 * otherwise the unseen stay unknown.
 */
export function settleUnknownWrites(rec: Recorded): KvOperation[] {
  if (rec.watchErrors.length > 0 || rec.watchEvents.length === 0) return rec.ops;
  const putAt = new Map<string, number>();
  const lastDeleteAt = new Map<string, number>();
  const lastValue = new Map<string, string | null>();
  for (const e of rec.watchEvents) {
    if (e.type === 'put') putAt.set(`${e.key}=${e.value}`, e.at);
    else lastDeleteAt.set(e.key, Math.max(lastDeleteAt.get(e.key) ?? -Infinity, e.at));
    lastValue.set(e.key, e.type === 'put' ? e.value : null);
  }
  // What the watch saw happened, whatever else it missed; what it did not see never happened only
  // if it saw everything.
  const complete = rec.watchComplete !== false && watchReachedFinalReads(rec, lastValue);
  const out: KvOperation[] = [];
  for (const op of rec.ops) {
    const i = op.input;
    if (op.ret !== undefined || i.kind === 'get') {
      out.push(op);
    } else if (i.kind === 'delete') {
      if (!complete || (lastDeleteAt.get(i.key) ?? -Infinity) > op.call) out.push(op);
    } else {
      const at = putAt.get(`${i.key}=${i.value}`);
      if (at === undefined) {
        if (!complete) out.push(op);
        continue;
      }
      const output: KvOutput = i.kind === 'put' ? { kind: 'put' } : { kind: 'cas', ok: true };
      // Received after its call by causality; the max only keeps the search's input valid if not.
      out.push({ ...op, output, ret: Math.max(at, op.call) });
    }
  }
  return out;
}

/**
 * The final reads (client -1, once everything is healed) must find each key as the watch left it.
 * If one does not, writes took effect after the watch's last event (a cluster down for the end of
 * a run acknowledges nothing, so the drain had nothing to wait for, yet it applied writes of
 * unknown outcome once healed): the watch did not see everything, and what it did not see cannot
 * be taken as never having happened.
 */
function watchReachedFinalReads(rec: Recorded, lastValue: ReadonlyMap<string, string | null>): boolean {
  for (const op of rec.ops) {
    if (op.client !== -1 || op.output?.kind !== 'get') continue;
    if (op.output.value !== (lastValue.get(op.input.key) ?? null)) return false;
  }
  return true;
}

/** Linearizability of the KV history, per key (unknown outcomes may or may not have happened). */
export function checkLinearizable(rec: Recorded, maxSteps = 5_000_000): Violation[] {
  const r = checkOperations(registerModel, settleUnknownWrites(rec), { maxSteps });
  if (r.ok === true) return [];
  if (r.ok === 'unknown') return [{ check: 'linearizability (undecided)', detail: r.message }];
  return [{ check: 'linearizability', detail: r.message }];
}

/** A client's acknowledged operations never see the store's revision go back. */
export function checkRevisionsMonotonic(rec: Recorded): Violation[] {
  const out: Violation[] = [];
  rec.revisions.forEach((revs, client) => {
    for (let i = 1; i < revs.length; i++) {
      if (revs[i]! < revs[i - 1]!) {
        out.push({ check: 'revision went back', detail: `client ${client}: revision ${revs[i - 1]} then ${revs[i]}` });
        break;
      }
    }
  });
  return out;
}

/**
 * The watch from revision 1: events in revision order, none twice, prev_kv equal to the key's
 * previous event, and every acknowledged write there with the revision it was acknowledged at.
 */
export function checkWatch(rec: Recorded, tolerate: ReadonlySet<KnownDefect> = new Set()): Violation[] {
  const out: Violation[] = [];
  const seen = new Set<string>();
  const last = new Map<string, string | null>();
  let prevRev = 0;
  for (const e of rec.watchEvents) {
    const id = `${e.key}@${e.modRevision}`;
    if (seen.has(id)) out.push({ check: 'watch: duplicate event', detail: `${e.type} ${id}` });
    seen.add(id);
    if (e.modRevision < prevRev) out.push({ check: 'watch: out of order', detail: `revision ${e.modRevision} after ${prevRev}` });
    prevRev = Math.max(prevRev, e.modRevision);
    const before = last.get(e.key) ?? null;
    if ((e.prevValue ?? null) !== before) {
      const known = prevKvRace(e, before, tolerate);
      out.push({ check: 'watch: prev_kv', detail: `${e.type} ${id}: prev_kv ${JSON.stringify(e.prevValue)}, previous event left ${JSON.stringify(before)}`, ...known });
    }
    last.set(e.key, e.type === 'put' ? e.value : null);
  }
  out.push(...checkRevisionsWhole(rec.watchEvents, 'the watch from 1'));
  const events = new Map(rec.watchEvents.filter((e) => e.type === 'put').map((e) => [`${e.key}@${e.modRevision}`, e.value]));
  const around = (rev: number): string => {
    const before = rec.watchEvents.filter((e) => e.modRevision < rev).at(-1)?.modRevision;
    const after = rec.watchEvents.find((e) => e.modRevision > rev)?.modRevision;
    return `events before and after it at ${before ?? 'none'} and ${after ?? 'none'}; last event at ${prevRev}; the watch was created ${rec.watchReconnects} times`;
  };
  for (const w of rec.ackedWrites) {
    const got = events.get(`${w.key}@${w.revision}`);
    if (got !== w.value) {
      out.push({ check: 'watch: acknowledged write missing', detail: `${w.key}=${w.value} at revision ${w.revision}: the watch has ${JSON.stringify(got)} (${around(w.revision)})` });
    }
  }
  return capped(out);
}

/**
 * A lease's key is there for every read that ended before the grant began + TTL (and before a
 * revoke was sent), and gone for every read that began after an acknowledged revoke returned.
 */
export function checkLeases(rec: Recorded): Violation[] {
  const out: Violation[] = [];
  for (const l of rec.leases) {
    const revokeCall = l.revoked?.call ?? Infinity;
    const revokeRet = l.revoked?.ret ?? Infinity;
    for (const r of l.reads) {
      if (!r.present && r.ret < l.grantCall + l.ttl * 1000 && r.ret < revokeCall) {
        out.push({ check: 'lease expired early', detail: `${l.key} (TTL ${l.ttl}s) gone at a read ending ${(r.ret - l.grantCall).toFixed(0)} ms after the grant began` });
        break;
      }
      if (r.present && r.call > revokeRet) {
        out.push({ check: 'revoked lease kept its key', detail: `${l.key} still there at a read beginning ${(r.call - revokeRet).toFixed(0)} ms after its revoke was acknowledged` });
        break;
      }
    }
  }
  return out;
}

/** The events of one revision came in one response (a txn's writes are seen together or not at all). */
export function checkRevisionsWhole(events: readonly WatchEvent[], which: string): Violation[] {
  for (let i = 1; i < events.length; i++) {
    const a = events[i - 1]!;
    const b = events[i]!;
    if (a.modRevision === b.modRevision && a.response !== undefined && a.response !== b.response) {
      return [{ check: 'watch: a revision split across responses', detail: `${which}: revision ${b.modRevision} (${a.key} in response ${a.response}, ${b.key} in ${b.response})` }];
    }
  }
  return [];
}

/**
 * A watch from any revision gets exactly the main watch's events from there (as far as the main
 * watch reached): none missing, none extra, same values and prev_kv.
 */
export function checkResumedWatches(rec: Recorded, tolerate: ReadonlySet<KnownDefect> = new Set()): Violation[] {
  const out: Violation[] = [];
  const mainLast = rec.watchEvents.at(-1)?.modRevision ?? 0;
  const show = (e: WatchEvent | undefined): string => (e === undefined ? 'nothing' : `${e.type} ${e.key}=${e.value}@${e.modRevision} prev ${JSON.stringify(e.prevValue)}`);
  for (const w of rec.resumedWatches) {
    out.push(...checkRevisionsWhole(w.events, `the watch from ${w.from}`));
    const got = w.events.filter((e) => e.modRevision <= mainLast);
    if (got.length === 0) continue;
    const last = got.at(-1)!.modRevision;
    const want = rec.watchEvents.filter((e) => e.modRevision >= w.from && e.modRevision <= last);
    const n = Math.max(got.length, want.length);
    let knownSeen = false;
    for (let i = 0; i < n; i++) {
      const [g, x] = [got[i], want[i]];
      if (show(g) === show(x)) continue;
      const detail = `from ${w.from}, event ${i}: got ${show(g)}, the watch from 1 has ${show(x)}`;
      const known = g !== undefined && x !== undefined && show({ ...g, prevValue: x.prevValue }) === show(x) ? prevKvRace(g, x.prevValue, tolerate) : {};
      // Past a known defect the rest is still checked (once per watch is enough to report it);
      // past a real difference the rest would only repeat it.
      if (known.known === undefined) {
        out.push({ check: 'watch from a revision', detail });
        break;
      }
      if (!knownSeen) out.push({ check: 'watch from a revision', detail, ...known });
      knownSeen = true;
    }
  }
  return capped(out);
}

/** The first 20 violations and the first 20 known defects: enough to read, and one never hides the other. */
function capped(out: readonly Violation[]): Violation[] {
  return [...out.filter((v) => v.known === undefined).slice(0, 20), ...out.filter((v) => v.known !== undefined).slice(0, 20)];
}

/**
 * An event that should carry prev_kv but has none, in the first response after its watch was
 * (re)created or after the client asked to cancel it: the signature of etcd 3.4's race, if the
 * target is one that has it.
 */
function prevKvRace(e: WatchEvent, want: string | null | undefined, tolerate: ReadonlySet<KnownDefect>): { known?: KnownDefect } {
  const atEdge = e.fresh || e.cancelling === true;
  const race = tolerate.has('etcd-prev-kv-race') && atEdge && (e.prevValue ?? null) === null && (want ?? null) !== null;
  return race ? { known: 'etcd-prev-kv-race' } : {};
}

export function checkAll(rec: Recorded, tolerate: ReadonlySet<KnownDefect> = new Set()): Violation[] {
  return [...checkLinearizable(rec), ...checkRevisionsMonotonic(rec), ...checkWatch(rec, tolerate), ...checkResumedWatches(rec, tolerate), ...checkLeases(rec)];
}
