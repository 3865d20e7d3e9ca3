/**
 * DAMON, the kernel's data access monitor, as this host runs it. A kdamond thread that monitors
 * physical memory wakes every sampling interval and walks page tables for milliseconds at a time
 * without yielding; on a small VM that takes a CPU from the members and the load generator at
 * once. Measured on a 2-CPU VM sampling every 500 ms: kdamond ran 4-17 ms per sample (3.9% of a
 * CPU), a sleeping probe woke 4-14 ms late at that period, and every system's put and watch
 * latency had a stall at it. A thread woken onto kdamond's CPU waits for it even while the other
 * CPU idles (the kernel leaves a task that just ran where it is), which costs a program that does
 * its work on one thread (a Capstan member) more than one whose work moves between threads (Go's
 * etcd): bench/README.md, "The kernel's memory monitor (DAMON)". The bench names it so such tails
 * are read for what they are.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { weighted } from './rounds.js';

export const DAMON_SYSFS = '/sys/kernel/mm/damon/admin';

/** One monitoring context of a running kdamond. */
export interface DamonMonitor {
  pid: number;
  /** `paddr` (physical memory: every process) or `vaddr`/`fvaddr` (chosen processes). */
  operations: string;
  /** Undefined when its sampling interval cannot be read (no `sample_us` file, or not a number). */
  sampleMs: number | undefined;
  /** What its schemes do to the regions they match (pageout, lru_prio, ...). */
  actions: string[];
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Numbered subdirectories (0, 1, ...) of a DAMON sysfs directory. */
function indexes(dir: string): string[] {
  try {
    return readdirSync(dir).filter((d) => /^\d+$/.test(d));
  } catch {
    return [];
  }
}

/** The contexts of every kdamond that is on, or none where DAMON's sysfs is absent or unreadable. */
export function damonMonitors(root = DAMON_SYSFS): DamonMonitor[] {
  const out: DamonMonitor[] = [];
  const kdamonds = join(root, 'kdamonds');
  for (const k of indexes(kdamonds)) {
    const dir = join(kdamonds, k);
    const pid = Number(read(join(dir, 'pid')));
    if (read(join(dir, 'state')) !== 'on' || !Number.isInteger(pid) || pid <= 0) continue;
    for (const c of indexes(join(dir, 'contexts'))) {
      const ctx = join(dir, 'contexts', c);
      const sampleUs = Number(read(join(ctx, 'monitoring_attrs', 'intervals', 'sample_us')) ?? NaN);
      const actions = indexes(join(ctx, 'schemes'))
        .map((s) => read(join(ctx, 'schemes', s, 'action')))
        .filter((a): a is string => a !== undefined && a !== '');
      out.push({ pid, operations: read(join(ctx, 'operations')) ?? 'unknown', sampleMs: Number.isFinite(sampleUs) && sampleUs > 0 ? sampleUs / 1000 : undefined, actions });
    }
  }
  return out;
}

/**
 * CPU seconds the monitors' kdamond threads have used (by `cpuSeconds`, the members' reader), or
 * undefined when one cannot be read.
 */
export function damonCpuSeconds(monitors: readonly DamonMonitor[], cpuSeconds: (pid: number) => number | undefined): number | undefined {
  let total = 0;
  for (const pid of new Set(monitors.map((m) => m.pid))) {
    const s = cpuSeconds(pid);
    if (s === undefined) return undefined;
    total += s;
  }
  return total;
}

/** A measured window's length, its system, and the kdamond CPU in it (WorkloadResult's shape). */
interface DamonWindow {
  readonly target: string;
  readonly durationMs: number;
  readonly cpu?: { readonly kdamondPercent?: number };
}

/**
 * kdamond's CPU (percent of one) in each system's measured windows, weighted by their length:
 * how hard the monitor worked beside each system, which the run's whole figure mixes (settling,
 * start-up, both systems). A system with a window that did not read it is left out.
 */
export function damonCpuByTarget(windows: readonly DamonWindow[]): Record<string, number> {
  const byTarget = new Map<string, DamonWindow[]>();
  for (const w of windows) byTarget.set(w.target, [...(byTarget.get(w.target) ?? []), w]);
  const out: Record<string, number> = {};
  for (const [target, ws] of byTarget) {
    const p = weighted(ws, (w) => w.cpu?.kdamondPercent);
    if (p !== undefined) out[target] = p;
  }
  return out;
}

/** One line for the console and the report, or undefined when no kdamond runs. */
export function describeDamon(monitors: readonly DamonMonitor[], cpuPercent?: number, byTarget: Readonly<Record<string, number>> = {}): string | undefined {
  if (monitors.length === 0) return undefined;
  const each = monitors.map((m) => {
    const what = m.operations === 'paddr' ? 'physical memory' : `${m.operations} address spaces`;
    const acts = m.actions.length > 0 ? ` (schemes: ${m.actions.join(', ')})` : '';
    const every = m.sampleMs === undefined ? 'at an interval it does not show' : `every ${m.sampleMs} ms`;
    return `kdamond ${m.pid} samples ${what} ${every}${acts}`;
  });
  const used: string[] = [];
  if (cpuPercent !== undefined) used.push(`; it used ${cpuPercent.toFixed(1)}% of a CPU during the run`);
  const beside = Object.entries(byTarget).map(([target, p]) => `${p.toFixed(1)}% beside ${target}`);
  if (beside.length > 0) used.push(`; in the measured windows ${beside.join(', ')}`);
  const cpu = used.join('');
  return `DAMON is on: ${each.join('; ')}${cpu}. Each sample holds a CPU for milliseconds, so latency tails (p99, max) of every system measured here include stalls at that period.`;
}
