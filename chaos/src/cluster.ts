/**
 * A cluster of real member processes (Capstan, or Debian's etcd 3.4) on loopback, with every
 * member-to-member byte passing through LinkProxy instances this class controls, so links can be
 * cut, cut one way, delayed and healed without root; members can be killed, restarted, paused.
 *
 * Partition scheme. --initial-cluster must be the same on every member (member IDs are hashed from
 * the advertised peer URLs), so every member dials member j at one address: j's advertised peer
 * URL. That address is a proxy ("front" proxy of j), and j itself listens for peers on a hidden
 * port only the proxy knows. One proxy per destination could only cut all of j's inbound traffic,
 * so the proxy also finds out which member dialed each connection it accepts: the dialer's side
 * of the connection is a socket in the dialer's process, so /proc/net/tcp gives its inode (by the
 * dialer's port and the proxy's port) and /proc/<pid>/fd of the member processes gives its owner.
 * That is Linux-only and needs no privileges (the members are our own children). With the source
 * of every connection known, each ordered pair of members is a link of its own:
 *
 *   blocked[i][j] (messages from i to j are lost) holds the bytes i sends on connections i dialed
 *   to j (forward at j's proxy, source i) and the bytes i answers on connections j dialed to i
 *   (backward at i's proxy, source j). Both blocked[i][j] and blocked[j][i]: every connection
 *   between them is destroyed and new ones are closed on accept.
 *
 * So any pattern can be cut: one member isolated both ways, inbound only or outbound only,
 * majority/minority splits, a bridge (two sides that cannot reach each other but can both reach
 * one member), one-way cuts between any groups, rings; and each ordered link can be delayed.
 * "One way" is at the byte level: a request protocol over a one-way cut also loses its answers
 * (a gRPC stream i→j whose flow-control updates from j are held stalls once its window is used
 * up), as over a real link that loses all packets one way; held bytes are delivered in order on
 * heal, never dropped. What cannot be cut: client traffic (clients connect to members directly),
 * a member's traffic with itself, and connections the proxy cannot attribute to a member (counted
 * in unidentified(); these are closed while any cut touches their destination, so a partition
 * never leaks through them).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { noop } from 'cockatiel';
import { Etcd3, type IStatusResponse } from 'etcd3';
import { GLIBC_TUNABLES, memberTunables } from '@capstan/cli/member-env';
import { anyPort } from '@capstan/cli/ports';
import { etcdBinaries, REPO_ROOT } from './etcd-binaries.js';
import { HEALTHY, LinkProxy, UNKNOWN_SOURCE, type LinkProxyStats } from './proxy.js';

export type Target = 'capstan' | 'etcd';
/** Which of a member's links an isolation cuts: both ways, only what comes in, only what goes out. */
export type IsolateMode = 'both' | 'inbound' | 'outbound';

/** The capstan command line (built by `tsc -b`). */
export const CAPSTAN_MAIN = join(REPO_ROOT, 'packages/cli/dist/src/main.js');
/** A cluster must elect a leader within this long of starting. */
export const START_TIMEOUT_MS = 30_000;
/** A (re)started member must accept connections on its client port within this long. */
export const READY_TIMEOUT_MS = 20_000;
/** leader() gives up (undefined) after this long by default. */
export const LEADER_TIMEOUT_MS = 10_000;
/** One Maintenance.Status call. */
export const STATUS_TIMEOUT_MS = 1_000;
/** A member asked to exit by a catchable signal is SIGKILLed if still running after this long. */
export const EXIT_TIMEOUT_MS = 10_000;
/** Attempts (and the pause between them) to find the process behind an accepted peer connection. */
export const IDENTIFY_ATTEMPTS = 5;
export const IDENTIFY_RETRY_MS = 20;
/** Lines of a member's log quoted in errors. */
const LOG_TAIL_LINES = 30;
const POLL_MS = 100;
/** A member that does not answer the failpoint endpoint within this is taken as not armed. */
const FAILPOINT_ARM_TIMEOUT_MS = 2000;
/** Capstan's (see packages/server): not imported, as chaos drives members only from outside. */
const FAILPOINTS_ENV = 'CAPSTAN_FAILPOINTS';
const FAILPOINTS_PATH = '/debug/failpoints';

