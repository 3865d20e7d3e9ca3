// Raft message batches on the peer stream: every kind round-trips, a snapshot batch goes as
// msgpack, and garbled bytes are an error value, never an exception or a view past the batch.
import t from 'tap';
import { EntryType, MessageType, type Message } from '@capstan/raft';
import { decodeMessages, encodeMessages, packr, PeerCodecError } from '../src/peercodec.js';
import { FRAME_HEADER_BYTES, sealFrame } from '../src/raftstream.js';

const env = { from: 0x1f_ffff_ffff_ffff, to: 3, term: 7 };
const bytes = (s: string): Buffer => Buffer.from(s);

const every: Message[] = [
  {
    ...env,
    type: MessageType.App,
    index: 41,
    logTerm: 6,
    commit: 40,
    entries: [
      { term: 7, index: 42, type: EntryType.Normal, data: bytes('put k v') },
      { term: 7, index: 43, type: EntryType.ConfChange, data: bytes('cc') },
      { term: 7, index: 44, type: EntryType.Normal, data: new Uint8Array(0) },
    ],
  },
  { ...env, type: MessageType.App, index: 44, logTerm: 7, commit: 44, entries: [] },
  { ...env, type: MessageType.AppResp, index: 44, reject: true, rejectHint: 12, logTerm: 5 },
  { ...env, type: MessageType.AppResp, index: 44, reject: false, rejectHint: 0, logTerm: 0 },
  { ...env, type: MessageType.Vote, index: 9, logTerm: 2, transfer: true },
  { ...env, type: MessageType.PreVote, index: 9, logTerm: 2, transfer: false },
  { ...env, type: MessageType.VoteResp, reject: false },
  { ...env, type: MessageType.PreVoteResp, reject: true },
  { ...env, type: MessageType.Heartbeat, commit: 2 ** 40, readRound: 3 },
  { ...env, type: MessageType.HeartbeatResp, readRound: 3 },
  { ...env, type: MessageType.Prop, entries: [{ type: EntryType.Normal, data: bytes('p') }] },
  { ...env, type: MessageType.ReadIndex, context: bytes('ctx-1') },
  { ...env, type: MessageType.ReadIndexResp, index: 44, context: bytes('ctx-1') },
  { ...env, type: MessageType.TransferLeader },
  { ...env, type: MessageType.TimeoutNow },
];

/** Messages as plain data, byte fields as hex (read before a Buffer's toJSON), so msgpack's and ours compare alike. */
function plain(msgs: readonly Message[]): unknown {
  return JSON.parse(
    JSON.stringify(msgs, function (this: Record<string, unknown>, k: string, v: unknown) {
      const raw = this[k];
      return raw instanceof Uint8Array ? Buffer.from(raw).toString('hex') : v;
    }),
  );
}

t.test('every message kind comes back as it was sent, in one batch and alone', async (t) => {
  const batch = encodeMessages(every);
  t.equal(batch[0], 0xc1, 'binary, not msgpack');
  const back = decodeMessages(batch);
  if (back instanceof Error) throw back;
  t.same(plain(back), plain(every));
  for (const m of every) t.same(plain(decodeMessages(encodeMessages([m])) as Message[]), plain([m]), m.type);
  t.same(decodeMessages(encodeMessages([])), [], 'an empty batch');
});

t.test('a batch with a snapshot goes as msgpack and comes back the same', async (t) => {
  const snap: Message = {
    ...env,
    type: MessageType.Snap,
    snapshot: { metadata: { index: 100, term: 7, confState: { voters: [1, 2, 3], learners: [] } }, data: bytes('store') },
  };
  const batch = encodeMessages([every[0]!, snap]);
  t.not(batch[0], 0xc1);
  t.same(plain(decodeMessages(batch) as Message[]), plain([every[0]!, snap]));
  // What a member of the previous build sends (all msgpack) is still read.
  t.same(plain(decodeMessages(packr.pack(every)) as Message[]), plain(every));
});

t.test('the frame header is left for the stream, and the payload after it decodes', async (t) => {
  const frame = sealFrame(encodeMessages(every, FRAME_HEADER_BYTES));
  t.equal(frame.readUInt32BE(0), frame.length - FRAME_HEADER_BYTES);
  t.same(plain(decodeMessages(frame.subarray(FRAME_HEADER_BYTES)) as Message[]), plain(every));
});

t.test("entries' bytes are views into the batch, not copies", async (t) => {
  const batch = encodeMessages([every[0]!]);
  const app = (decodeMessages(batch) as Message[])[0]!;
  if (app.type !== MessageType.App) throw new Error(app.type);
  const data = app.entries[0]!.data;
  t.equal(data.buffer, batch.buffer);
  t.equal(Buffer.from(data).toString(), 'put k v');
});

t.test('garbled batches are errors, wherever they are cut or changed', async (t) => {
  const batch = encodeMessages(every);
  let errors = 0;
  for (let n = 0; n < batch.length; n++) {
    const r = decodeMessages(batch.subarray(0, n));
    if (r instanceof PeerCodecError) errors++;
    else t.fail(`cut at ${n} decoded`);
  }
  t.equal(errors, batch.length, 'every cut');
  t.match(decodeMessages(Buffer.concat([batch, Buffer.of(0)])), /1 bytes after the last message/);

  const kind = Buffer.from(encodeMessages([every[2]!]));
  kind[5] = 200;
  t.match(decodeMessages(kind), /unknown message kind 200/);

  const entryType = Buffer.from(encodeMessages([every[0]!]));
  // batch byte, count, kind, 3 envelope numbers, index, logTerm, commit, entry count, then the entry's term and index.
  entryType[1 + 4 + 1 + 3 * 8 + 3 * 8 + 4 + 16] = 9;
  t.match(decodeMessages(entryType), /unknown entry type 9/);

  const count = Buffer.from(encodeMessages([every[0]!]));
  count.writeUInt32LE(0xffff_ffff, 1);
  t.match(decodeMessages(count), /batch of 4294967295 messages/);

  const entries = Buffer.from(encodeMessages([every[0]!]));
  entries.writeUInt32LE(0x0fff_ffff, 1 + 4 + 1 + 3 * 8 + 3 * 8);
  t.match(decodeMessages(entries), /268435455 items/);

  const data = Buffer.from(encodeMessages([every[0]!]));
  data.writeUInt32LE(1 << 30, 1 + 4 + 1 + 3 * 8 + 3 * 8 + 4 + 17);
  t.match(decodeMessages(data), /cut short/);

  t.match(decodeMessages(Buffer.alloc(0)), /empty batch/);
  t.match(decodeMessages(Buffer.from([0xd9, 0x05])), /msgpack batch/);
  t.match(decodeMessages(packr.pack({ not: 'a batch' })), /not a batch/);
});
