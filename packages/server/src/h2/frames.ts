/** HTTP/2's wire constants (RFC 9113 §4, §6, §7) and the frame header. */

/** What every client connection opens with (§3.4). */
export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const FRAME_HEADER_BYTES = 9;

export const FrameType = {
  Data: 0,
  Headers: 1,
  Priority: 2,
  RstStream: 3,
  Settings: 4,
  PushPromise: 5,
  Ping: 6,
  GoAway: 7,
  WindowUpdate: 8,
  Continuation: 9,
} as const;

export const Flag = {
  EndStream: 0x1,
  Ack: 0x1,
  EndHeaders: 0x4,
  Padded: 0x8,
  Priority: 0x20,
} as const;

export const ErrorCode = {
  NoError: 0x0,
  ProtocolError: 0x1,
  InternalError: 0x2,
  FlowControlError: 0x3,
  SettingsTimeout: 0x4,
  StreamClosed: 0x5,
  FrameSizeError: 0x6,
  RefusedStream: 0x7,
  Cancel: 0x8,
  CompressionError: 0x9,
  ConnectError: 0xa,
  EnhanceYourCalm: 0xb,
  InadequateSecurity: 0xc,
  Http11Required: 0xd,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export const Setting = {
  HeaderTableSize: 0x1,
  EnablePush: 0x2,
  MaxConcurrentStreams: 0x3,
  InitialWindowSize: 0x4,
  MaxFrameSize: 0x5,
  MaxHeaderListSize: 0x6,
} as const;

/** The largest stream id (§5.1.1): a GOAWAY with it lets every stream the client may have opened through (§6.8). */
export const MAX_STREAM_ID = 2 ** 31 - 1;
/** A flow-control window's start (§6.9.2) and the largest it may grow to (§6.9.1). */
export const DEFAULT_WINDOW_BYTES = 65_535;
export const MAX_WINDOW_BYTES = 2 ** 31 - 1;
/** The frame payload size every peer accepts (§4.2), and the largest one it may allow. */
export const DEFAULT_MAX_FRAME_BYTES = 16_384;
export const MAX_MAX_FRAME_BYTES = 2 ** 24 - 1;
/** The HPACK table size a peer starts with (RFC 7541 §4.2). */
export const DEFAULT_HEADER_TABLE_BYTES = 4096;

/** A frame header, written into `b` at `at`. */
export function writeFrameHeader(b: Buffer, at: number, type: number, flags: number, streamId: number, payloadLength: number): void {
  b[at] = (payloadLength >>> 16) & 0xff;
  b[at + 1] = (payloadLength >>> 8) & 0xff;
  b[at + 2] = payloadLength & 0xff;
  b[at + 3] = type;
  b[at + 4] = flags;
  b.writeUInt32BE(streamId & 0x7fffffff, at + 5);
}

/** Handed each frame readFrames() finds: whether to read on. */
export type FrameHandler = (type: number, flags: number, streamId: number, payload: Buffer) => boolean;

/**
 * Hands `onFrame` each whole frame of `buf` from `off`, in order, until it returns false, and
 * returns the offset of the first byte not handed over (the start of a partial frame, or
 * buf.length). A payload longer than `maxPayload` goes to `tooLarge`, which throws.
 */
export function readFrames(buf: Buffer, maxPayload: number, onFrame: FrameHandler, tooLarge: (payloadLength: number) => never): number {
  let off = 0;
  while (buf.length - off >= FRAME_HEADER_BYTES) {
    const len = (buf[off]! << 16) | (buf[off + 1]! << 8) | buf[off + 2]!;
    if (len > maxPayload) tooLarge(len);
    if (buf.length - off < FRAME_HEADER_BYTES + len) break;
    const type = buf[off + 3]!;
    const flags = buf[off + 4]!;
    const id = buf.readUInt32BE(off + 5) & 0x7fffffff;
    const payload = buf.subarray(off + FRAME_HEADER_BYTES, off + FRAME_HEADER_BYTES + len);
    off += FRAME_HEADER_BYTES + len;
    if (!onFrame(type, flags, id, payload)) break;
  }
  return off;
}

/** A whole frame in one buffer (control frames and header blocks). */
export function frame(type: number, flags: number, streamId: number, payload?: Uint8Array): Buffer {
  const len = payload?.length ?? 0;
  const b = Buffer.allocUnsafe(FRAME_HEADER_BYTES + len);
  writeFrameHeader(b, 0, type, flags, streamId, len);
  if (payload !== undefined) b.set(payload, FRAME_HEADER_BYTES);
  return b;
}

export function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** A SETTINGS payload from [id, value] pairs. */
export function settingsPayload(pairs: readonly (readonly [number, number])[]): Buffer {
  const b = Buffer.allocUnsafe(6 * pairs.length);
  pairs.forEach(([id, value], i) => {
    b.writeUInt16BE(id, 6 * i);
    b.writeUInt32BE(value >>> 0, 6 * i + 2);
  });
  return b;
}

/** GOAWAY's payload: the last stream processed and why (§6.8). */
export function goAwayPayload(lastStreamId: number, code: ErrorCode, debug = ''): Buffer {
  const b = Buffer.allocUnsafe(8 + Buffer.byteLength(debug));
  b.writeUInt32BE(lastStreamId & 0x7fffffff, 0);
  b.writeUInt32BE(code, 4);
  b.write(debug, 8);
  return b;
}

/** A DATA or HEADERS payload without its padding (§6.1), or undefined if the padding does not fit. */
export function unpad(flags: number, p: Buffer): Buffer | undefined {
  if ((flags & Flag.Padded) === 0) return p;
  if (p.length < 1) return undefined;
  const pad = p[0]!;
  if (pad >= p.length) return undefined;
  return p.subarray(1, p.length - pad);
}
