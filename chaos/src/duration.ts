/**
 * The durations chaos and bench take on their command lines: `90s`, `1.5s`, `500ms`, `2m`, `1h`,
 * and a bare number is seconds. (A member's own flags are Go durations, cli `parseGoDuration`.)
 */
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `v` in whole milliseconds, or undefined when it is not a duration. */
export function durationMs(v: string): number | undefined {
  const m = DURATION.exec(v);
  if (m === null) return undefined;
  return Math.round(Number(m[1]) * UNIT_MS[m[2] ?? 's']!);
}
