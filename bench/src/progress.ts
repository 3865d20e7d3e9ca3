/**
 * Progress on stderr: on a terminal, one line redrawn in place (a bar, the step, operations so
 * far and their rate); otherwise plain lines, one when a step begins and one when it ends.
 */
export class Progress {
  private lastDraw = 0;
  private drawn = false;

  constructor(
    private readonly out: NodeJS.WriteStream | { write(s: string): boolean; isTTY?: boolean; columns?: number },
    private readonly totalSteps: number,
  ) {}

  get tty(): boolean {
    return this.out.isTTY === true;
  }

  /** A step begins. */
  begin(step: number, label: string): void {
    if (!this.tty) this.out.write(`[${step}/${this.totalSteps}] ${label} ...\n`);
  }

  /** Redraws the bar (at most 10 times a second). */
  update(step: number, label: string, fraction: number, ops: number, elapsedMs: number): void {
    if (!this.tty) return;
    const now = Date.now();
    if (now - this.lastDraw < 100 && fraction < 1) return;
    this.lastDraw = now;
    const width = 24;
    const full = Math.round(Math.max(0, Math.min(1, fraction)) * width);
    const rate = elapsedMs > 0 ? Math.round((ops / elapsedMs) * 1000) : 0;
    let line = `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${step}/${this.totalSteps} ${label}  ${ops.toLocaleString('en-US')} recorded  ${rate.toLocaleString('en-US')}/s`;
    const cols = (this.out as { columns?: number }).columns ?? 100;
    if (line.length > cols - 1) line = line.slice(0, cols - 1);
    this.out.write(`\r${line}\x1b[K`);
    this.drawn = true;
  }

  /** A step ended: its summary line (kept on a terminal too). */
  end(step: number, summary: string): void {
    if (this.tty && this.drawn) this.out.write('\r\x1b[K');
    this.drawn = false;
    this.out.write(`[${step}/${this.totalSteps}] ${summary}\n`);
  }

  /** A line of its own (clears the bar first). */
  note(line: string): void {
    if (this.tty && this.drawn) this.out.write('\r\x1b[K');
    this.drawn = false;
    this.out.write(`${line}\n`);
  }
}