export interface ChaosClusterOptions {
  readonly target: Target;
  /** Members (3 or 5 in practice; 1..9 accepted). */
  readonly members: number;
  /** Member logs (m<i>.log, stdout and stderr of every start) go here. */
  readonly resultsDir: string;
  /** Member data directories (m<i>); resultsDir/data by default. Left in place by close(). */
  readonly dataDir?: string;
  readonly heartbeatMs?: number;
  readonly electionMs?: number;
  /** Environment added for every start of every member. */
  readonly env?: Readonly<Record<string, string>>;
  /** Flags added to every member's command line. */
  readonly extraArgs?: readonly string[];
  /** Wait for a leader before start() resolves (default true). */
  readonly waitForLeader?: boolean;
  /**
   * Route peer traffic through the front proxies (default true). Without them (bench/) members
   * dial each other directly and the network methods (cutLink, partition, delay...) throw.
   */
  readonly peerProxies?: boolean;
  /** Node.js flags before the capstan script (e.g. --cpu-prof); Capstan members only. */
  readonly nodeArgs?: readonly string[];
}

interface Member {
  readonly index: number;
  readonly name: string;
  readonly clientPort: number;
  /** Where the member listens for peers (only its proxy connects there, unless there are no proxies). */
  readonly hiddenPeerPort: number;
  readonly metricsPort: number;
  readonly dataDir: string;
  readonly logPath: string;
  args: string[];
  proc: ChildProcess | undefined;
  exited: Promise<void> | undefined;
  paused: boolean;
  /** Member ID as etcd's API reports it (decimal string), learned from Status. */
  id: string | undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** The inode of the socket with local port `local` connected to remote port `remote`, from /proc/net/tcp{,6}. */
async function socketInode(local: number, remote: number): Promise<string | undefined> {
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const lp = parseInt(f[1]!.slice(f[1]!.lastIndexOf(':') + 1), 16);
      const rp = parseInt(f[2]!.slice(f[2]!.lastIndexOf(':') + 1), 16);
      if (lp === local && rp === remote && f[9] !== '0') return f[9];
    }
  }
  return undefined;
}

