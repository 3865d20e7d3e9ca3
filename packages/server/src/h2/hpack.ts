// HPACK (RFC 7541): header compression for our HTTP/2 server.
//
// Header strings are octets and come out as latin1 JS strings (one char per octet). The decoder's
// dynamic table holds the decoded strings themselves, so a field sent as an index (what a gRPC client
// does with :path, :authority, content-type, te, user-agent after the first call) hands out the same
// string objects again instead of allocating new ones.
import { HuffmanError, huffmanDecode, huffmanEncode, huffmanLength } from './huffman.js';

/** RFC 9113 6.5.2: the initial SETTINGS_HEADER_TABLE_SIZE, which both ends assume until told otherwise. */
export const DEFAULT_TABLE_SIZE = 4096;
/** The SETTINGS_MAX_HEADER_LIST_SIZE we advertise by default. */
export const DEFAULT_MAX_HEADER_LIST_SIZE = 65536;
/** RFC 7541 4.1 (and RFC 9113 6.5.2 for the header list): an entry costs its octets plus 32. */
const ENTRY_OVERHEAD = 32;
/** Integers (indexes, lengths, sizes) past this are garbage or an attack. */
const MAX_INT = 0x7fffffff;
/** Continuation octets after a full prefix: 5 x 7 bits reach past MAX_INT, so more are only zero padding. */
const MAX_INT_CONTINUATIONS = 5;
/** First size of a dynamic table's ring; it doubles as entries arrive. */
const INITIAL_RING = 16;

/** RFC 7541 Appendix A, index 1..61 (0 is not an index). */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];
const STATIC_COUNT = STATIC_TABLE.length;
// Flat, 1-based copies so the decoder's indexed path is two array reads.
const STATIC_NAMES: readonly string[] = ['', ...STATIC_TABLE.map(([n]) => n)];
const STATIC_VALUES: readonly string[] = ['', ...STATIC_TABLE.map(([, v]) => v)];

/** The encoder's view of the static table: a name's first index, and the index of each full field. */
interface StaticName {
  readonly index: number;
  readonly values: Map<string, number>;
}
const STATIC_BY_NAME = new Map<string, StaticName>();
STATIC_TABLE.forEach(([name, value], i) => {
  let e = STATIC_BY_NAME.get(name);
  if (!e) STATIC_BY_NAME.set(name, (e = { index: i + 1, values: new Map() }));
  if (!e.values.has(value)) e.values.set(value, i + 1);
});

/** The connection answers this with a connection error of type COMPRESSION_ERROR (RFC 9113 4.3). */
export class HpackError extends Error {
  override readonly name: string = 'HpackError';
}

/**
 * The block decoded fine and the dynamic table is up to date, but its header list is over
 * maxHeaderListSize: the caller can refuse the stream (431 / RST_STREAM) and keep the connection.
 */
export class HeaderListTooLong extends HpackError {
  override readonly name: string = 'HeaderListTooLong';
  constructor(
    readonly size: number,
    readonly limit: number,
  ) {
    super(`header list of ${size} octets is over the limit of ${limit}`);
  }
}

/**
 * An HPACK dynamic table: a ring of names and values, newest at index 1. Sizes are string lengths,
 * which are octet counts because every string here is latin1.
 */
class DynamicTable {
  names: string[] = new Array<string>(INITIAL_RING).fill('');
  values: string[] = new Array<string>(INITIAL_RING).fill('');
  private mask = INITIAL_RING - 1;
  /** Slot the next entry goes in. */
  private next = 0;
  count = 0;
  size = 0;

  constructor(public max: number) {}

  /** Ring slot of dynamic index d (0 = newest); the caller checks d < count. */
  slot(d: number): number {
    return (this.next - 1 - d) & this.mask;
  }

