import t from 'tap';
import {
  ConfChangeType,
  EntryType,
  MemoryStorage,
  MessageType,
  RaftError,
  RawNode,
  type Message,
} from '../src/index.js';
import { Net } from './helpers/net.js';

const text = (s: string) => new TextEncoder().encode(s);

t.test('a single node elects itself and commits only after its own fsync', async (t) => {
  const net = new Net([1]);
  net.elect(1);
  t.same(net.leaders(), [1]);
  const n = net.node(1);
  n.rn.propose(text('a'));
  net.stalled.add(1);
  const rd = n.rn.ready();
  t.equal(rd.entries.length, 1, 'the proposal is handed out to persist');
  t.equal(rd.committedEntries.length, 0, 'but not committed before it is durable');
  t.equal(n.rn.status().commit, rd.entries[0]!.index - 1);
  n.storage.append(rd.entries);
  n.rn.advance(rd);
  t.equal(n.rn.status().commit, rd.entries[0]!.index, 'committed once advance reports it durable');
  net.stalled.clear();
  net.settle();
  t.same(net.appliedText(1), ['a']);
});

t.test('three nodes elect one leader and replicate in order', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  t.same(net.leaders(), [1]);
  const term = net.node(1).rn.status().term;
  for (const id of [2, 3]) {
    t.equal(net.node(id).rn.status().lead, 1);
    t.equal(net.node(id).rn.status().term, term);
    t.equal(net.node(id).rn.term, term, 'the term getter agrees with status()');
  }
  for (const s of ['a', 'b', 'c']) t.equal(net.propose(1, s), undefined);
  t.equal(net.propose(2, 'd'), undefined, 'a follower forwards to the leader');
  for (const id of [1, 2, 3]) t.same(net.appliedText(id), ['a', 'b', 'c', 'd'], `node ${id} applied all`);
});

t.test('a proposal with no leader is dropped with a typed error', async (t) => {
  const net = new Net([1, 2, 3]);
  t.equal(net.propose(2, 'x'), RaftError.ProposalDropped);
});

t.test('the leader counts itself only after persisting', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.isolate(3);
  net.stalled.add(1);
  net.node(1).rn.propose(text('x'));
  // Let the leader send its appends without persisting: sending in parallel is allowed.
  const rd = net.node(1).rn.ready();
  for (const m of rd.messages) net.queue.push(m);
  net.settle();
  t.equal(net.node(2).storage.lastIndex(), rd.entries[0]!.index, 'follower 2 persisted the entry');
  t.ok(net.node(1).rn.status().commit < rd.entries[0]!.index, 'one follower plus an unpersisted leader is no quorum');
  net.node(1).storage.append(rd.entries);
  net.node(1).rn.advance(rd);
  t.equal(net.node(1).rn.status().commit, rd.entries[0]!.index, 'committed once the leader persisted');
  net.stalled.clear();
  net.settle();
});

t.test('a leader writing behind: committed by the followers alone, counted only once persisted', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  const leader = net.node(1);
  net.stalled.add(1);
  leader.rn.propose(text('x'));
  const rd = leader.rn.ready();
  const e = rd.entries[0]!;
  t.equal(rd.writeBehind, true, 'a steady leader may write in the background');
  t.equal(rd.entries.length, 1);
  for (const m of rd.messages) net.queue.push(m);
  leader.rn.advanceApplied(rd);
  t.notOk(leader.rn.hasReady(), 'the entry being written is not handed out again');
  // Hold node 3's acknowledgement back.
  const held: Message[] = [];
  net.filter = (m) => (m.from === 3 && m.to === 1 ? (held.push(m), false) : true);
  net.settle();
  t.ok(held.some((m) => m.type === MessageType.AppResp), 'node 3 acknowledged');
  t.ok(leader.rn.status().commit < e.index, 'one follower plus a leader still writing is no quorum');
  net.filter = () => true;
  for (const m of held) leader.rn.step(m);
  t.equal(leader.rn.status().commit, e.index, 'both followers have it on disk: committed without the leader');
  const rd2 = leader.rn.ready();
  t.same(rd2.entries, [], 'still nothing to write twice');
  t.same(rd2.committedEntries.map((c) => c.index), [e.index], 'applied before the leader persisted it');
  t.equal(rd2.writeBehind, true);
  leader.rn.advanceApplied(rd2);
  t.equal(leader.rn.status().progress?.get(1)?.match, e.index - 1, 'the leader does not count itself yet');
  leader.storage.append(rd.entries);
  leader.rn.persisted(e.index, e.term);
  t.equal(leader.rn.status().progress?.get(1)?.match, e.index, 'it counts itself once its write completes');
  for (const m of rd2.messages) net.queue.push(m);
  net.stalled.clear();
  net.settle();
  for (const id of [2, 3]) t.same(net.appliedText(id), ['x'], `node ${id} applied it`);
});

