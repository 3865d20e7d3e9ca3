/**
 * Free loopback ports for members started by tests, `chaos` and `bench`: picked below the
 * ephemeral range, so no outgoing connection takes one as its source port before the member
 * binds it.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

function tryPort(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** Where Linux's ephemeral ports (the source ports of outgoing connections) begin. */
function ephemeralLow(): number {
  try {
    const lo = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(lo) ? lo : 32768;
  } catch {
    return 32768;
  }
}
const LOW = 10_000;
const HIGH = ephemeralLow() - 2;

/**
 * A free loopback port below the ephemeral range: a port the OS hands out for port 0 is one that
 * any outgoing connection (a member redialing a peer that is not up yet, a health poll) may take as
 * its source port before the member binds it, which made a member fail with EADDRINUSE.
 */
export async function anyPort(): Promise<number> {
  if (HIGH - LOW < 1000) {
    return new Promise((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
  }
  for (;;) {
    const p = LOW + Math.floor(Math.random() * (HIGH - LOW));
    if (await tryPort(p)) return p;
  }
}

/** n ports p such that p and p+1 are free (a member's peer port and its metrics port beside it). */
export async function freePortPairs(n: number): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) {
    const p = await anyPort();
    if (p < 65535 && !out.includes(p) && !out.includes(p + 1) && !out.includes(p - 1) && (await tryPort(p + 1))) out.push(p);
  }
  return out;
}

export async function freePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) {
    const p = await anyPort();
    if (!out.includes(p)) out.push(p);
  }
  return out;
}