  /** RFC 7541 4.4: an entry bigger than the whole table is not added, and leaves it empty. */
  add(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    if (size > this.max) {
      while (this.count > 0) this.evict();
      return;
    }
    while (this.size + size > this.max) this.evict();
    if (this.count === this.names.length) this.grow();
    this.names[this.next] = name;
    this.values[this.next] = value;
    this.next = (this.next + 1) & this.mask;
    this.count++;
    this.size += size;
  }

  resize(max: number): void {
    this.max = max;
    while (this.size > max) this.evict();
  }

  /** Ring slot of the oldest entry; the caller checks count > 0. */
  oldest(): number {
    return (this.next - this.count) & this.mask;
  }

  evict(): void {
    const slot = this.oldest();
    this.size -= this.names[slot]!.length + this.values[slot]!.length + ENTRY_OVERHEAD;
    this.count--;
    // Let a long value go now rather than when the ring comes round again.
    this.names[slot] = this.values[slot] = '';
  }

  private grow(): void {
    const n = this.names.length;
    const names = new Array<string>(2 * n).fill('');
    const values = new Array<string>(2 * n).fill('');
    // Oldest first into the new ring, so slot order is again insertion order from 0.
    for (let i = 0; i < this.count; i++) {
      const from = (this.next - this.count + i) & this.mask;
      names[i] = this.names[from]!;
      values[i] = this.values[from]!;
    }
    this.names = names;
    this.values = values;
    this.mask = 2 * n - 1;
    this.next = this.count;
  }
}

interface Latin1Slicer {
  latin1Slice(start: number, end: number): string;
}
const EMPTY = Buffer.alloc(0);

export class HpackDecoder {
  private readonly table: DynamicTable;
  // The block being decoded, as instance state so the readers need no result objects.
  private buf: Buffer = EMPTY;
  private pos = 0;
  private end = 0;

  /**
   * @param maxTableSize the SETTINGS_HEADER_TABLE_SIZE we advertise: the table starts at this size and
   *   a dynamic table size update may not go past it. Advertising less than DEFAULT_TABLE_SIZE is only
   *   safe once the peer has acknowledged it: blocks it sent before may use the default.
   * @param maxHeaderListSize the SETTINGS_MAX_HEADER_LIST_SIZE we advertise (RFC 9113 6.5.2 sizes).
   */
  constructor(
    readonly maxTableSize = DEFAULT_TABLE_SIZE,
    readonly maxHeaderListSize = DEFAULT_MAX_HEADER_LIST_SIZE,
  ) {
    this.table = new DynamicTable(maxTableSize);
  }

  /** Octets in the dynamic table (RFC 7541 4.1). */
  get tableSize(): number {
    return this.table.size;
  }

  /** The dynamic table, newest first, as [name, value, ...]: for tests and debugging. */
  tableEntries(): string[] {
    const out: string[] = [];
    for (let d = 0; d < this.table.count; d++) {
      const slot = this.table.slot(d);
      out.push(this.table.names[slot]!, this.table.values[slot]!);
    }
    return out;
  }

  /**
   * Decodes one complete header block (HEADERS and its CONTINUATIONs joined) into [name, value, ...].
   * Any HpackError but HeaderListTooLong leaves the table out of step with the peer's: the connection
   * must end.
   */
  decode(block: Uint8Array): string[] | HpackError {
    this.buf = Buffer.isBuffer(block) ? block : Buffer.from(block.buffer, block.byteOffset, block.byteLength);
    this.pos = 0;
    this.end = block.length;
    try {
      return this.fields();
    } catch (e) {
      if (e instanceof HpackError) return e;
      if (e instanceof HuffmanError) return new HpackError(e.message);
      throw e;
    } finally {
      this.buf = EMPTY;
    }
  }

