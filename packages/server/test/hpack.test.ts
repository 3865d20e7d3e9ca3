// HPACK: the examples of RFC 7541 Appendix C, node:http2 (nghttp2) at the other end of a socket in
// both directions, and every way a block can be wrong.
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import t, { type Test } from 'tap';
import { HeaderListTooLong, HpackDecoder, HpackEncoder, HpackError } from '../src/h2/hpack.js';
import {
  HUFFMAN_CODES,
  HUFFMAN_LENGTHS,
  HuffmanError,
  huffmanDecode,
  huffmanEncode,
  huffmanLength,
} from '../src/h2/huffman.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

t.test('C.2: each representation on its own', async (t) => {
  const cases: [string, string, string[], string[], number][] = [
    [
      'C.2.1 literal with indexing',
      '400a637573746f6d2d6b65790d637573746f6d2d686561646572',
      ['custom-key', 'custom-header'],
      ['custom-key', 'custom-header'],
      55,
    ],
    ['C.2.2 literal without indexing', '040c2f73616d706c652f70617468', [':path', '/sample/path'], [], 0],
    ['C.2.3 literal never indexed', '100870617373776f726406736563726574', ['password', 'secret'], [], 0],
    ['C.2.4 indexed', '82', [':method', 'GET'], [], 0],
  ];
  for (const [what, block, list, table, size] of cases) {
    const d = new HpackDecoder();
    t.same(d.decode(hex(block)), list, what);
    t.same(d.tableEntries(), table, `${what}: table`);
    t.equal(d.tableSize, size, `${what}: table size`);
  }
});

interface Step {
  block: string;
  list: string[];
  /** Dynamic table after the block, newest first. */
  table: string[];
  size: number;
}

