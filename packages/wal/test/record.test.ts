// An entry record's payload is written by hand: it must be the msgpack msgpackr would have written,
// byte for byte, so WALs from before read the same and decodePayload reads both.
import t from 'tap';
import { Packr } from 'msgpackr';
import { EntryType, type Entry } from '@capstan/raft';
import { HEADER_BYTES, RecordEncoder, RecordType, parseRecordAt } from '../src/record.js';

const packr = new Packr({ useRecords: false });
const numbers = [0, 1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1];
const sizes = [0, 1, 255, 256, 65_535, 65_536, 70_000];

t.test("an entry's payload is msgpackr's bytes, and parses back", async (t) => {
  let checked = 0;
  for (const term of numbers) {
    for (const size of sizes) {
      const index = numbers[(checked * 7) % numbers.length]!;
      const entry: Entry = { term, index, type: checked % 2 === 0 ? EntryType.Normal : EntryType.ConfChange, data: new Uint8Array(size).fill(checked & 0xff) };
      const enc = new RecordEncoder(16);
      enc.reset(0);
      enc.add({ type: RecordType.Entry, entry }, true);
      const bytes = enc.bytes.subarray(0, enc.length);
      const want = packr.pack([entry.term, entry.index, entry.type, entry.data]);
      if (!bytes.subarray(HEADER_BYTES).equals(want)) t.fail(`term ${term}, index ${index}, ${size} bytes: ${bytes.subarray(HEADER_BYTES, HEADER_BYTES + 24).toString('hex')} vs ${want.subarray(0, 24).toString('hex')}`);
      const parsed = parseRecordAt(bytes, 0, 0);
      if (parsed.kind !== 'record' || parsed.record.type !== RecordType.Entry) {
        t.fail(`term ${term}, ${size} bytes: ${parsed.kind}`);
        continue;
      }
      const back = parsed.record.entry;
      if (back.term !== term || back.index !== index || back.type !== entry.type || !Buffer.from(back.data).equals(entry.data)) t.fail(`term ${term}, ${size} bytes: came back different`);
      checked++;
    }
  }
  t.equal(checked, numbers.length * sizes.length);
});