  private fields(): string[] | HpackError {
    const { buf, table } = this;
    const out: string[] = [];
    let listSize = 0;
    let sawField = false;
    while (this.pos < this.end) {
      const b = buf[this.pos]!;
      let name: string;
      let value: string;
      if (b >= 0x80) {
        // 6.1 indexed field
        const i = this.integer(0x7f);
        if (i <= STATIC_COUNT) {
          if (i === 0) throw new HpackError('index 0');
          name = STATIC_NAMES[i]!;
          value = STATIC_VALUES[i]!;
        } else {
          const slot = table.slot(this.dynamicIndex(i));
          name = table.names[slot]!;
          value = table.values[slot]!;
        }
      } else if (b >= 0x40) {
        // 6.2.1 literal with incremental indexing
        const i = this.integer(0x3f);
        name = i === 0 ? this.string() : this.nameAt(i);
        value = this.string();
        table.add(name, value);
      } else if (b >= 0x20) {
        // 6.3 dynamic table size update: 4.2 allows it only before the block's first field
        if (sawField) throw new HpackError('dynamic table size update after a header field');
        const size = this.integer(0x1f);
        if (size > this.maxTableSize) {
          throw new HpackError(`dynamic table size update to ${size}, over the ${this.maxTableSize} we allow`);
        }
        table.resize(size);
        continue;
      } else {
        // 6.2.2 without indexing (0000) and 6.2.3 never indexed (0001): the same to an endpoint that
        // does not forward headers.
        const i = this.integer(0x0f);
        name = i === 0 ? this.string() : this.nameAt(i);
        value = this.string();
      }
      sawField = true;
      // Past the limit the rest is still decoded, to keep the table in step, but not kept.
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      if (listSize <= this.maxHeaderListSize) out.push(name, value);
    }
    return listSize > this.maxHeaderListSize ? new HeaderListTooLong(listSize, this.maxHeaderListSize) : out;
  }

  /** 0-based position in the dynamic table of HPACK index i > STATIC_COUNT. */
  private dynamicIndex(i: number): number {
    const d = i - STATIC_COUNT - 1;
    if (d >= this.table.count) {
      throw new HpackError(`index ${i} past the end of the table (${STATIC_COUNT} + ${this.table.count})`);
    }
    return d;
  }

  private nameAt(i: number): string {
    return i <= STATIC_COUNT ? STATIC_NAMES[i]! : this.table.names[this.table.slot(this.dynamicIndex(i))]!;
  }

  /** RFC 7541 5.1, with the prefix mask (2^N - 1) of the current octet; the caller checked pos < end. */
  private integer(prefix: number): number {
    let v = this.buf[this.pos++]! & prefix;
    if (v < prefix) return v;
    let scale = 1;
    for (let k = 0; k < MAX_INT_CONTINUATIONS; k++) {
      if (this.pos >= this.end) throw new HpackError('integer truncated by the end of the block');
      const b = this.buf[this.pos++]!;
      v += (b & 0x7f) * scale;
      if (v > MAX_INT) throw new HpackError('integer overflow');
      if (b < 0x80) return v;
      scale *= 128;
    }
    throw new HpackError('integer overflow');
  }

  /** RFC 7541 5.2. */
  private string(): string {
    if (this.pos >= this.end) throw new HpackError('string literal truncated by the end of the block');
    const huffman = this.buf[this.pos]! & 0x80;
    const len = this.integer(0x7f);
    const start = this.pos;
    if (len > this.end - start) {
      throw new HpackError(`string of ${len} octets runs past the end of the block (${this.end - start} left)`);
    }
    this.pos = start + len;
    return huffman
      ? huffmanDecode(this.buf, start, this.pos)
      : (this.buf as unknown as Latin1Slicer).latin1Slice(start, this.pos);
  }
}

/** Header names whose values are nearly always new: indexing them would only push out the useful entries. */
const NOT_INDEXED: ReadonlySet<string> = new Set(['content-length', 'date', 'grpc-message', 'set-cookie']);
/** Fields bigger than this share of the table are sent without indexing rather than flush it. */
const MAX_INDEXED_SHARE = 3 / 4;
/** Worst-case octets of an HPACK integer, prefix octet included (values < 2^35). */
const MAX_INT_BYTES = 6;
/** In the encoder's per-field lookup: in no table. (Static hits are -index, dynamic ones insertion numbers >= 0.) */
const NOT_FOUND = -(STATIC_COUNT + 1);