const requestLists = [
  [':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'www.example.com'],
  [':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'www.example.com', 'cache-control', 'no-cache'],
  [
    ...[':method', 'GET', ':scheme', 'https', ':path', '/index.html', ':authority', 'www.example.com'],
    ...['custom-key', 'custom-value'],
  ],
];
const requestTables: [string[], number][] = [
  [[':authority', 'www.example.com'], 57],
  [['cache-control', 'no-cache', ':authority', 'www.example.com'], 110],
  [['custom-key', 'custom-value', 'cache-control', 'no-cache', ':authority', 'www.example.com'], 164],
];
const requests = (blocks: string[]): Step[] =>
  blocks.map((block, i) => ({
    block,
    list: requestLists[i]!,
    table: requestTables[i]![0],
    size: requestTables[i]![1],
  }));

const date1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
const date2 = 'Mon, 21 Oct 2013 20:13:22 GMT';
const location = 'https://www.example.com';
const cookie = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';
const responseLists = [
  [':status', '302', 'cache-control', 'private', 'date', date1, 'location', location],
  [':status', '307', 'cache-control', 'private', 'date', date1, 'location', location],
  [
    ...[':status', '200', 'cache-control', 'private', 'date', date2, 'location', location],
    ...['content-encoding', 'gzip', 'set-cookie', cookie],
  ],
];
const responseTables: [string[], number][] = [
  [['location', location, 'date', date1, 'cache-control', 'private', ':status', '302'], 222],
  // ":status 302" evicted for ":status 307"
  [[':status', '307', 'location', location, 'date', date1, 'cache-control', 'private'], 222],
  // several evicted on the way
  [['set-cookie', cookie, 'content-encoding', 'gzip', 'date', date2], 215],
];
const responses = (blocks: string[]): Step[] =>
  blocks.map((block, i) => ({
    block,
    list: responseLists[i]!,
    table: responseTables[i]![0],
    size: responseTables[i]![1],
  }));

const C3 = requests([
  '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
  '8286 84be 5808 6e6f 2d63 6163 6865',
  '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
]);
const C4 = requests([
  '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
  '8286 84be 5886 a8eb 1064 9cbf',
  '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
]);
const C5 = responses([
  `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
   2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`,
  '4803 3330 37c1 c0bf',
  `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
   54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
   5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31`,
]);
const C6 = responses([
  `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
   2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
  '4883 640e ffc1 c0bf',
  `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
   77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
   9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
]);

const sequences: [string, Step[], number][] = [
  ['C.3 requests without Huffman', C3, 4096],
  ['C.4 requests with Huffman', C4, 4096],
  ['C.5 responses without Huffman, 256-octet table', C5, 256],
  ['C.6 responses with Huffman, 256-octet table', C6, 256],
];

for (const [what, steps, tableSize] of sequences) {
  t.test(`${what}: decoded in order on one table`, async (t) => {
    const d = new HpackDecoder(tableSize);
    steps.forEach((s, i) => {
      t.same(d.decode(hex(s.block)), s.list, `block ${i + 1}`);
      t.same(d.tableEntries(), s.table, `table after block ${i + 1}`);
      t.equal(d.tableSize, s.size, `table size after block ${i + 1}`);
    });
  });
}

t.test('the encoder: C.3 and C.5 lists come back through a decoder, C.4 byte for byte', async (t) => {
  for (const [lists, size] of [
    [requestLists, 4096],
    [responseLists, 256],
  ] as const) {
    const e = new HpackEncoder(size);
    const d = new HpackDecoder(size);
    for (const list of lists) t.same(d.decode(e.encode(list)), list);
    t.ok(d.tableSize <= size, 'the decoder table stays within the size the encoder was given');
  }
  // Index what can be indexed, Huffman where it is shorter: exactly what the RFC's C.4 shows.
  const e = new HpackEncoder();
  C4.forEach((s, i) => t.equal(e.encode(s.list).toString('hex'), hex(s.block).toString('hex'), `C.4.${i + 1}`));
});

t.test('the encoder: a repeated header set costs one octet a field', async (t) => {
  const e = new HpackEncoder();
  const d = new HpackDecoder();
  const set = [
    ...[':status', '200', 'content-type', 'application/grpc'],
    ...['grpc-status', '0', 'grpc-accept-encoding', 'identity,deflate,gzip'],
  ];
  const first = e.encode(set);
  t.same(d.decode(first), set);
  for (let i = 0; i < 3; i++) {
    const again = e.encode(set);
    t.equal(again.length, set.length / 2, `round ${i + 1}: ${again.toString('hex')}`);
    t.same(d.decode(again), set);
  }
  // Per-message values are not indexed; the set around them still is.
  const withLength = [...set, 'content-length', '42'];
  t.same(d.decode(e.encode(withLength)), withLength);
  const tableBefore = d.tableEntries();
  t.same(d.decode(e.encode([...set, 'content-length', '43'])), [...set, 'content-length', '43']);
  t.same(d.tableEntries(), tableBefore, 'content-length went out without indexing');
});

t.test('the encoder: sensitive fields are never indexed', async (t) => {
  const e = new HpackEncoder();
  const d = new HpackDecoder();
  const sensitive = new Set(['authorization']);
  const list = ['authorization', 'Bearer s3cr3t', 'x-other', 'v'];
  for (let i = 0; i < 2; i++) {
    const block = e.encode(list, sensitive);
    t.equal(block[0]! & 0xf0, 0x10, `round ${i + 1}: a never-indexed literal (6.2.3)`);
    t.same(d.decode(block), list);
  }
  t.same(d.tableEntries(), ['x-other', 'v'], 'only the other field is in the table');
});

t.test('the encoder: table size updates at the start of the next block', async (t) => {
  const e = new HpackEncoder();
  const d = new HpackDecoder();
  const list = ['x-a', '1', 'x-b', '2'];
  t.same(d.decode(e.encode(list)), list);
  t.equal(d.tableEntries().length, 4);
  // Down to 0 and back up between two blocks: both sizes are signalled, the smallest first (4.2).
  e.setMaxTableSize(0);
  e.setMaxTableSize(4096);
  const block = e.encode(list);
  t.same([...block.subarray(0, 4)], [0x20, 0x3f, 0xe1, 0x1f], 'size 0, then 4096');
  t.same(d.decode(block), list);
  t.same(d.tableEntries(), ['x-b', '2', 'x-a', '1'], 'emptied, then filled again');
  // Above our own limit the peer's number is capped.
  const small = new HpackEncoder(100);
  small.setMaxTableSize(65536);
  const b2 = small.encode(['x-a', '1']);
  t.same([...b2.subarray(0, 3)], [0x3f, 0x45, 0x40], 'one update, to 100, and then the field');
  t.same(new HpackDecoder(100).decode(b2), ['x-a', '1']);
  // Unchanged: still an update, as the caller was told.
  e.setMaxTableSize(4096);
  t.equal(e.encode(list)[0], 0x3f);
});

t.test('the encoder: strings that are not octets are refused before anything changes', async (t) => {
  const e = new HpackEncoder();
  const d = new HpackDecoder();
  t.throws(() => e.encode(['x-a', '1', 'x-euro', '\u20ac']), RangeError);
  t.throws(() => e.encode(['x-a']), RangeError);
  // Nothing of the refused block reached the table: the decoder, which never saw it, stays in step.
  const list = ['x-a', '1', 'x-b', 'é'];
  t.same(d.decode(e.encode(list)), list);
  t.same(d.decode(e.encode(list)), list);
  t.equal(e.encode(list).length, 2);
});

t.test('Huffman: the code is the RFC table, and every octet round-trips', async (t) => {
  // A few rows of RFC 7541 Appendix B, short and long.
  const rows: [number, number, number][] = [
    [48, 0x0, 5], // '0'
    [32, 0x14, 6], // ' '
    [92, 0x7fff0, 19], // '\'
    [0, 0x1ff8, 13],
    [10, 0x3ffffffc, 30],
    [255, 0x3ffffee, 26],
    [256, 0x3fffffff, 30], // EOS
  ];
  for (const [sym, code, len] of rows) {
    t.equal(HUFFMAN_CODES[sym], code, `code of ${sym}`);
    t.equal(HUFFMAN_LENGTHS[sym], len, `length of ${sym}`);
  }
  const all = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));
  for (const s of [all, all.split('').reverse().join(''), '', 'a', 'www.example.com', all.repeat(3)]) {
    const n = huffmanLength(s);
    const buf = Buffer.alloc(n + 2, 0xaa);
    t.equal(huffmanEncode(s, buf, 1), n + 1, `${s.length} chars: encoded length`);
    t.equal(buf[n + 1], 0xaa, 'nothing written past the end');
    t.equal(huffmanDecode(buf, 1, n + 1), s, `${s.length} chars round-trip`);
  }
  t.equal(huffmanLength('\u0100'), -1, 'not an octet');
});

