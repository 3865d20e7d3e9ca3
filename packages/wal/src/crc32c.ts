// CRC-32C (Castagnoli), as etcd's WAL uses. @node-rs/crc32 ships prebuilt SSE4.2/ARMv8 binaries as
// optional per-platform packages, so it loads without install scripts; its `initialState`
// continues a CRC from a previous value, which is exactly the chaining the record format needs.
import { crc32c as native } from '@node-rs/crc32';

/** CRC-32C of `bytes`, continuing from `seed` (the CRC of everything before them). */
export function crc32c(bytes: Uint8Array, seed = 0): number {
  return native(bytes, seed) >>> 0;
}