t.test('a Ready that changes role or term is never written behind, nor a follower\'s', async (t) => {
  const net = new Net([1, 2, 3]);
  net.stalled.add(1);
  net.node(1).rn.campaign();
  const rd = net.node(1).rn.ready();
  t.equal(rd.writeBehind, false, 'a candidate\'s vote for itself must be durable before it asks');
  net.stalled.clear();
  for (const m of rd.messages) net.queue.push(m);
  net.node(1).storage.setHardState(rd.hardState!);
  net.node(1).rn.advance(rd);
  net.settle();
  t.same(net.leaders(), [1]);
  net.stalled.add(2);
  net.node(1).rn.propose(text('y'));
  net.settle();
  const f = net.node(2).rn.ready();
  t.equal(f.entries.length, 1, 'the follower got the entry');
  t.equal(f.writeBehind, false, 'its acknowledgement promises the entry is on its disk');
});

t.test('an entry being written that a new leader replaces is handed out again', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  const old = net.node(1);
  net.stalled.add(1);
  net.isolate(1);
  old.rn.propose(text('lost'));
  const rd = old.rn.ready();
  const lost = rd.entries[0]!;
  old.rn.advanceApplied(rd);
  net.tick([2, 3], 10); // their leader lease runs out
  net.node(2).rn.campaign();
  net.settle();
  t.same(net.leaders().filter((id) => id !== 1), [2], 'node 2 leads the others');
  t.equal(net.propose(2, 'kept'), undefined);
  net.heal();
  net.tick([2], 1);
  t.equal(old.rn.status().lead, 2, 'the old leader heard the new one and follows');
  // Node 1 drives by hand from here: its role change, then the new leader's append.
  const rdA = old.rn.ready();
  t.equal(rdA.writeBehind, false);
  if (rdA.hardState) old.storage.setHardState(rdA.hardState);
  for (const m of rdA.messages) net.queue.push(m);
  old.rn.advance(rdA);
  net.settle();
  const rd2 = old.rn.ready();
  const replaced = rd2.entries.find((x) => x.index === lost.index);
  t.ok(replaced !== undefined && replaced.term > lost.term, 'the new leader\'s entry at that index is handed out to write');
  // The old write completes late: it must not count for the entries that replaced it.
  old.storage.append(rd.entries);
  old.rn.persisted(lost.index, lost.term);
  old.storage.append(rd2.entries);
  if (rd2.hardState) old.storage.setHardState(rd2.hardState);
  for (const m of rd2.messages) net.queue.push(m);
  old.rn.advance(rd2);
  net.stalled.clear();
  net.settle();
  t.equal(old.storage.term(lost.index), replaced!.term, 'node 1 holds the new leader\'s entry');
  t.ok(net.appliedText(2).includes('kept'));
  t.notOk(net.appliedText(2).includes('lost'), 'the entry written behind but never committed is gone');
});