t.test('Huffman: bad padding and EOS are refused', async (t) => {
  // 'a' is 00011.
  t.equal(huffmanDecode(Buffer.of(0x1f), 0, 1), 'a', "'a' with 3 bits of EOS padding");
  const bad: [string, number[], RegExp][] = [
    ['padding of zeros', [0x18], /not the start of EOS/],
    ['padding of ones and zeros', [0x1d], /not the start of EOS/],
    ['a whole octet of padding', [0x1f, 0xff], /longer than 7 bits/],
    ['only padding, 8 bits', [0xff], /longer than 7 bits/],
    ['a string ending inside a long code', [0xfe], /longer than 7 bits/],
    ['EOS in the string', [0xff, 0xff, 0xff, 0xfc], /EOS/],
    ['EOS and more after it', [0xff, 0xff, 0xff, 0xfc, 0x1f], /EOS/],
  ];
  for (const [what, bytes, message] of bad) {
    t.throws(() => huffmanDecode(Buffer.from(bytes), 0, bytes.length), HuffmanError, what);
    t.throws(() => huffmanDecode(Buffer.from(bytes), 0, bytes.length), { message }, what);
    // Inside a block: a literal without indexing with a new name 'a' and this value.
    const block = Buffer.from([0x00, 0x81, 0x1f, 0x80 | bytes.length, ...bytes]);
    const r = new HpackDecoder().decode(block);
    t.ok(r instanceof HpackError, `${what}: an HpackError from the decoder`);
    t.match(String(r), message);
  }
  const valid = new HpackDecoder().decode(Buffer.from([0x00, 0x81, 0x1f, 0x81, 0x1f]));
  t.same(valid, ['a', 'a'], 'the valid one in a block');
});

