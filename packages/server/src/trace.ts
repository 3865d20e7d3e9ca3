/**
 * etcd's request traces (pkg/traceutil): a request that took longer than a threshold is logged
 * once, as `trace[N] <operation>`, with its fields, start, end, duration, and the steps that took
 * a fair share of it. Operators grep etcd's logs for these, so ours read the same way.
 */

import { goDuration } from '@capstan/wal';

/** What a trace logs through: the member's structured logger. */
export type TraceLog = (level: 'info' | 'warn', msg: string, fields: Record<string, unknown>) => void;

interface Step {
  readonly msg: string;
  readonly at: number;
}

/** Numbers the traces of one process, as etcd's random trace[N] tells the lines of one trace apart. */
let traceCount = 0;

/** A trace's fields, in the order they are logged. */
export type TraceFields = ReadonlyArray<readonly [string, string | number]>;

export class RequestTrace {
  /** performance.now() when the request arrived. */
  readonly start: number;
  /** Allocated by the first step or field: most requests are quick, and most have none. */
  private steps: Step[] | undefined;
  private fields: Array<readonly [string, string | number]> | undefined;

  /** `detail` gives the request's own fields; it is only called for a trace that is logged. */
  constructor(
    readonly operation: string,
    private readonly detail: () => TraceFields,
    start = performance.now(),
  ) {
    this.start = start;
  }

  /** Marks the end of a step: the time since the previous mark (or the start) was spent on `msg`. */
  step(msg: string, at = performance.now()): void {
    (this.steps ??= []).push({ msg, at });
  }

  /** A field learned on the way (the response's revision, say), logged after the request's own. */
  field(key: string, value: string | number): void {
    (this.fields ??= []).push([key, value]);
  }

  /**
   * Logs the trace if the request took longer than `thresholdMs` (etcd's LogIfLong), listing the
   * steps that took more than the threshold's share of them. Returns whether it logged.
   */
  logIfLong(thresholdMs: number, log: TraceLog, end = performance.now()): boolean {
    const duration = end - this.start;
    if (duration <= thresholdMs) return false;
    const n = ++traceCount;
    const steps = this.steps ?? [];
    const stepThreshold = thresholdMs / (steps.length + 1);
    const listed: string[] = [];
    let last = this.start;
    for (const s of steps) {
      const took = s.at - last;
      if (took > stepThreshold) listed.push(`trace[${n}] '${s.msg}'  (duration: ${goDuration(took)})`);
      last = s.at;
    }
    const fields = [...this.detail(), ...(this.fields ?? [])];
    log('info', `trace[${n}] ${this.operation}`, {
      detail: `{${fields.map(([k, v]) => `${k}:${v}; `).join('')}}`,
      duration: goDuration(duration),
      start: isoAt(this.start),
      end: isoAt(end),
      steps: listed,
    });
    return true;
  }
}

/** A performance.now() reading as wall-clock ISO time. */
function isoAt(perfMs: number): string {
  return new Date(performance.timeOrigin + perfMs).toISOString();
}
