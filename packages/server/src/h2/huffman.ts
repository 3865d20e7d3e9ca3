// The static Huffman code of HPACK (RFC 7541 Appendix B) for header strings.
//
// The code is canonical: within one bit length, codes are consecutive in symbol order, and each length
// starts where the shorter ones left off. So the 257 bit lengths below determine every code; the codes
// built from them were checked against all 257 rows of the RFC's table, and test/hpack.test.ts checks
// a sample of rows and the Appendix C vectors.
//
// Decoding runs one input byte per step through a state table built at module load: a state is an
// internal node of the code tree (there are exactly 256 of them, since the code is complete over 257
// leaves), and the entry for (state, byte) gives the next state and the zero, one or two symbols that
// byte completes (the shortest code is 5 bits, so a byte never completes three).

/** Bit length of the code of each byte 0..255, then of EOS (256). */
const CODE_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0-15
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 16-31
   6, 10, 10, 12, 13,  6,  8, 11, 10, 10,  8, 11,  8,  6,  6,  6, // 32-47
   5,  5,  5,  6,  6,  6,  6,  6,  6,  6,  7,  8, 15,  6, 12, 10, // 48-63
  13,  6,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7, // 64-79
   7,  7,  7,  7,  7,  7,  7,  7,  8,  7,  8, 13, 19, 13, 14,  6, // 80-95
  15,  5,  6,  5,  6,  5,  6,  6,  6,  5,  7,  7,  6,  6,  6,  5, // 96-111
   6,  7,  6,  5,  5,  6,  7,  7,  7,  7,  7, 15, 11, 14, 13, 28, // 112-127
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128-143
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144-159
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160-175
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176-191
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192-207
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208-223
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224-239
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240-255
  30, // EOS
];

export const EOS = 256;
const SYMBOLS = 257;
/** A complete prefix code over 257 leaves has 256 internal nodes: one byte of decoder state. */
const STATES = 256;
/** RFC 7541 5.2: a string's padding is under one octet, else it is a decoding error. */
const MAX_PADDING_BITS = 7;

/** Code of each symbol, right-aligned in its length. */
export const HUFFMAN_CODES = new Uint32Array(SYMBOLS);
export const HUFFMAN_LENGTHS = new Uint8Array(CODE_LENGTHS);

{
  const order = Array.from({ length: SYMBOLS }, (_, s) => s).sort(
    (a, b) => HUFFMAN_LENGTHS[a]! - HUFFMAN_LENGTHS[b]! || a - b,
  );
  let code = 0;
  let len = HUFFMAN_LENGTHS[order[0]!]!;
  for (const s of order) {
    code *= 2 ** (HUFFMAN_LENGTHS[s]! - len);
    len = HUFFMAN_LENGTHS[s]!;
    HUFFMAN_CODES[s] = code++;
  }
  // The last code is all ones and nothing is left over: the table above is the complete RFC code.
  if (code !== 2 ** len) throw new Error('huffman: the code lengths do not form a complete code');
}

// Transition entry: bits 0-7 first symbol, 8-15 second symbol, 16-23 next state, 24-25 symbols
// completed, 26 EOS seen. Under 2^30, so every entry is a small integer to V8, also while the table is
// built by unoptimized code at module load.
const SECOND_SHIFT = 8;
const STATE_SHIFT = 16;
const COUNT_SHIFT = 24;
const FAIL_BIT = 1 << 26;
const TRANSITIONS = new Int32Array(STATES * 256);

/** Why a string may not end in a state: 0 it may, else an index into END_ERRORS. */
const END_CHECK = new Uint8Array(STATES);
const END_OK = 0;
const END_LONG_PADDING = 1;
const END_BAD_PADDING = 2;
const END_ERRORS = ['', 'padding longer than 7 bits', 'padding that is not the start of EOS (all ones)'];

buildDecodeTables();