t.test('malformed blocks are HpackErrors', async (t) => {
  const bad: [string, number[], RegExp, number?][] = [
    ['truncated integer', [0xff], /integer truncated/],
    ['truncated integer continuation', [0xff, 0x80], /integer truncated/],
    ['integer overflow', [0xff, 0xff, 0xff, 0xff, 0xff, 0x0f], /integer overflow/],
    ['integer with endless zero padding', [0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], /integer overflow/],
    ['index 0', [0x80], /index 0/],
    ['index past the (empty) dynamic table', [0xbe], /index 62 past the end/],
    ['name index past the table', [0x7e, 0x01, 0x61], /index 62 past the end/],
    ['huge index', [0xff, 0x80, 0x80, 0x80, 0x80, 0x07], /past the end/],
    ['string past the end of the block', [0x40, 0x05, 0x61, 0x62], /runs past the end/],
    ['string length missing', [0x40], /string literal truncated/],
    ['value missing', [0x40, 0x01, 0x61], /string literal truncated/],
    ['size update over the maximum', [0x3f, 0xe2, 0x1f], /size update to 4097, over the 4096/],
    ['size update over a smaller maximum', [0x3f, 0xe2, 0x01], /size update to 257, over the 256/, 256],
    ['size update after a field', [0x82, 0x20], /after a header field/],
  ];
  for (const [what, bytes, message, tableSize] of bad) {
    const d = new HpackDecoder(tableSize);
    const r = d.decode(Uint8Array.from(bytes));
    t.ok(r instanceof HpackError && !(r instanceof HeaderListTooLong), what);
    t.match(String(r), message, what);
  }
  // The legal neighbours of those.
  const atMax = new HpackDecoder().decode(Uint8Array.from([0x3f, 0xe1, 0x1f, 0x82]));
  t.same(atMax, [':method', 'GET'], 'size update to exactly the maximum');
  t.same(new HpackDecoder().decode(Uint8Array.from([0xbd])), ['www-authenticate', ''], 'index 61, the last static one');
  t.same(new HpackDecoder().decode(Uint8Array.from([])), [], 'an empty block');
  const d = new HpackDecoder();
  t.same(d.decode(hex('400a637573746f6d2d6b65790d637573746f6d2d686561646572')), ['custom-key', 'custom-header']);
  const twice = d.decode(Uint8Array.from([0x20, 0x3f, 0xe1, 0x1f, 0x82]));
  t.same(twice, [':method', 'GET'], 'two size updates at the start');
  t.same(d.tableEntries(), [], 'the update to 0 emptied the table');
  t.ok(d.decode(Uint8Array.from([0xbe])) instanceof HpackError, 'so index 62 is gone');
  // 4.4: an entry bigger than the whole table is no error; it empties the table and is not added.
  const small = new HpackDecoder(100);
  t.same(small.decode(Buffer.of(0x40, 0x01, 0x61, 0x01, 0x62)), ['a', 'b']);
  t.same(small.tableEntries(), ['a', 'b']);
  const big = 'x'.repeat(80);
  t.same(small.decode(Buffer.concat([Buffer.of(0x40, 0x01, 0x63, 80), Buffer.from(big)])), ['c', big]);
  t.same(small.tableEntries(), [], 'the 113-octet entry emptied the 100-octet table');
  t.equal(small.tableSize, 0);
});