function checkOctets(s: string): void {
  for (let j = 0; j < s.length; j++) {
    if (s.charCodeAt(j) > 0xff) throw new RangeError(`header string ${JSON.stringify(s)} is not octets`);
  }
}

/** The encoder's index of its dynamic table: each value of a name, by insertion number. */
interface DynamicName {
  latest: number;
  readonly values: Map<string, number>;
}

export class HpackEncoder {
  private readonly table: DynamicTable;
  /** Entries ever inserted: the entry inserted as number k has HPACK index STATIC_COUNT + inserted - k. */
  private inserted = 0;
  private readonly byName = new Map<string, DynamicName>();
  /** A table size update owed at the start of the next block, and the smallest size since the last one. */
  private pendingSize = -1;
  private pendingMin = -1;
  private out = Buffer.allocUnsafeSlow(1024);
  private o = 0;
  /** Per field of the block being encoded: what encode() found in the tables before writing. */
  private found = new Float64Array(16);

  /**
   * @param limit the most table memory we will spend, whatever the peer allows; the table starts at
   *   min(limit, DEFAULT_TABLE_SIZE), the size the peer's decoder assumes until we say otherwise.
   */
  constructor(private readonly limit = DEFAULT_TABLE_SIZE) {
    this.table = new DynamicTable(Math.min(limit, DEFAULT_TABLE_SIZE));
    if (limit < DEFAULT_TABLE_SIZE) this.pendingSize = this.pendingMin = limit;
  }

  /** The peer's SETTINGS_HEADER_TABLE_SIZE; the next block starts with a size update (RFC 7541 4.2, 6.3). */
  setMaxTableSize(n: number): void {
    const size = Math.min(n, this.limit);
    this.pendingSize = size;
    this.pendingMin = this.pendingMin < 0 ? size : Math.min(this.pendingMin, size);
  }

  /**
   * Encodes [name, value, ...] (names lower-case; every char <= U+00FF, else RangeError before anything
   * changes). Fields whose name is in `sensitive` go out as never-indexed literals (RFC 7541 7.1.3).
   */
  encode(headers: readonly string[], sensitive?: ReadonlySet<string>): Buffer {
    const n = headers.length;
    if (n % 2 !== 0) throw new RangeError('headers must be [name, value, ...] pairs');
    if (this.found.length < n / 2) this.found = new Float64Array(Math.max(n / 2, 2 * this.found.length));
    const found = this.found;
    // Look every field up before anything changes, and check the strings of those in no table (the
    // others are octets already): a throw halfway through the block would leave our table ahead of the
    // peer's.
    let bound = 2 * MAX_INT_BYTES; // two size updates
    for (let i = 0; i < n; i += 2) {
      const name = headers[i]!;
      const value = headers[i + 1]!;
      bound += name.length + value.length + 3 * MAX_INT_BYTES;
      let f = NOT_FOUND;
      if (!sensitive?.has(name)) {
        const s = STATIC_BY_NAME.get(name)?.values.get(value);
        f = s !== undefined ? -s : (this.byName.get(name)?.values.get(value) ?? NOT_FOUND);
      }
      found[i >> 1] = f;
      if (f === NOT_FOUND) {
        checkOctets(name);
        checkOctets(value);
      }
    }
    if (this.out.length < bound) this.out = Buffer.allocUnsafeSlow(Math.max(bound, 2 * this.out.length));
    this.o = 0;

    if (this.pendingSize >= 0) {
      if (this.pendingMin < this.pendingSize) this.sizeUpdate(this.pendingMin);
      this.sizeUpdate(this.pendingSize);
      this.pendingSize = this.pendingMin = -1;
    }

    for (let i = 0; i < n; i += 2) {
      // 6.1 indexed, from the static table or from the dynamic one if the entry is still there
      const f = found[i >> 1]!;
      if (f < 0 && f !== NOT_FOUND) {
        this.integer(0x80, 0x7f, -f);
        continue;
      }
      if (f >= this.inserted - this.table.count) {
        this.integer(0x80, 0x7f, STATIC_COUNT + this.inserted - f);
        continue;
      }
      const name = headers[i]!;
      const value = headers[i + 1]!;
      const st = STATIC_BY_NAME.get(name);
      const dyn = this.byName.get(name);
      const nameIndex = st ? st.index : dyn ? STATIC_COUNT + this.inserted - dyn.latest : 0;
      if (sensitive?.has(name)) {
        this.literal(0x10, 0x0f, nameIndex, name, value); // 6.2.3 never indexed
        continue;
      }
      // Inserted by an earlier field of this block.
      const k = dyn?.values.get(value);
      if (k !== undefined) {
        this.integer(0x80, 0x7f, STATIC_COUNT + this.inserted - k);
        continue;
      }
      const size = name.length + value.length + ENTRY_OVERHEAD;
      if (NOT_INDEXED.has(name) || size > this.table.max * MAX_INDEXED_SHARE) {
        this.literal(0x00, 0x0f, nameIndex, name, value); // 6.2.2 without indexing
        continue;
      }
      this.literal(0x40, 0x3f, nameIndex, name, value); // 6.2.1 with incremental indexing
      this.insert(name, value);
    }
    const block = Buffer.allocUnsafe(this.o);
    this.out.copy(block, 0, 0, this.o);
    return block;
  }