t.test('entries of an earlier term are committed only by counting one of this term', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  // Node 1 appends an entry that reaches nobody, then node 2 takes over.
  net.isolate(1);
  net.propose(1, 'old');
  const oldIndex = net.node(1).storage.lastIndex();
  net.tick([1], 25); // check-quorum: it steps down
  net.heal();
  net.tick([2, 3], 10); // their leader lease runs out, just short of their own election timeouts
  // Node 1 campaigns again at a higher term; hold its appends so we can forge replies.
  net.filter = (m) => m.type !== MessageType.App;
  net.node(1).rn.campaign();
  net.settle();
  t.same(net.leaders(), [1]);
  const st = net.node(1).rn.status();
  const noop = st.lastIndex;
  t.equal(noop, oldIndex + 1, 'the new term starts with a no-op after the old entry');
  // Followers acknowledge the old entry only: it must not commit.
  for (const from of [2, 3]) {
    net.node(1).rn.step({ type: MessageType.AppResp, from, to: 1, term: st.term, index: oldIndex, reject: false, rejectHint: 0, logTerm: 0 });
  }
  net.settle();
  t.ok(net.node(1).rn.status().commit < oldIndex, 'a quorum holding an old-term entry does not commit it');
  net.node(1).rn.step({ type: MessageType.AppResp, from: 2, to: 1, term: st.term, index: noop, reject: false, rejectHint: 0, logTerm: 0 });
  net.settle();
  t.equal(net.node(1).rn.status().commit, noop, 'committing the no-op commits the old entry with it');
});

t.test('a follower with a divergent log is repaired with few probes', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.propose(1, 'base');
  // Node 3 leads alone for a while in several terms, writing entries nobody else gets.
  net.isolate(3);
  for (let term = 0; term < 5; term++) {
    net.node(3).rn.campaign();
    net.settle();
    for (let i = 0; i < 20; i++) net.node(3).rn.propose(text(`lost-${term}-${i}`));
    net.settle();
  }
  net.heal();
  net.isolate(3);
  for (let i = 0; i < 10; i++) net.propose(1, `kept-${i}`);
  net.heal();
  net.delivered = [];
  net.propose(1, 'last');
  const rejects = net.delivered.filter((m) => m.type === MessageType.AppResp && m.reject && m.from === 3).length;
  t.ok(rejects <= 3, `repaired in ${rejects} rejections, not one per entry`);
  const want = ['base', ...Array.from({ length: 10 }, (_, i) => `kept-${i}`), 'last'];
  for (const id of [1, 2, 3]) t.same(net.appliedText(id), want, `node ${id} converged on the leader's log`);
});

t.test('pre-vote: a partitioned node does not raise its term nor disrupt the leader', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  const term = net.node(1).rn.status().term;
  net.isolate(3);
  net.tick([3], 100);
  t.equal(net.node(3).rn.status().term, term, 'pre-votes never won, so the term stayed');
  net.heal();
  net.tickAll(5);
  t.same(net.leaders(), [1], 'the leader survived the rejoin');
  t.equal(net.node(1).rn.status().term, term);
});

t.test('check-quorum: a leader cut off from the quorum steps down', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.isolate(1);
  net.tick([1], 25);
  t.equal(net.node(1).rn.status().role, 'follower');
});

t.test('a follower in its leader lease ignores a disruptive vote', async (t) => {
  const net = new Net([1, 2, 3], { preVote: false });
  net.elect(1);
  const term = net.node(1).rn.status().term;
  net.node(2).rn.step({ type: MessageType.Vote, from: 3, to: 2, term: term + 5, index: 1000, logTerm: term + 4, transfer: false });
  t.equal(net.node(2).rn.status().term, term, 'the vote was ignored: the follower heard its leader recently');
});

t.test('ReadIndex: one heartbeat round serves a batch of reads', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.propose(1, 'w');
  const commit = net.node(1).rn.status().commit;
  net.delivered = [];
  for (let i = 0; i < 10; i++) net.node(1).rn.readIndex(text(`r${i}`));
  net.settle();
  const rounds = net.delivered.filter((m) => m.type === MessageType.Heartbeat && m.readRound > 0);
  t.equal(rounds.length, 2, 'one heartbeat to each follower for all ten reads');
  const rs = net.node(1).readStates;
  t.equal(rs.length, 10);
  t.ok(rs.every((r) => r.index === commit), 'every read is served at the commit index');
  t.same(rs.map((r) => new TextDecoder().decode(r.context)), Array.from({ length: 10 }, (_, i) => `r${i}`), 'in order');
});