t.test('a header list over the limit is HeaderListTooLong, and the table still takes its entries', async (t) => {
  const d = new HpackDecoder(4096, 100);
  const value = 'v'.repeat(30);
  // :method GET (42 octets by RFC 9113 6.5.2) + x-k: v*30 (3 + 30 + 32 = 65) = 107 > 100
  const block = Buffer.concat([Buffer.of(0x82, 0x40, 0x03), Buffer.from('x-k'), Buffer.of(30), Buffer.from(value)]);
  const r = d.decode(block);
  t.ok(r instanceof HeaderListTooLong, String(r));
  t.ok(r instanceof HpackError, 'a kind of HpackError');
  t.equal((r as HeaderListTooLong).size, 107);
  t.same(d.tableEntries(), ['x-k', value]);
  t.same(d.decode(Buffer.of(0xbe)), ['x-k', value], 'the next block refers to the entry');
  t.same(d.decode(Buffer.of(0x82, 0x83)), [':method', 'GET', ':method', 'POST'], 'at 84 octets it fits');
});

// --- node:http2 at the other end of a socket -------------------------------------------------------

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const enum Frame {
  HEADERS = 1,
  SETTINGS = 4,
  PING = 6,
  CONTINUATION = 9,
}
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;
const SETTINGS_HEADER_TABLE_SIZE = 1;

function frame(type: number, flags: number, stream: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

interface Exchange {
  /** Request header blocks as received, and what HpackDecoder made of them. */
  blocks: Buffer[];
  decoded: (string[] | HpackError)[];
  /** The decoder's table size after each block. */
  tableSizes: number[];
  /** Response blocks as HpackEncoder made them. */
  sent: Buffer[];
  continuations: number;
  padded: number;
  prioritized: number;
}

/**
 * Just enough of an HTTP/2 server: settings both ways, and for each request's header block (joined
 * from HEADERS and CONTINUATION frames) a HEADERS frame with END_STREAM whose block HpackEncoder made.
 */
async function rawServer(
  t: Test,
  tableSize: number | undefined,
  respond: (i: number) => { headers: string[]; sensitive?: ReadonlySet<string> },
): Promise<{ port: number; exchange: Exchange }> {
  const exchange: Exchange = {
    blocks: [],
    decoded: [],
    tableSizes: [],
    sent: [],
    continuations: 0,
    padded: 0,
    prioritized: 0,
  };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('end', () => socket.end());
    socket.on('error', () => {});
    const decoder = new HpackDecoder(tableSize);
    const encoder = new HpackEncoder();
    const settings = Buffer.alloc(tableSize === undefined ? 0 : 6);
    if (tableSize !== undefined) {
      settings.writeUInt16BE(SETTINGS_HEADER_TABLE_SIZE, 0);
      settings.writeUInt32BE(tableSize, 2);
    }
    socket.write(frame(Frame.SETTINGS, 0, 0, settings));
    let buf = Buffer.alloc(0);
    let prefaceSeen = false;
    let fragments: Buffer[] = [];
    const answer = (stream: number): void => {
      const block = Buffer.concat(fragments);
      fragments = [];
      const r = decoder.decode(block);
      exchange.blocks.push(block);
      exchange.decoded.push(r);
      exchange.tableSizes.push(decoder.tableSize);
      const { headers, sensitive } = respond(exchange.sent.length);
      const out = encoder.encode(headers, sensitive);
      exchange.sent.push(out);
      socket.write(frame(Frame.HEADERS, END_HEADERS | END_STREAM, stream, out));
    };
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!prefaceSeen) {
        if (buf.length < PREFACE.length) return;
        if (!buf.subarray(0, PREFACE.length).equals(PREFACE)) {
          t.fail('not the HTTP/2 client preface');
          socket.destroy();
          return;
        }
        prefaceSeen = true;
        buf = buf.subarray(PREFACE.length);
      }
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const type = buf[3]!;
        const flags = buf[4]!;
        const stream = buf.readUInt32BE(5) & 0x7fffffff;
        let payload = buf.subarray(9, 9 + len);
        buf = buf.subarray(9 + len);
        if (type === Frame.SETTINGS && !(flags & ACK)) {
          for (let p = 0; p + 6 <= payload.length; p += 6) {
            if (payload.readUInt16BE(p) === SETTINGS_HEADER_TABLE_SIZE) {
              encoder.setMaxTableSize(payload.readUInt32BE(p + 2));
            }
          }
          socket.write(frame(Frame.SETTINGS, ACK, 0));
        } else if (type === Frame.PING && !(flags & ACK)) {
          socket.write(frame(Frame.PING, ACK, 0, payload));
        } else if (type === Frame.HEADERS) {
          let pad = 0;
          if (flags & PADDED) {
            exchange.padded++;
            pad = payload[0]!;
            payload = payload.subarray(1);
          }
          if (flags & PRIORITY) {
            exchange.prioritized++;
            payload = payload.subarray(5);
          }
          fragments = [payload.subarray(0, payload.length - pad)];
          if (flags & END_HEADERS) answer(stream);
        } else if (type === Frame.CONTINUATION) {
          exchange.continuations++;
          fragments.push(payload);
          if (flags & END_HEADERS) answer(stream);
        }
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return { port: (server.address() as net.AddressInfo).port, exchange };
}

