/**
 * A TCP proxy for one link, on loopback: it forwards bytes between whoever connects and a target,
 * and can cut the link (both ways, or one way), delay it and heal it, without root.
 *
 * - "forward" is the direction from the connecting side (the client) to the target, "backward"
 *   the reverse.
 * - Cut both ways: existing connections are reset (so both ends notice at once) and new ones
 *   are reset as soon as they are accepted.
 * - Cut one way: bytes in that direction are held, never dropped: the proxy stops reading them
 *   (so the sender's socket buffers fill and its writes back up, as over a link that loses every
 *   packet in that direction while TCP retransmits) and delivers them, in order, on heal. Dropping
 *   bytes in the middle of a stream would hand the receiver a stream with a gap, which no network
 *   under TCP ever does. The other direction goes on flowing.
 * - Delay: every chunk is held for the delay before it is written on, in order (a chunk is never
 *   written before one that arrived earlier, even if the delay shrinks meanwhile).
 *
 * A proxy may be given a classify function that names the source of each accepted connection
 * (ChaosCluster names the member process that dialed). State can then be set per source: what a
 * connection gets is the proxy-wide state combined with its source's (cuts add up; the larger
 * delay wins). Connections that classify cannot name have the source UNKNOWN_SOURCE.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export type Direction = 'both' | 'forward' | 'backward';

/** Largest delay accepted, per direction. */
export const MAX_DELAY_MS = 60_000;
/** Bytes a connection may hold in one direction (delayed, or waiting on a slow reader) before the proxy stops reading from the sender. */
export const MAX_HELD_BYTES = 4 * 1024 * 1024;
/** Connections open at once through one proxy; more are closed on accept. */
export const MAX_CONNECTIONS = 1024;
/** A connection to the target that is not established in this long is given up (and the client's closed). */
export const CONNECT_TIMEOUT_MS = 5_000;
/** A classify call that takes longer than this leaves the connection's source unknown. */
export const CLASSIFY_TIMEOUT_MS = 2_000;
/** The source of connections classify could not name. */
export const UNKNOWN_SOURCE = '?';

export interface LinkState {
  readonly forwardCut: boolean;
  readonly backwardCut: boolean;
  readonly forwardDelayMs: number;
  readonly backwardDelayMs: number;
}

export const HEALTHY: LinkState = Object.freeze({ forwardCut: false, backwardCut: false, forwardDelayMs: 0, backwardDelayMs: 0 });

export interface LinkProxyOptions {
  readonly target: { readonly host: string; readonly port: number };
  /** Port to listen on (0, the default: any free port). */
  readonly port?: number;
  /** Address to listen on; 127.0.0.1 by default. */
  readonly host?: string;
  /** Names the source of an accepted connection; undefined (or an error, or a timeout) means UNKNOWN_SOURCE. */
  readonly classify?: (socket: Socket) => Promise<string | undefined>;
}

export interface LinkProxyStats {
  /** Connections accepted, by source. */
  readonly accepted: Record<string, number>;
  /** Connections open now. */
  readonly open: number;
  /** Bytes written on, per direction. */
  readonly forwardBytes: number;
  readonly backwardBytes: number;
}

function combine(a: LinkState, b: LinkState): LinkState {
  return {
    forwardCut: a.forwardCut || b.forwardCut,
    backwardCut: a.backwardCut || b.backwardCut,
    forwardDelayMs: Math.max(a.forwardDelayMs, b.forwardDelayMs),
    backwardDelayMs: Math.max(a.backwardDelayMs, b.backwardDelayMs),
  };
}

function checkDelay(ms: number): number {
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_DELAY_MS) throw new RangeError(`delay must be within 0..${MAX_DELAY_MS} ms, not ${ms}`);
  return ms;
}

/** Bytes from src written on to dst, subject to a cut (hold) and a delay; order always kept. */
class Pump {
  private readonly queue: Array<{ chunk: Buffer; at: number }> = [];
  private held = 0;
  private lastAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private waitingDrain = false;
  private srcEnded = false;
  private done = false;