// A function rather than a top-level block: V8 optimizes its loops sooner (module load is about 2x faster).
function buildDecodeTables(): void {
  // The code tree: child[2n + bit] of internal node n is another internal node (> 0; the root, 0,
  // is nobody's child), a leaf ~symbol (< 0), or 0 while unset.
  const child = new Int16Array(STATES * 2);
  const depth = new Uint8Array(STATES);
  const allOnes = new Uint8Array(STATES);
  allOnes[0] = 1;
  let nodes = 1;
  for (let s = 0; s < SYMBOLS; s++) {
    const len = HUFFMAN_LENGTHS[s]!;
    const code = HUFFMAN_CODES[s]!;
    let n = 0;
    for (let i = len - 1; i > 0; i--) {
      const bit = (code >>> i) & 1;
      let c = child[2 * n + bit]!;
      if (c === 0) {
        c = nodes++;
        child[2 * n + bit] = c;
        depth[c] = depth[n]! + 1;
        allOnes[c] = allOnes[n]! & bit;
      }
      n = c;
    }
    child[2 * n + (code & 1)] = ~s;
  }
  if (nodes !== STATES) throw new Error(`huffman: ${nodes} internal nodes, expected ${STATES}`);

  // Nibble steps first (a nibble completes at most one symbol), then each byte as two of them: cheaper
  // at module load than walking all 65536 (state, byte) pairs bit by bit.
  // Nibble entry: bits 0-7 symbol, 8-15 next state, 16 a symbol completed, 17 EOS seen.
  const NIBBLE_STATE_SHIFT = 8;
  const EMITS = 1 << 16;
  const NIBBLE_FAIL = 1 << 17;
  const nibbles = new Int32Array(STATES * 16);
  for (let n = 0; n < STATES; n++) {
    END_CHECK[n] =
      depth[n]! > MAX_PADDING_BITS ? END_LONG_PADDING : allOnes[n] ? END_OK : END_BAD_PADDING;
    for (let nibble = 0; nibble < 16; nibble++) {
      let state = n;
      let step = 0;
      for (let i = 3; i >= 0; i--) {
        const c = child[2 * state + ((nibble >>> i) & 1)]!;
        if (c >= 0) {
          state = c;
        } else if (~c === EOS) {
          step = NIBBLE_FAIL;
          break;
        } else {
          step = EMITS | ~c;
          state = 0;
        }
      }
      nibbles[(n << 4) | nibble] = (state << NIBBLE_STATE_SHIFT) | step;
    }
  }
  for (let n = 0; n < STATES; n++) {
    for (let byte = 0; byte < 256; byte++) {
      const a = nibbles[(n << 4) | (byte >>> 4)]!;
      const b = nibbles[(((a >>> NIBBLE_STATE_SHIFT) & 0xff) << 4) | (byte & 15)]!;
      const fail = (a | b) & NIBBLE_FAIL ? FAIL_BIT : 0;
      const count = (a & EMITS ? 1 : 0) + (b & EMITS ? 1 : 0);
      const syms = a & EMITS ? (a & 0xff) | ((b & 0xff) << SECOND_SHIFT) : b & 0xff;
      const state = (b >>> NIBBLE_STATE_SHIFT) & 0xff;
      TRANSITIONS[(n << 8) | byte] = syms | (state << STATE_SHIFT) | (count << COUNT_SHIFT) | fail;
    }
  }
}

export class HuffmanError extends Error {
  override readonly name: string = 'HuffmanError';
}

/** Grows to the longest string decoded so far; latin1Slice copies out of it. */
let scratch = Buffer.allocUnsafeSlow(256);

interface Latin1Slicer {
  latin1Slice(start: number, end: number): string;
}

/**
 * Decodes the Huffman-coded octets src[start, end) into a string of one char per octet (latin1).
 * Throws HuffmanError on an EOS symbol in the string or on padding RFC 7541 5.2 forbids.
 */
export function huffmanDecode(src: Uint8Array, start: number, end: number): string {
  // Two slack bytes: every step writes both symbol slots and then advances past the ones it filled.
  const most = (((end - start) * 8) / 5 + 2) | 0;
  if (scratch.length < most) scratch = Buffer.allocUnsafeSlow(Math.max(most, scratch.length * 2));
  const out = scratch;
  let state = 0;
  let o = 0;
  for (let i = start; i < end; i++) {
    const e = TRANSITIONS[(state << 8) | src[i]!]!;
    if (e & FAIL_BIT) throw new HuffmanError('Huffman string contains EOS');
    out[o] = e;
    out[o + 1] = e >>> SECOND_SHIFT;
    o += (e >>> COUNT_SHIFT) & 3;
    state = (e >>> STATE_SHIFT) & 0xff;
  }
  const bad = END_CHECK[state]!;
  if (bad !== END_OK) throw new HuffmanError(`Huffman string ends with ${END_ERRORS[bad]}`);
  return (out as unknown as Latin1Slicer).latin1Slice(0, o);
}

/**
 * Octets the Huffman coding of s takes, or -1 if s has a char above U+00FF (header strings are
 * octets; the caller must not send such a string at all).
 */
export function huffmanLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) return -1;
    bits += HUFFMAN_LENGTHS[c]!;
  }
  return (bits + 7) >>> 3;
}

/** Longest code piece shifted into the accumulator at once: with < 8 pending bits it stays in 31 bits. */
const MAX_PIECE_BITS = 24;

/**
 * Writes the Huffman coding of s (latin1, every char <= U+00FF) at dst[offset], padded with the
 * leading ones of EOS, and returns the offset after it. dst must have huffmanLength(s) octets free.
 */
export function huffmanEncode(s: string, dst: Uint8Array, offset: number): number {
  let acc = 0;
  let bits = 0;
  let o = offset;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) & 0xff;
    let len = HUFFMAN_LENGTHS[c]!;
    let code = HUFFMAN_CODES[c]!;
    if (len > MAX_PIECE_BITS) {
      const high = len - 16;
      acc = (acc << high) | (code >>> 16);
      bits += high;
      while (bits >= 8) dst[o++] = acc >>> (bits -= 8);
      acc &= (1 << bits) - 1;
      code &= 0xffff;
      len = 16;
    }
    acc = (acc << len) | code;
    bits += len;
    while (bits >= 8) dst[o++] = acc >>> (bits -= 8);
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) dst[o++] = (acc << (8 - bits)) | (0xff >>> bits);
  return o;
}
