// Proposals as entry data: a put written field by field reads back as the same request msgpack
// would have given the state machine; everything else, and entries of the msgpack-only format,
// still read; a garbled put is an error value.
import t from 'tap';
import type { ApplyRequest } from '@capstan/mvcc';
import { packr } from '../src/peercodec.js';
import { decodeProposal, encodeProposal, ProposalError, type Proposal } from '../src/proposal.js';

const ref = { o: 0xffff_ffff_ffff, g: 4_000_000_001, i: 2 ** 40 + 3 };
const header = { username: 'ünïcødé-user', authRevision: 17 };
const key = Buffer.from('some/key');
const value = Buffer.from('the value');

const puts: ApplyRequest[] = [
  { header, put: { key, value, lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } },
  { header, put: { key, value, lease: 0x7fff_ffff_ffff_ffffn, prevKv: true, ignoreValue: false, ignoreLease: true } },
  { header, put: { key, ignoreValue: true } },
  { header: { username: '', authRevision: 0 }, put: { key: Buffer.alloc(0), value: Buffer.alloc(0) } },
  { header, put: { key, value: Buffer.alloc(100_000, 1), lease: -5n } },
];

/** What the state machine would get from the msgpack form of the same proposal. */
function viaMsgpack(p: Proposal): unknown {
  return plain(packr.unpack(packr.pack(p)));
}

function plain(v: unknown): unknown {
  return JSON.parse(
    JSON.stringify(v, function (this: Record<string, unknown>, k: string, x: unknown) {
      const raw = this[k];
      if (raw instanceof Uint8Array) return `bytes:${Buffer.from(raw).toString('hex')}`;
      return typeof raw === 'bigint' ? `bigint:${raw}` : x;
    }),
  );
}

t.test('a put reads back as msgpack would have given it, field by field', async (t) => {
  for (const [n, r] of puts.entries()) {
    const p: Proposal = { ...ref, r };
    const bytes = encodeProposal(p);
    t.equal(bytes[0], 0xc1, `put ${n} is not msgpack`);
    const back = decodeProposal(bytes);
    if (back instanceof Error) throw back;
    t.same(plain(back), viaMsgpack(p), `put ${n}`);
    // Raft hands out entries' data as plain Uint8Arrays too.
    t.same(plain(decodeProposal(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length))), viaMsgpack(p), `put ${n}, from a Uint8Array`);
  }
});

t.test('everything else is msgpack, and reads back', async (t) => {
  const others: Proposal[] = [
    { ...ref, r: { header, deleteRange: { key, rangeEnd: value } } },
    { ...ref, r: { put: { key, value } } },
    { ...ref, r: { header, put: { key, value }, txn: { compare: [], success: [], failure: [] } } },
    { ...ref, a: { id: 7n, name: 'm1', clientURLs: ['http://127.0.0.1:1'] } },
  ];
  for (const p of others) {
    const bytes = encodeProposal(p);
    t.not(bytes[0], 0xc1);
    t.same(plain(decodeProposal(bytes)), viaMsgpack(p));
  }
  // A put written by the msgpack-only format (a WAL from before) reads as it always did.
  const old: Proposal = { ...ref, r: puts[0]! };
  t.same(plain(decodeProposal(packr.pack(old))), viaMsgpack(old));
});

t.test('a garbled put is an error, wherever it is cut', async (t) => {
  const bytes = encodeProposal({ ...ref, r: puts[1]! });
  for (let n = 1; n < bytes.length; n++) {
    const r = decodeProposal(bytes.subarray(0, n));
    if (!(r instanceof ProposalError)) t.fail(`cut at ${n}: ${JSON.stringify(plain(r))}`);
  }
  t.match(decodeProposal(Buffer.concat([bytes, Buffer.of(0)])), /wrong length/);
  const user = Buffer.from(bytes);
  user.writeUInt32LE(0xffff_ffff, 1 + 4 * 8);
  t.match(decodeProposal(user), /cut short/);
  t.match(decodeProposal(Buffer.from([0x92, 0xc1])), /does not decode/);
});