  constructor(
    private readonly src: Socket,
    private readonly dst: Socket,
    private readonly state: () => { cut: boolean; delayMs: number },
    private readonly count: (n: number) => void,
  ) {
    src.on('data', (chunk: Buffer) => {
      const at = Math.max(this.lastAt, performance.now() + this.state().delayMs);
      this.lastAt = at;
      this.queue.push({ chunk, at });
      this.held += chunk.length;
      this.flush();
    });
    src.on('end', () => {
      this.srcEnded = true;
      this.flush();
    });
    dst.on('drain', () => {
      this.waitingDrain = false;
      this.flush();
    });
  }

  /** Writes what is due, holds the rest, and reads on only while there is room and no cut. */
  flush(): void {
    if (this.done || this.dst.destroyed) return;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const { cut } = this.state();
    if (!cut) {
      const t = performance.now();
      while (!this.waitingDrain && this.queue.length > 0 && this.queue[0]!.at <= t) {
        const { chunk } = this.queue.shift()!;
        this.held -= chunk.length;
        this.count(chunk.length);
        if (!this.dst.write(chunk)) this.waitingDrain = true;
      }
      if (this.queue.length > 0 && !this.waitingDrain) {
        this.timer = setTimeout(() => this.flush(), Math.max(0, this.queue[0]!.at - t));
      }
      if (this.queue.length === 0 && this.srcEnded) {
        this.done = true;
        this.dst.end();
        return;
      }
    }
    if (cut || this.waitingDrain || this.held >= MAX_HELD_BYTES) this.src.pause();
    else if (!this.srcEnded) this.src.resume();
  }

  stop(): void {
    this.done = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * Closes with a reset (so the other end notices at once, as an error, not as a clean end). Not
 * on a socket still connecting or already half-closed by end(): libuv refuses to reset a socket
 * with a shutdown under way, and Node then drops the handle without closing it, which can leave
 * the process spinning at exit.
 */
function abort(s: Socket): void {
  if (s.destroyed) return;
  if (s.connecting || s.writableEnded) {
    s.destroy();
    return;
  }
  try {
    s.resetAndDestroy();
  } catch {
    s.destroy();
  }
}

class Connection {
  upstream: Socket | undefined;
  private pumps: Pump[] = [];
  private closed = false;

  constructor(
    readonly client: Socket,
    readonly source: string,
    private readonly proxy: LinkProxy,
  ) {}

  start(target: { host: string; port: number }): void {
    const up = connect({ host: target.host, port: target.port, allowHalfOpen: true });
    this.upstream = up;
    up.setNoDelay(true);
    this.client.setNoDelay(true);
    const timer = setTimeout(() => this.destroy(), CONNECT_TIMEOUT_MS);
    up.once('connect', () => {
      clearTimeout(timer);
      if (this.closed) return;
      const s = () => this.proxy.stateOf(this.source);
      this.pumps = [
        new Pump(this.client, up, () => ({ cut: s().forwardCut, delayMs: s().forwardDelayMs }), (n) => this.proxy.counted('forward', n)),
        new Pump(up, this.client, () => ({ cut: s().backwardCut, delayMs: s().backwardDelayMs }), (n) => this.proxy.counted('backward', n)),
      ];
      for (const p of this.pumps) p.flush();
    });
    for (const sock of [this.client, up]) {
      sock.on('error', () => this.destroy());
      sock.on('close', () => {
        clearTimeout(timer);
        // A socket closed without a clean end (or before the pumps began): nothing more can pass.
        // After a clean end, the other direction finishes on its own, and the last close forgets it.
        if (this.pumps.length === 0 || !sock.readableEnded || (this.client.destroyed && up.destroyed)) this.destroy();
      });
    }
  }

  update(): void {
    const s = this.proxy.stateOf(this.source);
    if (s.forwardCut && s.backwardCut) this.destroy();
    else for (const p of this.pumps) p.flush();
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pumps) p.stop();
    abort(this.client);
    if (this.upstream !== undefined) abort(this.upstream);
    this.proxy.forget(this);
  }
}

export class LinkProxy {
  private readonly server: Server;
  private readonly conns = new Set<Connection>();
  /** Proxy-wide state, and per-source state on top of it. */
  private all: LinkState = HEALTHY;
  private readonly bySource = new Map<string, LinkState>();
  private readonly accepted: Record<string, number> = {};
  private forwardBytes = 0;
  private backwardBytes = 0;
  private closed = false;
  private boundPort = 0;

