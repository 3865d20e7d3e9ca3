import t from 'tap';
import { crc32c } from '../src/crc32c.js';
import { prng } from './helpers.js';

/** The textbook bytewise CRC-32C (reflected polynomial 0x82F63B78), to check the native one against. */
const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function reference(bytes: Uint8Array, seed = 0): number {
  let c = ~seed >>> 0;
  for (const b of bytes) c = TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

t.test('CRC-32C check values', async (t) => {
  t.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283, 'the standard check value');
  t.equal(crc32c(new Uint8Array(32)), 0x8a9136aa, 'RFC 3720 B.4: 32 bytes of zeros');
  t.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43, 'RFC 3720 B.4: 32 bytes of ones');
  t.equal(crc32c(new Uint8Array(0)), 0);
});

t.test('matches the bytewise reference, and chaining equals one CRC over the concatenation', async (t) => {
  const rng = prng(99);
  for (let i = 0; i < 200; i++) {
    const a = Uint8Array.from({ length: rng.int(600) }, () => rng.int(256));
    const b = Uint8Array.from({ length: rng.int(600) }, () => rng.int(256));
    const both = new Uint8Array(a.length + b.length);
    both.set(a);
    both.set(b, a.length);
    if (crc32c(a) !== reference(a)) t.fail(`case ${i}: native != reference`);
    if (crc32c(b, crc32c(a)) !== crc32c(both)) t.fail(`case ${i}: chained != whole`);
    if (crc32c(b, crc32c(a)) !== reference(b, reference(a))) t.fail(`case ${i}: chained != reference chained`);
  }
  t.pass('200 random cases');
});
