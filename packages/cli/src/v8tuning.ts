/**
 * V8 settings for a member process, set before the server's code is loaded.
 *
 * V8 optimizes a function once it has run a budget of bytecode (67,584 bytes by default in Node
 * 20). A member's hot paths run once or twice per request, so at a few hundred sequential puts a
 * second the leader was still optimizing functions (about 300 of them) 12 s after its first
 * request, and a put took 4-5 ms at first against 2 ms once warm (bench/README.md, "A member's
 * warm-up"). With an eighth of the budget the count levels off within about 5 s. Throughput once
 * warm did not move (put 16x16, fresh clusters, default / 8 KiB: 35,615 / 34,148, 34,983 /
 * 38,050 and 27,847 / 34,559 puts in 12 s).
 */
import { setFlagsFromString } from 'node:v8';

/** V8's --interrupt-budget for members: bytes of bytecode a function runs before V8 considers optimizing it. */
export const MEMBER_INTERRUPT_BUDGET_BYTES = 8 * 1024;

/**
 * Lowers V8's interrupt budget unless the process was started with its own (`node
 * --interrupt-budget=N capstan member ...` wins). Only functions compiled afterwards see it, hence
 * before the server is imported. Returns whether it set the flag.
 */
export function tuneV8ForMember(execArgv: readonly string[] = process.execArgv): boolean {
  if (execArgv.some((a) => /^--interrupt[-_]budget(=|$)/.test(a))) return false;
  setFlagsFromString(`--interrupt-budget=${MEMBER_INTERRUPT_BUDGET_BYTES}`);
  return true;
}