/** Sends each request in turn on one node:http2 session; returns the response headers it saw. */
async function nodeClient(
  t: Test,
  port: number,
  options: http2.ClientSessionOptions,
  requests: Record<string, string>[],
  requestOptions: http2.ClientSessionRequestOptions = {},
): Promise<http2.IncomingHttpHeaders[]> {
  const client = http2.connect(`http://127.0.0.1:${port}`, options);
  t.teardown(() => client.destroy());
  client.on('error', (e) => t.fail(`client: ${String(e)}`));
  // Our SETTINGS first, so every request is encoded for the table size we advertised.
  await once(client, 'remoteSettings');
  const seen: http2.IncomingHttpHeaders[] = [];
  for (const h of requests) {
    const req = client.request(h, { ...requestOptions, endStream: true });
    const [headers] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
    seen.push(headers);
    req.resume();
    await once(req, 'close');
  }
  client.close();
  await once(client, 'close');
  return seen;
}

/** A printable, deterministic, Huffman-unfriendly string. */
function noise(n: number): string {
  let x = 12345;
  let s = '';
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    s += String.fromCharCode(0x21 + (x % 94));
  }
  return s;
}

const asObject = (h: http2.IncomingHttpHeaders): Record<string, unknown> => Object.fromEntries(Object.entries(h));

