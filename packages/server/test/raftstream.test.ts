// The Raft stream's framing, however the bytes are cut, and its route through a peer listener.
import type { Socket } from 'node:net';
import t from 'tap';
import { listenMux } from '../src/listen.js';
import { dialRaftStream, FRAME_HEADER_BYTES, FrameDecoder, FrameError, RAFT_STREAM_PREFACE, sealFrame } from '../src/raftstream.js';
import { freePorts } from './helpers/ports.js';

/** A frame as the sender makes one: payload after reserved header bytes, then sealed. */
const encodeFrame = (payload: Buffer): Buffer => sealFrame(Buffer.concat([Buffer.alloc(FRAME_HEADER_BYTES), payload]));

const payloads = [Buffer.alloc(0), Buffer.from('a'), Buffer.alloc(5000, 7), Buffer.from('last')];
const stream = Buffer.concat([RAFT_STREAM_PREFACE, ...payloads.map(encodeFrame)]);

function decodeAll(chunks: Buffer[], max = 1 << 20): Buffer[] | FrameError {
  const d = new FrameDecoder(max);
  const out: Buffer[] = [];
  for (const c of chunks) {
    const r = d.push(c);
    if (r instanceof FrameError) return r;
    out.push(...r);
  }
  return out;
}

t.test('every payload comes out whole wherever the stream is cut', async (t) => {
  for (let cut = 1; cut < stream.length; cut++) {
    const got = decodeAll([stream.subarray(0, cut), stream.subarray(cut)]);
    if (!(got instanceof Array) || got.length !== payloads.length || got.some((p, i) => !p.equals(payloads[i]!))) {
      t.fail(`cut at ${cut}: ${String(got instanceof Array ? got.map((p) => p.length) : got)}`);
      return;
    }
  }
  const bytes = [...stream].map((b) => Buffer.of(b));
  t.same(decodeAll(bytes), payloads, 'one byte at a time');
  t.same(decodeAll([stream]), payloads, 'all at once');
});

t.test('a stream that is not a Raft stream, or a frame over the limit, is an error', async (t) => {
  const wrong = decodeAll([Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]);
  t.ok(wrong instanceof FrameError);
  t.match(String(wrong), /wrong preface/);
  const big = decodeAll([RAFT_STREAM_PREFACE, encodeFrame(Buffer.alloc(100))], 99);
  t.ok(big instanceof FrameError);
  t.match(String(big), /frame of 100 bytes is over the limit of 99/);
  t.same(decodeAll([RAFT_STREAM_PREFACE, encodeFrame(Buffer.alloc(99))], 99), [Buffer.alloc(99)], 'at the limit is fine');
});

t.test('a peer listener hands a dialed Raft stream to its handler, frames in order', async (t) => {
  const [port] = await freePorts(1);
  const url = `http://127.0.0.1:${port}`;
  const got: Buffer[] = [];
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const mux = await listenMux([url], {
    raft: (socket: Socket) => {
      const d = new FrameDecoder(1 << 20);
      socket.on('data', (c: Buffer) => {
        const r = d.push(c);
        if (r instanceof FrameError) throw r;
        got.push(...r);
        if (got.length === 100) done();
      });
      socket.resume();
    },
  });
  t.teardown(() => mux.close());
  const s = dialRaftStream(url, undefined);
  t.teardown(() => s.destroy());
  // Written before the connection is up: queued, not lost.
  for (let i = 0; i < 100; i++) s.write(encodeFrame(Buffer.from(`m${i}`)));
  await all;
  t.same(
    got.map((b) => b.toString()),
    Array.from({ length: 100 }, (_, i) => `m${i}`),
  );
});
