/**
 * The environment a member process starts with. glibc reads its tunables (GLIBC_TUNABLES) only
 * when a process starts, so whoever spawns a member sets them: `capstan up`, and the chaos
 * cluster that bench/ and chaos/ (and their tests) start members with. Other tests start members
 * without it: it changes nothing they check.
 *
 * malloc's heap in transparent huge pages (`glibc.malloc.hugetlb=1`: malloc asks for them with
 * madvise, which is all a host with THP in `madvise` mode grants). A member's Buffers live in
 * malloc's heap, and it touches 2.9-4.5 MB of it every half second under a light load: about a
 * thousand 4 KiB pages, or two or three 2 MiB ones, for the TLB to refill after every switch and
 * for the kernel's memory monitor (DAMON, where the host runs it) to find accessed. Which of the
 * two it saves was not measured apart; the monitor's own CPU fell by about a quarter. Measured on
 * the project's VM, four pairs of `bench --target capstan --workloads
 * put,txn-cas,lease-grant,lease-keepalive,watch`, with / without: watch p99 22.5 / 26.9,
 * 27.3 / 29.6, 26.6 / 36.6, 22.9 / 36.1 ms, kdamond 4.5-5.3% of a CPU against 5.9-7.2%, and the
 * heavy workloads' throughput unchanged (bench/FINDINGS.md, session 46).
 */

/** The tunable a member is started with. */
export const MEMBER_GLIBC_TUNABLE = 'glibc.malloc.hugetlb=1';

/** The environment variable glibc reads its tunables from: name=value entries separated by colons. */
export const GLIBC_TUNABLES = 'GLIBC_TUNABLES';

function tunableName(entry: string): string {
  const eq = entry.indexOf('=');
  return eq < 0 ? entry : entry.slice(0, eq);
}

/** Whether a GLIBC_TUNABLES value sets the tunable MEMBER_GLIBC_TUNABLE sets, to any value. */
export function setsMallocHugePages(tunables: string | undefined): boolean {
  const name = tunableName(MEMBER_GLIBC_TUNABLE);
  return (tunables ?? '').split(':').some((e) => tunableName(e) === name);
}

/**
 * The GLIBC_TUNABLES value for a member, given the one it would inherit: MEMBER_GLIBC_TUNABLE
 * appended, unless the given value already sets that tunable (then it wins, as it is).
 */
export function memberTunables(given: string | undefined): string {
  if (given === undefined || given === '') return MEMBER_GLIBC_TUNABLE;
  return setsMallocHugePages(given) ? given : `${given}:${MEMBER_GLIBC_TUNABLE}`;
}