  private constructor(private readonly opts: LinkProxyOptions) {
    this.server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (s) => void this.accept(s));
  }

  /** A proxy listening (on opts.port, or any free port) and forwarding to opts.target. */
  static async listen(opts: LinkProxyOptions): Promise<LinkProxy> {
    const p = new LinkProxy(opts);
    await new Promise<void>((resolve, reject) => {
      p.server.once('error', reject);
      p.server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
        p.server.off('error', reject);
        resolve();
      });
    });
    p.boundPort = (p.server.address() as { port: number }).port;
    return p;
  }

  get port(): number {
    return this.boundPort;
  }

  get host(): string {
    return this.opts.host ?? '127.0.0.1';
  }

  /** Cuts the link (for one source only, if given): both ways destroys its connections. */
  cut(direction: Direction = 'both', source?: string): void {
    const s = this.get(source);
    this.set(source, {
      ...s,
      forwardCut: s.forwardCut || direction !== 'backward',
      backwardCut: s.backwardCut || direction !== 'forward',
    });
  }

  /** Adds ms of latency to every chunk in the given direction(s) (for one source only, if given); 0 removes it. */
  delay(ms: number, direction: Direction = 'both', source?: string): void {
    checkDelay(ms);
    const s = this.get(source);
    this.set(source, {
      ...s,
      forwardDelayMs: direction !== 'backward' ? ms : s.forwardDelayMs,
      backwardDelayMs: direction !== 'forward' ? ms : s.backwardDelayMs,
    });
  }

  /** Removes every cut and delay (only one source's, if given); held bytes flow on. */
  heal(source?: string): void {
    if (source === undefined) {
      this.all = HEALTHY;
      this.bySource.clear();
      this.refresh();
    } else this.set(source, HEALTHY);
  }

  /** Sets the whole state at once (proxy-wide when source is undefined). */
  set(source: string | undefined, state: LinkState): void {
    checkDelay(state.forwardDelayMs);
    checkDelay(state.backwardDelayMs);
    if (source === undefined) this.all = { ...state };
    else this.bySource.set(source, { ...state });
    this.refresh();
  }

  /** The state set (proxy-wide when source is undefined), not combined. */
  get(source?: string): LinkState {
    return source === undefined ? this.all : (this.bySource.get(source) ?? HEALTHY);
  }

  /** What a connection from this source gets: the proxy-wide state combined with its own. */
  stateOf(source: string): LinkState {
    const own = this.bySource.get(source);
    return own === undefined ? this.all : combine(this.all, own);
  }

  stats(): LinkProxyStats {
    return { accepted: { ...this.accepted }, open: this.conns.size, forwardBytes: this.forwardBytes, backwardBytes: this.backwardBytes };
  }

  /** Stops listening and destroys every connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of [...this.conns]) c.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** @internal */
  counted(direction: 'forward' | 'backward', n: number): void {
    if (direction === 'forward') this.forwardBytes += n;
    else this.backwardBytes += n;
  }

  /** @internal */
  forget(c: Connection): void {
    this.conns.delete(c);
  }

  private refresh(): void {
    for (const c of [...this.conns]) c.update();
  }

  private async accept(client: Socket): Promise<void> {
    client.on('error', () => client.destroy());
    if (this.closed || this.conns.size >= MAX_CONNECTIONS) {
      abort(client);
      return;
    }
    let source = UNKNOWN_SOURCE;
    if (this.opts.classify !== undefined) {
      let timer: NodeJS.Timeout | undefined;
      try {
        const named = await Promise.race([
          this.opts.classify(client),
          new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), CLASSIFY_TIMEOUT_MS))),
        ]);
        if (named !== undefined) source = named;
      } catch {
        // left unknown
      } finally {
        clearTimeout(timer);
      }
    }
    this.accepted[source] = (this.accepted[source] ?? 0) + 1;
    const s = this.stateOf(source);
    if (this.closed || client.destroyed || (s.forwardCut && s.backwardCut) || this.conns.size >= MAX_CONNECTIONS) {
      abort(client);
      return;
    }
    const c = new Connection(client, source, this);
    this.conns.add(c);
    c.start(this.opts.target);
  }
}