t.test('ReadIndex: a leader without a quorum confirms nothing', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.isolate(1);
  net.node(1).rn.readIndex(text('r'));
  net.tick([1], 3);
  t.equal(net.node(1).readStates.length, 0);
});

t.test('ReadIndex: a follower forwards to the leader and gets the index back', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.propose(1, 'w');
  net.node(3).rn.readIndex(text('f'));
  net.settle();
  const rs = net.node(3).readStates;
  t.equal(rs.length, 1);
  t.equal(rs[0]!.index, net.node(1).rn.status().commit);
});

t.test('ReadIndex: a new leader waits until an entry of its term commits', async (t) => {
  const net = new Net([1, 2, 3]);
  net.filter = (m) => m.type !== MessageType.AppResp;
  net.elect(1);
  net.node(1).rn.readIndex(text('early'));
  net.settle();
  t.equal(net.node(1).readStates.length, 0, 'postponed: the commit index may still be behind');
  net.filter = () => true;
  net.tickAll(2);
  t.equal(net.node(1).readStates.length, 1, 'served once the no-op committed');
  t.equal(net.node(1).readStates[0]!.index, net.node(1).rn.status().commit);
});

t.test('leader transfer hands leadership to a caught-up follower', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.propose(1, 'a');
  net.node(1).rn.transferLeader(3);
  net.settle();
  t.same(net.leaders(), [3]);
  t.equal(net.propose(2, 'b'), undefined);
  for (const id of [1, 2, 3]) t.same(net.appliedText(id), ['a', 'b']);
});

t.test('leader transfer to a lagging follower catches it up first; proposals wait', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.isolate(3);
  for (let i = 0; i < 5; i++) net.propose(1, `e${i}`);
  net.heal();
  net.filter = (m) => !(m.to === 3 && m.type === MessageType.App);
  net.node(1).rn.transferLeader(3);
  net.settle();
  t.equal(net.propose(1, 'during'), RaftError.ProposalDropped, 'proposals are refused while transferring');
  net.filter = () => true;
  net.tickAll(1);
  t.same(net.leaders(), [3]);
});

t.test('membership: add a learner, it catches up without voting, then is promoted', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.propose(1, 'a');
  t.equal(net.node(1).rn.proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 4 }), undefined);
  net.add(4);
  net.settle();
  t.same(net.node(1).rn.status().confState.learners, [4]);
  net.propose(1, 'b');
  t.same(net.appliedText(4), ['a', 'b'], 'the learner replicated the whole log');
  net.node(4).rn.campaign();
  net.settle();
  t.same(net.leaders(), [1], 'a learner cannot campaign');
  t.equal(net.node(1).rn.proposeConfChange({ type: ConfChangeType.AddNode, nodeId: 4 }), undefined);
  net.settle();
  t.same(net.node(4).rn.status().confState.voters, [1, 2, 3, 4]);
  net.isolate(2);
  net.isolate(3);
  net.heal();
  net.isolate(2);
  t.equal(net.propose(1, 'c'), undefined);
  t.same(net.appliedText(4), ['a', 'b', 'c'], 'the promoted member counts toward a quorum of 3 of 4');
});

t.test('membership: one change at a time', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.propose(1, 'x');
  net.stalled.add(2);
  net.stalled.add(3);
  t.equal(net.node(1).rn.proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 4 }), undefined);
  t.equal(
    net.node(1).rn.proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 5 }),
    RaftError.ProposalDropped,
    'a second change is refused while the first is pending',
  );
  t.equal(
    net.node(1).rn.proposeConfChange({ type: ConfChangeType.RemoveNode, nodeId: 9 }),
    RaftError.ProposalDropped,
  );
  net.stalled.clear();
  net.settle();
  t.equal(net.node(1).rn.proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 5 }), undefined, 'allowed once applied');
});

