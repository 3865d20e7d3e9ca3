/**
 * etcd's contention.TimeoutDetector, as its leader uses it: the time between two heartbeats to the
 * same follower should be one heartbeat interval; at more than twice that, the leader's loop was
 * held up (a slow disk, a long pause) and etcd warns "leader failed to send out heartbeat on time".
 */
export class TimeoutDetector {
  private readonly last = new Map<number, number>();

  constructor(readonly maxMs: number) {}

  /** Records an event for `id` at `now` (ms); returns by how much it came later than maxMs after the previous one (0 if not late). */
  observe(id: number, now: number): number {
    const prev = this.last.get(id);
    this.last.set(id, now);
    if (prev === undefined) return 0;
    return Math.max(0, now - prev - this.maxMs);
  }

  /** Forgets every previous event: a new leader starts its heartbeats afresh. */
  reset(): void {
    this.last.clear();
  }
}