/** Whether process pid holds the socket with this inode. */
async function holdsSocket(pid: number, inode: string): Promise<boolean> {
  const want = `socket:[${inode}]`;
  let fds: string[];
  try {
    fds = await readdir(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  for (const fd of fds) {
    try {
      if ((await readlink(`/proc/${pid}/fd/${fd}`)) === want) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

/**
 * Which of the given processes dialed this accepted connection (Linux: by /proc), or undefined.
 * Exported for tests.
 */
export async function dialerOf(accepted: Socket, pids: ReadonlyMap<string, number>): Promise<string | undefined> {
  const local = accepted.remotePort;
  const remote = accepted.localPort;
  if (local === undefined || remote === undefined) return undefined;
  for (let attempt = 0; attempt < IDENTIFY_ATTEMPTS; attempt++) {
    if (attempt > 0) await sleep(IDENTIFY_RETRY_MS);
    const inode = await socketInode(local, remote);
    if (inode === undefined) continue;
    for (const [name, pid] of pids) if (await holdsSocket(pid, inode)) return name;
  }
  return undefined;
}

function tail(path: string): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-LOG_TAIL_LINES).join('\n');
  } catch {
    return '';
  }
}

export class ChaosCluster {
  readonly size: number;
  private readonly members: Member[] = [];
  private readonly proxies: LinkProxy[] = [];
  /** blocked[i][j]: messages from member i to member j are lost. */
  private readonly blocked: boolean[][];
  /** delays[i][j]: ms added to bytes from member i to member j. */
  private readonly delays: number[][];
  private readonly statusClients = new Map<number, Etcd3>();
  private readonly onProcessExit = (): void => {
    for (const m of this.members) m.proc?.kill('SIGKILL');
  };
  private closed = false;

  private constructor(readonly opts: ChaosClusterOptions) {
    if (!Number.isInteger(opts.members) || opts.members < 1 || opts.members > 9) throw new RangeError(`members must be 1..9, not ${opts.members}`);
    this.size = opts.members;
    this.blocked = Array.from({ length: this.size }, () => Array<boolean>(this.size).fill(false));
    this.delays = Array.from({ length: this.size }, () => Array<number>(this.size).fill(0));
  }

  get target(): Target {
    return this.opts.target;
  }

  /** Starts every member (and its proxy) and, unless told otherwise, waits for a leader. */
  static async start(opts: ChaosClusterOptions): Promise<ChaosCluster> {
    const c = new ChaosCluster(opts);
    try {
      await c.boot();
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  private async boot(): Promise<void> {
    const { opts } = this;
    if (opts.target === 'etcd') etcdBinaries();
    mkdirSync(opts.resultsDir, { recursive: true });
    const dataRoot = opts.dataDir ?? join(opts.resultsDir, 'data');
    mkdirSync(dataRoot, { recursive: true });
    // Member ports: three each (client, hidden peer, metrics), all distinct.
    const ports: number[] = [];
    while (ports.length < this.size * 3) {
      const p = await anyPort();
      if (!ports.includes(p)) ports.push(p);
    }
    for (let i = 0; i < this.size; i++) {
      const m: Member = {
        index: i,
        name: `m${i}`,
        clientPort: ports[3 * i]!,
        hiddenPeerPort: ports[3 * i + 1]!,
        metricsPort: ports[3 * i + 2]!,
        dataDir: join(dataRoot, `m${i}`),
        logPath: join(opts.resultsDir, `m${i}.log`),
        args: [],
        proc: undefined,
        exited: undefined,
        paused: false,
        id: undefined,
      };
      this.members.push(m);
      if (opts.peerProxies === false) continue;
      // The proxy takes any free port: that port is the member's advertised peer URL.
      this.proxies.push(
        await LinkProxy.listen({
          target: { host: '127.0.0.1', port: m.hiddenPeerPort },
          classify: (s) => dialerOf(s, this.memberPids()),
        }),
      );
    }
    this.applyLinks();
    const token = `chaos-${process.pid}-${Date.now().toString(36)}`;
    const cluster = this.members.map((m) => `${m.name}=${this.peerURL(m.index)}`).join(',');
    for (const m of this.members) {
      const client = `http://127.0.0.1:${m.clientPort}`;
      m.args = [
        `--name=${m.name}`,
        `--data-dir=${m.dataDir}`,
        `--listen-client-urls=${client}`,
        `--advertise-client-urls=${client}`,
        `--listen-peer-urls=http://127.0.0.1:${m.hiddenPeerPort}`,
        `--initial-advertise-peer-urls=${this.peerURL(m.index)}`,
        `--initial-cluster=${cluster}`,
        `--initial-cluster-token=${token}`,
        '--initial-cluster-state=new',
        `--listen-metrics-urls=http://127.0.0.1:${m.metricsPort}`,
        `--heartbeat-interval=${opts.heartbeatMs ?? 50}`,
        `--election-timeout=${opts.electionMs ?? 500}`,
        ...(opts.extraArgs ?? []),
      ];
    }
    process.on('exit', this.onProcessExit);
    for (const m of this.members) this.spawn(m, undefined);
    await Promise.all(this.members.map((m) => this.ready(m)));
    if (opts.waitForLeader !== false) {
      const l = await this.leader({ timeoutMs: START_TIMEOUT_MS });
      if (l === undefined) throw new Error(`no leader within ${START_TIMEOUT_MS} ms\n${this.members.map((m) => `--- ${m.logPath}\n${tail(m.logPath)}`).join('\n')}`);
    }
  }

  private memberPids(): Map<string, number> {
    const pids = new Map<string, number>();
    for (const m of this.members) if (m.proc?.pid !== undefined && this.isRunning(m.index)) pids.set(String(m.index), m.proc.pid);
    return pids;
  }

  private spawn(m: Member, extraEnv: Readonly<Record<string, string>> | undefined): void {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (v === undefined) continue;
      // etcd reads ETCD_* variables as flags; a member is its own program, not part of a test run.
      if (k.startsWith('ETCD_') && k !== 'ETCD_UNSUPPORTED_ARCH') continue;
      if (k === 'NODE_OPTIONS') continue;
      env[k] = v;
    }
    // Set (empty: nothing armed) so that failpoints can be armed while the member runs.
    if (this.opts.target === 'capstan') {
      env[FAILPOINTS_ENV] = '';
      // As `capstan up` starts members (packages/cli/src/memberenv.ts).
      env[GLIBC_TUNABLES] = memberTunables(env[GLIBC_TUNABLES]);
    }
    Object.assign(env, this.opts.env ?? {}, extraEnv ?? {});
    const [cmd, args] =
      this.opts.target === 'capstan' ? [process.execPath, [...(this.opts.nodeArgs ?? []), CAPSTAN_MAIN, 'member', ...m.args]] : [etcdBinaries().etcd, m.args];
    appendFileSync(m.logPath, `=== ${new Date().toISOString()} chaos: starting ${m.name}: ${cmd} ${args.join(' ')}${extraEnv ? ` (env ${JSON.stringify(extraEnv)})` : ''}\n`);
    const fd = openSync(m.logPath, 'a');
    let proc: ChildProcess;
    try {
      proc = spawn(cmd, args, { stdio: ['ignore', fd, fd], env });
    } finally {
      closeSync(fd);
    }
    m.proc = proc;
    m.paused = false;
    m.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        try {
          appendFileSync(m.logPath, `=== ${new Date().toISOString()} chaos: ${m.name} (pid ${proc.pid}) exited: ${signal ?? `code ${code}`}\n`);
        } catch {
          // results dir gone
        }
        resolve();
      });
      proc.once('error', (err) => {
        try {
          appendFileSync(m.logPath, `=== chaos: ${m.name} could not start: ${err.message}\n`);
        } catch {
          // results dir gone
        }
        resolve();
      });
    });
  }

  /** Until the member accepts connections on its client port; throws if it exits first. */
  private async ready(m: Member): Promise<void> {
    const start = Date.now();
    while (!(await portOpen(m.clientPort))) {
      if (!this.isRunning(m.index)) throw new Error(`${m.name} exited while starting\n--- ${m.logPath}\n${tail(m.logPath)}`);
      if (Date.now() - start > READY_TIMEOUT_MS) throw new Error(`${m.name} did not listen on ${m.clientPort} within ${READY_TIMEOUT_MS} ms\n${tail(m.logPath)}`);
      await sleep(50);
    }
  }

  private check(i: number): Member {
    const m = this.members[i];
    if (m === undefined) throw new RangeError(`no member ${i} (cluster of ${this.size})`);
    return m;
  }

  // ---- processes ----

  /** Whether member i's process is alive (a paused one is). */
  isRunning(i: number): boolean {
    const p = this.check(i).proc;
    return p !== undefined && p.pid !== undefined && p.exitCode === null && p.signalCode === null;
  }

  isPaused(i: number): boolean {
    return this.isRunning(i) && this.check(i).paused;
  }

  pid(i: number): number | undefined {
    return this.isRunning(i) ? this.check(i).proc!.pid : undefined;
  }

  /** Sends the signal (SIGKILL by default) to member i and waits for it to exit; a no-op if it is not running. */
  async kill(i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const m = this.check(i);
    if (!this.isRunning(i)) return;
    const proc = m.proc!;
    proc.kill(signal);
    if (m.paused && signal !== 'SIGKILL') proc.kill('SIGCONT');
    m.paused = false;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), EXIT_TIMEOUT_MS)));
    if (await Promise.race([m.exited!.then(() => false), late])) {
      proc.kill('SIGKILL');
      await m.exited;
    }
    clearTimeout(timer);
    this.dropStatusClient(i);
  }

  /**
   * Starts member i again with its data directory (SIGKILLing it first if it is running), and
   * waits until it listens. env is added for this start only (failpoints, say).
   */
  async restart(i: number, opts: { env?: Readonly<Record<string, string>> } = {}): Promise<void> {
    if (this.closed) throw new Error('cluster closed');
    const m = this.check(i);
    await this.kill(i, 'SIGKILL');
    this.spawn(m, opts.env);
    await this.ready(m);
  }

  /** Whether members have named failpoints to arm (Capstan's; etcd's need a gofail build). */
  get failpoints(): boolean {
    return this.opts.target === 'capstan';
  }

  /** Arms a failpoint in running member i (`name=term` as in CAPSTAN_FAILPOINTS). */
  async armFailpoint(i: number, name: string, term: string): Promise<void> {
    const m = this.check(i);
    if (!this.failpoints) throw new Error(`${this.opts.target} members have no failpoints to arm`);
    const r = await fetch(`http://127.0.0.1:${m.metricsPort}${FAILPOINTS_PATH}/${name}`, { method: 'PUT', body: term, signal: AbortSignal.timeout(FAILPOINT_ARM_TIMEOUT_MS) });
    if (r.status !== 204) throw new Error(`arming ${name}=${term} in ${m.name}: ${r.status} ${await r.text()}`);
  }

  /** Whether member i exits by itself within ms (a failpoint fired, say). */
  async exitsWithin(i: number, ms: number): Promise<boolean> {
    const m = this.check(i);
    if (!this.isRunning(i)) return true;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
    const exited = await Promise.race([m.exited!.then(() => true), late]);
    clearTimeout(timer);
    if (exited) this.dropStatusClient(i);
    return exited;
  }

  /** SIGSTOP. */
  stop(i: number): void {
    const m = this.check(i);
    if (!this.isRunning(i)) return;
    m.proc!.kill('SIGSTOP');
    m.paused = true;
  }

  /** SIGCONT. */
  cont(i: number): void {
    const m = this.check(i);
    if (!this.isRunning(i)) return;
    m.proc!.kill('SIGCONT');
    m.paused = false;
  }

  pause(i: number): void {
    this.stop(i);
  }

  resume(i: number): void {
    this.cont(i);
  }

  // ---- network ----

  /** Messages from member `from` to member `to` are lost (until healed). */
  cutLink(from: number, to: number): void {
    this.check(from);
    this.check(to);
    if (from !== to) this.blocked[from]![to] = true;
    this.applyLinks();
  }

  healLink(from: number, to: number): void {
    this.check(from);
    this.check(to);
    this.blocked[from]![to] = false;
    this.delays[from]![to] = 0;
    this.applyLinks();
  }

  /** Cuts every link from a member of a to a member of b, and back unless oneWay. */
  partition(a: readonly number[], b: readonly number[], oneWay = false): void {
    for (const x of a) this.check(x);
    for (const y of b) this.check(y);
    for (const x of a)
      for (const y of b) {
        if (x === y) continue;
        this.blocked[x]![y] = true;
        if (!oneWay) this.blocked[y]![x] = true;
      }
    this.applyLinks();
  }

  /** Cuts member i off from every other member: both ways, only what reaches it, or only what leaves it. */
  isolate(i: number, mode: IsolateMode = 'both'): void {
    const others = this.others(i);
    if (mode === 'both') this.partition([i], others);
    else if (mode === 'inbound') this.partition(others, [i], true);
    else this.partition([i], others, true);
  }

  /**
   * A bridge: the other members are split into two halves that cannot reach each other, and
   * member i still reaches (and is reached by) all of them.
   */
  bridge(i: number): { left: number[]; right: number[] } {
    const others = this.others(i);
    const left = others.slice(0, Math.ceil(others.length / 2));
    const right = others.slice(left.length);
    this.partition(left, right);
    return { left, right };
  }

  /** Adds ms of latency to the link from→to, or to every link when from/to are left out. */
  delay(ms: number, from?: number, to?: number): void {
    for (let i = 0; i < this.size; i++)
      for (let j = 0; j < this.size; j++) {
        if (i === j || (from !== undefined && i !== from) || (to !== undefined && j !== to)) continue;
        this.delays[i]![j] = ms;
      }
    this.applyLinks();
  }

  /** Removes every cut and delay. */
  heal(): void {
    for (const row of this.blocked) row.fill(false);
    for (const row of this.delays) row.fill(0);
    this.applyLinks();
  }

  /** Whether messages from `from` to `to` are currently lost. */
  isCut(from: number, to: number): boolean {
    return this.blocked[this.check(from).index]![this.check(to).index]!;
  }

  private applyLinks(): void {
    if (this.opts.peerProxies === false) {
      if (this.blocked.some((row) => row.some((b) => b)) || this.delays.some((row) => row.some((d) => d !== 0))) {
        this.heal();
        throw new Error('this cluster was started without peer proxies: its links cannot be cut or delayed');
      }
      return;
    }
    for (let j = 0; j < this.proxies.length; j++) {
      const proxy = this.proxies[j]!;
      let touched = false;
      for (let i = 0; i < this.size; i++) {
        if (i === j) continue;
        const state = {
          forwardCut: this.blocked[i]![j]!,
          backwardCut: this.blocked[j]![i]!,
          forwardDelayMs: this.delays[i]![j]!,
          backwardDelayMs: this.delays[j]![i]!,
        };
        touched ||= state.forwardCut || state.backwardCut;
        proxy.set(String(i), state);
      }
      // A connection nobody could attribute must not leak through a partition.
      proxy.set(UNKNOWN_SOURCE, touched ? { ...HEALTHY, forwardCut: true, backwardCut: true } : HEALTHY);
    }
  }

  /** Connections the proxies accepted and could not attribute to a member (0 when the scheme works). */
  unidentified(): number {
    return this.proxies.reduce((n, p) => n + (p.stats().accepted[UNKNOWN_SOURCE] ?? 0), 0);
  }

  /** Per member: its front proxy's counters (sources are member indexes). */
  proxyStats(): LinkProxyStats[] {
    return this.proxies.map((p) => p.stats());
  }

  private others(i: number): number[] {
    this.check(i);
    return [...Array(this.size).keys()].filter((j) => j !== i);
  }

  // ---- addresses ----

  clientEndpoints(): string[] {
    return this.members.map((m) => `http://127.0.0.1:${m.clientPort}`);
  }

  /** The advertised peer URL of member i: its front proxy (or the member itself without proxies). */
  peerURL(i: number): string {
    const m = this.check(i);
    if (this.opts.peerProxies === false) return `http://127.0.0.1:${m.hiddenPeerPort}`;
    return `http://127.0.0.1:${this.proxies[m.index]!.port}`;
  }

  metricsEndpoints(): string[] {
    return this.members.map((m) => `http://127.0.0.1:${m.metricsPort}`);
  }

  logPath(i: number): string {
    return this.check(i).logPath;
  }

  dataDir(i: number): string {
    return this.check(i).dataDir;
  }

  /** The etcdctl binary (Debian's 3.4; it speaks to both targets). */
  etcdctl(): string {
    return etcdBinaries().etcdctl;
  }

  // ---- leadership ----

  /** Maintenance.Status of member i, or undefined if it does not answer in STATUS_TIMEOUT_MS. */
  async status(i: number): Promise<IStatusResponse | undefined> {
    const m = this.check(i);
    if (!this.isRunning(i) || m.paused || this.closed) return undefined;
    let c = this.statusClients.get(i);
    if (c === undefined) {
      c = new Etcd3({ hosts: `http://127.0.0.1:${m.clientPort}`, dialTimeout: STATUS_TIMEOUT_MS, faultHandling: { host: () => noop, global: noop } });
      this.statusClients.set(i, c);
    }
    try {
      const s = await c.maintenance.status({ deadline: Date.now() + STATUS_TIMEOUT_MS });
      m.id = s.header.member_id;
      return s;
    } catch {
      this.dropStatusClient(i);
      return undefined;
    }
  }

  private dropStatusClient(i: number): void {
    this.statusClients.get(i)?.close();
    this.statusClients.delete(i);
  }

  /**
   * The member a majority of the cluster (or all of `among`, if fewer) names as leader in Maintenance.Status (asking only
   * `among`, all members by default; paused and dead ones do not answer), polled until there is
   * one or timeoutMs passes (then undefined). A deposed leader cut off from the rest may still
   * name itself; it is not the answer once the others agree on another.
   */
  async leader(opts: { among?: readonly number[]; timeoutMs?: number } = {}): Promise<number | undefined> {
    const among = opts.among ?? [...Array(this.size).keys()];
    const need = Math.floor(this.size / 2) + 1;
    const deadline = Date.now() + (opts.timeoutMs ?? LEADER_TIMEOUT_MS);
    for (;;) {
      const statuses = await Promise.all(among.map((i) => this.status(i)));
      const votes = new Map<string, number>();
      for (const s of statuses) if (s !== undefined && s.leader !== '0') votes.set(s.leader, (votes.get(s.leader) ?? 0) + 1);
      for (const [id, n] of votes) {
        if (n < need && !(among.length < need && n === among.length)) continue;
        const idx = this.members.findIndex((m) => m.id === id);
        if (idx >= 0) return idx;
      }
      if (Date.now() > deadline || this.closed) return undefined;
      await sleep(POLL_MS);
    }
  }

  /** SIGKILLs every member it started (by pid) and closes the proxies. Data and logs stay. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.statusClients.values()) c.close();
    this.statusClients.clear();
    await Promise.all(this.members.map((_, i) => this.kill(i, 'SIGKILL')));
    await Promise.all(this.proxies.map((p) => p.close()));
    process.off('exit', this.onProcessExit);
  }
}