t.test('membership: a removed leader steps down and the rest elect a new one', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.propose(1, 'x');
  t.equal(net.node(1).rn.proposeConfChange({ type: ConfChangeType.RemoveNode, nodeId: 1 }), undefined);
  net.settle();
  t.not(net.node(1).rn.status().role, 'leader');
  t.same(net.node(2).rn.status().confState.voters, [2, 3]);
  net.nodes.delete(1);
  net.tickAll(30);
  t.equal(net.leaders().length, 1);
  const leader = net.leaders()[0]!;
  t.equal(net.propose(leader, 'y'), undefined);
  t.same(net.appliedText(2).slice(-1), ['y']);
});

t.test('snapshots: a follower behind a compacted log is sent a snapshot and catches up', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.isolate(3);
  for (let i = 0; i < 20; i++) net.propose(1, `e${i}`);
  const leader = net.node(1);
  const applied = leader.rn.status().applied;
  leader.storage.createSnapshot(applied, leader.rn.status().confState, text('image'));
  leader.storage.compact(applied);
  net.heal();
  net.delivered = [];
  net.tickAll(3);
  const snaps = net.delivered.filter((m) => m.type === MessageType.Snap && m.to === 3);
  t.equal(snaps.length, 1, 'exactly one snapshot sent');
  t.equal(net.node(3).storage.firstIndex(), applied + 1, 'the follower installed it');
  net.node(1).rn.reportSnapshot(3, true);
  net.propose(1, 'after');
  t.same(net.appliedText(3), ['after'], 'and replicates normally after it');
  t.equal(net.node(3).rn.status().commit, net.node(1).rn.status().commit);
});

t.test('a restarted node recovers term, vote and log from storage', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.propose(1, 'a');
  const before = net.node(2).rn.status();
  const storage = net.node(2).storage;
  const n = net.add(2, storage);
  const after = n.rn.status();
  t.equal(after.term, before.term);
  t.equal(after.vote, before.vote);
  t.equal(after.lastIndex, before.lastIndex);
  net.settle();
  t.same(net.appliedText(2), ['a'], 'committed entries are handed out again after a restart');
});

t.test('messages from strangers and misaddressed messages are refused', async (t) => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  const rn = net.node(1).rn;
  const resp: Message = { type: MessageType.AppResp, from: 9, to: 1, term: rn.status().term, index: 1, reject: false, rejectHint: 0, logTerm: 0 };
  t.equal(rn.step(resp), RaftError.StepPeerNotFound);
  t.equal(rn.step({ ...resp, from: 2, to: 7 }), RaftError.StepLocalMsg);
});

t.test('invalid configuration is refused at construction', async (t) => {
  const storage = new MemoryStorage();
  t.throws(() => new RawNode({ id: 0, storage, electionTick: 10, heartbeatTick: 1, random: () => 0 }));
  t.throws(() => new RawNode({ id: 1, storage, electionTick: 1, heartbeatTick: 1, random: () => 0 }));
});

t.test('maxSizePerMsg bounds each append; the inflight window bounds how many are in flight', async (t) => {
  const net = new Net([1, 2], { maxSizePerMsg: 100, maxInflightMsgs: 2 });
  net.elect(1);
  net.filter = (m) => m.type !== MessageType.AppResp;
  net.delivered = [];
  for (let i = 0; i < 20; i++) net.node(1).rn.propose(new Uint8Array(60));
  net.settle();
  const apps = net.delivered.filter((m) => m.type === MessageType.App && m.entries.length > 0);
  t.ok(apps.every((m) => m.type === MessageType.App && m.entries.length <= 2), 'no append carries more than fits in 100 bytes (or one entry)');
  t.ok(apps.length <= 2, `at most 2 appends in flight without acknowledgements (saw ${apps.length})`);
  net.filter = () => true;
  net.tickAll(3);
  t.equal(net.node(2).applied.filter((e) => e.type === EntryType.Normal && e.data.byteLength === 60).length, 20, 'all arrive once acks flow');
});
