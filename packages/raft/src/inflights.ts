// The window of MsgApps sent to one follower and not yet acknowledged. While it is full the leader
// stops sending to that follower: this is the flow control that keeps a slow follower from
// buffering the whole log in the transport.

export class Inflights {
  /** Last index of each in-flight message, oldest first, in a ring. */
  private readonly indexes: number[];
  private readonly sizes: number[];
  private start = 0;
  private count = 0;
  private bytes = 0;

  constructor(
    readonly maxMessages: number,
    /** 0 means no byte limit. */
    readonly maxBytes: number,
  ) {
    if (maxMessages <= 0) throw new RangeError('raft: maxInflightMsgs must be positive');
    this.indexes = new Array<number>(maxMessages).fill(0);
    this.sizes = new Array<number>(maxMessages).fill(0);
  }

  get length(): number {
    return this.count;
  }

  full(): boolean {
    return this.count === this.maxMessages || (this.maxBytes > 0 && this.bytes >= this.maxBytes);
  }

  /** Records a message whose last entry is `index`. Indexes must increase. */
  add(index: number, bytes: number): void {
    if (this.count === this.maxMessages) throw new Error('raft: cannot add into a full inflights window');
    const slot = (this.start + this.count) % this.maxMessages;
    this.indexes[slot] = index;
    this.sizes[slot] = bytes;
    this.count++;
    this.bytes += bytes;
  }

  /** Frees every message whose last index is <= `to` (they are acknowledged). */
  freeLE(to: number): void {
    while (this.count > 0 && this.indexes[this.start]! <= to) {
      this.bytes -= this.sizes[this.start]!;
      this.start = (this.start + 1) % this.maxMessages;
      this.count--;
    }
    if (this.count === 0) this.start = 0;
  }

  /** Frees the oldest message: a heartbeat reply shows the follower is alive, so let one more through. */
  freeFirstOne(): void {
    if (this.count === 0) return;
    this.freeLE(this.indexes[this.start]!);
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
    this.bytes = 0;
  }
}
