/**
 * V8 settings for a member process, set before the server's code is loaded. Each is skipped when
 * the process was started with its own value (`node --flag=N capstan member ...` wins).
 *
 * Interrupt budget: V8 optimizes a function once it has run a budget of bytecode (67,584 bytes
 * by default in Node 20). A member's hot paths run once or twice per request, so at a few hundred
 * sequential puts a second the leader was still optimizing functions (about 300 of them) 12 s
 * after its first request, and a put took 4-5 ms at first against 2 ms once warm (bench/README.md,
 * "A member's warm-up"). With an eighth of the budget the count levels off within about 5 s.
 * Throughput once warm did not move (put 16x16, fresh clusters, default / 8 KiB: 35,615 / 34,148,
 * 34,983 / 38,050 and 27,847 / 34,559 puts in 12 s).
 *
 * Heap growing: after each full collection V8 sets the next one's trigger at live size times a
 * factor it derives from how fast it collects against how fast the program allocates. A member
 * under light load allocates slowly, so V8 picks its floor, 1.1 (plus an 8 MiB step): a leader
 * holding 40 MB of live data after a heavy workload (the Raft log up to --snapshot-count, the key
 * index) did a full collection every 1.75 s while serving 100 puts/s, each with 20-35 ms of
 * incremental marking on the main thread and a 5-12 ms pause (bench/FINDINGS.md, "Full collections
 * under light load"). Under heavy load V8 itself picks its ceiling, 4.0. The member's factor is
 * fixed at that ceiling. It was 2 (Go's GOGC=100) until a load generator that no longer limited
 * the cluster showed a full collection every 0.8-0.9 s on every member under 256 lease keepalive
 * streams (6-18 ms pauses); fresh clusters under 16x16 puts, 3 x 10 s each, alternating, gave put
 * p99 38.9 ms on average at 4.0 against 43.3 ms at 2 (15 runs each; lower in 4 of 5 pairs).
 */
import { setFlagsFromString } from 'node:v8';

/** V8's --interrupt-budget for members: bytes of bytecode a function runs before V8 considers optimizing it. */
export const MEMBER_INTERRUPT_BUDGET_BYTES = 8 * 1024;

/** V8's --heap-growing-percent for members: the next full collection at four times the live heap, V8's own ceiling. */
export const MEMBER_HEAP_GROWING_PERCENT = 300;

const MEMBER_FLAGS: readonly { readonly name: string; readonly value: number }[] = [
  { name: 'interrupt-budget', value: MEMBER_INTERRUPT_BUDGET_BYTES },
  { name: 'heap-growing-percent', value: MEMBER_HEAP_GROWING_PERCENT },
];

/** Whether argv sets V8 flag `name` (dashes or underscores, `--f=N` or `--f N`). */
function givenIn(execArgv: readonly string[], name: string): boolean {
  const pattern = new RegExp(`^--${name.replace(/-/g, '[-_]')}(=|$)`);
  return execArgv.some((a) => pattern.test(a));
}

/**
 * Sets the member's V8 flags that the process was not started with. Only functions compiled
 * afterwards see the budget, hence before the server is imported. Returns the flags it set.
 */
export function tuneV8ForMember(execArgv: readonly string[] = process.execArgv): string[] {
  const set: string[] = [];
  for (const { name, value } of MEMBER_FLAGS) {
    if (givenIn(execArgv, name)) continue;
    const flag = `--${name}=${value}`;
    setFlagsFromString(flag);
    set.push(flag);
  }
  return set;
}