t.test('node:http2 client to our decoder, our encoder to node:http2 client', async (t) => {
  const responseBase = [
    ...[':status', '200', 'content-type', 'application/grpc'],
    ...['grpc-accept-encoding', 'identity,deflate,gzip', 'x-capstan-member', '8e9e05c52164694d'],
  ];
  const lastExtra = ['x-secret', 'hunter2', 'x-odd', 'a b;c=d,e'];
  const count = 6;
  const { port, exchange } = await rawServer(t, undefined, (i) => ({
    headers: i === count - 1 ? [...responseBase, ...lastExtra] : responseBase,
    sensitive: new Set(['x-secret']),
  }));
  const base = {
    ':method': 'POST',
    ':scheme': 'http',
    ':authority': `127.0.0.1:${port}`,
    ':path': '/etcdserverpb.KV/Range',
    'content-type': 'application/grpc',
    te: 'trailers',
    'user-agent': 'grpc-node-js/1.14.7',
  };
  const long = 'abcdefghij'.repeat(300); // Huffman-friendly, and small enough to be indexed
  const huge = noise(30000); // over one 16 KiB frame: HEADERS + CONTINUATION
  const requests: Record<string, string>[] = [
    base,
    base,
    { ...base, 'x-long': long, 'x-odd': 'a b;c=d,e' },
    { ...base, 'x-long': long, 'x-odd': 'a b;c=d,e' },
    { ...base, ':path': '/etcdserverpb.KV/Put', 'x-huge': huge, 'grpc-timeout': '4999m' },
    { ...base, 'x-odd': 'a b;c=d,e', 'x-empty': '' },
  ];
  // Padding and a priority field in every HEADERS frame, for the frame reader to strip.
  const seen = await nodeClient(t, port, { paddingStrategy: http2.constants.PADDING_STRATEGY_MAX }, requests, {
    weight: 32,
  });

  t.same(exchange.decoded, requests.map((r) => Object.entries(r).flat()), 'every request decoded as sent');
  const [first, second] = [exchange.blocks[0]!.length, exchange.blocks[1]!.length];
  t.ok(second < first / 2, `the repeat is mostly indexed (${first} then ${second} octets)`);
  t.ok(exchange.blocks[2]!.length < long.length, 'the long value came Huffman-coded');
  t.ok(exchange.blocks[3]!.length < 100, `and the second time indexed (${exchange.blocks[3]!.length} octets)`);
  t.ok(exchange.continuations > 0, `the huge block came in ${exchange.continuations + 1} frames`);
  // All but the one the huge block fills to the brim.
  t.ok(exchange.padded >= count - 1, `HEADERS frames padded: ${exchange.padded} of ${count}`);
  t.equal(exchange.prioritized, count, 'and carried a priority');

  const expected = (list: string[]): Record<string, unknown> => {
    const o: Record<string, unknown> = {};
    for (let i = 0; i < list.length; i += 2) o[list[i]!] = list[i] === ':status' ? Number(list[i + 1]) : list[i + 1];
    return o;
  };
  seen.forEach((h, i) => {
    t.same(asObject(h), expected(i === count - 1 ? [...responseBase, ...lastExtra] : responseBase), `response ${i + 1}`);
  });
  const sensitive = (seen[count - 1] as Record<symbol, unknown>)[http2.sensitiveHeaders];
  t.same(sensitive, ['x-secret'], 'node saw x-secret as never indexed');
  for (let i = 1; i < count - 1; i++) {
    t.equal(exchange.sent[i]!.length, responseBase.length / 2, `response ${i + 1} is one octet a field`);
  }
});

t.test('256-octet tables both ways: size updates and evictions on a real connection', async (t) => {
  const count = 12;
  const responseFor = (i: number): string[] => [
    ...[':status', '200', 'content-type', 'application/grpc'],
    ...['x-seq', String(i), 'x-tag', `tag-${i % 3}`],
  ];
  const { port, exchange } = await rawServer(t, 256, (i) => ({ headers: responseFor(i) }));
  const requests = Array.from({ length: count }, (_, i) => ({
    ':method': 'POST',
    ':scheme': 'http',
    ':authority': `127.0.0.1:${port}`,
    ':path': `/etcdserverpb.KV/${['Range', 'Put', 'Txn'][i % 3]!}`,
    'content-type': 'application/grpc',
    'x-seq': String(i),
    'x-tag': `tag-${i % 4}`,
    'x-pad': 'p'.repeat(40 + i),
  }));
  const seen = await nodeClient(t, port, { settings: { headerTableSize: 256 } }, requests);
  t.same(exchange.decoded, requests.map((r) => Object.entries(r).flat()), 'every request decoded as sent');
  t.equal(exchange.blocks[0]![0]! & 0xe0, 0x20, 'the client opened with a dynamic table size update');
  t.ok(Math.max(...exchange.tableSizes) <= 256, `our table stayed within 256 (${exchange.tableSizes.join(' ')})`);
  t.equal(exchange.sent[0]![0]! & 0xe0, 0x20, 'our encoder opened with a size update too');
  seen.forEach((h, i) => {
    const want = responseFor(i);
    const wantObject = { ':status': 200, 'content-type': want[3], 'x-seq': want[5], 'x-tag': want[7] };
    t.same(asObject(h), wantObject, `response ${i + 1}`);
  });
});