  private sizeUpdate(size: number): void {
    this.integer(0x20, 0x1f, size);
    while (this.table.size > size) this.evict();
    this.table.resize(size);
  }

  /** Only called for entries that fit in the table (see MAX_INDEXED_SHARE), so add() evicts nothing itself. */
  private insert(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    while (this.table.size + size > this.table.max) this.evict();
    this.table.add(name, value);
    const k = this.inserted++;
    let dyn = this.byName.get(name);
    if (!dyn) this.byName.set(name, (dyn = { latest: k, values: new Map() }));
    dyn.latest = k;
    dyn.values.set(value, k);
  }

  /** Evicts the oldest entry from the table and from the lookup maps. */
  private evict(): void {
    const slot = this.table.oldest();
    const name = this.table.names[slot]!;
    const value = this.table.values[slot]!;
    const k = this.inserted - this.table.count;
    this.table.evict();
    const dyn = this.byName.get(name);
    if (dyn?.values.get(value) !== k) return;
    dyn.values.delete(value);
    // Eviction is oldest first: with this name's newest entry gone, all of them are.
    if (dyn.latest === k) this.byName.delete(name);
  }

  private literal(flags: number, prefix: number, nameIndex: number, name: string, value: string): void {
    this.integer(flags, prefix, nameIndex);
    if (nameIndex === 0) this.string(name);
    this.string(value);
  }

  /** RFC 7541 5.1 */
  private integer(flags: number, prefix: number, v: number): void {
    const out = this.out;
    if (v < prefix) {
      out[this.o++] = flags | v;
      return;
    }
    out[this.o++] = flags | prefix;
    v -= prefix;
    while (v >= 0x80) {
      out[this.o++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 0x80);
    }
    out[this.o++] = v;
  }

  /** RFC 7541 5.2: Huffman when it is shorter. */
  private string(s: string): void {
    const h = huffmanLength(s);
    if (h < s.length) {
      this.integer(0x80, 0x7f, h);
      this.o = huffmanEncode(s, this.out, this.o);
      return;
    }
    this.integer(0x00, 0x7f, s.length);
    const out = this.out;
    for (let j = 0; j < s.length; j++) out[this.o++] = s.charCodeAt(j);
  }
}
