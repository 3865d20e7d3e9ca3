// Real member processes (`capstan member`) on loopback ports picked here, and Debian's etcdctl.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { memberTLSArgs, type MemberCertFiles } from '../../src/tls.js';
import { freePortPairs, freePorts } from '../../src/ports.js';

export { freePortPairs, freePorts };

export const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../../../', import.meta.url));
export const ETCDCTL = [process.env.ETCDCTL_BIN, join(ROOT, '.cache/etcd/usr/bin/etcdctl')].find((p) => p !== undefined && existsSync(p));


export interface MemberProc {
  name: string;
  client: string;
  peer: string;
  metrics: string;
  args: string[];
  proc: ChildProcess;
  log: string[];
}

export function startMember(m: Omit<MemberProc, 'proc' | 'log'>, env: NodeJS.ProcessEnv = process.env): MemberProc {
  const proc = spawn(process.execPath, [MAIN, 'member', ...m.args], { stdio: ['ignore', 'ignore', 'pipe'], env });
  const log: string[] = [];
  proc.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
  return { ...m, proc, log };
}

export async function stopMember(m: MemberProc, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (m.proc.exitCode !== null || m.proc.signalCode !== null) return m.proc.exitCode;
  const exited = new Promise<number | null>((resolve) => m.proc.once('exit', (code) => resolve(code)));
  m.proc.kill(signal);
  return exited;
}

export interface ClusterOptions {
  /** https client and peer URLs (default http; https without certs needs --auto-tls/--peer-auto-tls in extra). */
  scheme?: 'http' | 'https';
  /** Each member's certificate and trusted CA: https URLs with client certificates required on both sides. */
  certs?: (name: string) => MemberCertFiles;
}

const schemeOf = (opts: ClusterOptions): string => (opts.certs !== undefined ? 'https' : (opts.scheme ?? 'http'));

/** One member's URLs and command line, in a cluster of `initialCluster`. Metrics stay plain HTTP, for healthy(). */
function memberSpec(dir: string, name: string, clientPort: number, peerPort: number, initialCluster: string, extra: string[], opts: ClusterOptions): Omit<MemberProc, 'proc' | 'log'> {
  const scheme = schemeOf(opts);
  const client = `${scheme}://127.0.0.1:${clientPort}`;
  const peer = `${scheme}://127.0.0.1:${peerPort}`;
  const metrics = `http://127.0.0.1:${peerPort + 1}`;
  const args = [
    `--name=${name}`,
    `--data-dir=${join(dir, name)}`,
    `--listen-client-urls=${client}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=${initialCluster}`,
    `--listen-metrics-urls=${metrics}`,
    ...(opts.certs !== undefined ? memberTLSArgs(opts.certs(name)) : []),
    ...extra,
  ];
  return { name, client, peer, metrics, args };
}

/** A one-member cluster's command line (start it with startMember). */
export async function oneMember(dir: string, name: string, extra: string[] = []): Promise<Omit<MemberProc, 'proc' | 'log'>> {
  const [clientPort] = await freePorts(1);
  const [peerPort] = await freePortPairs(1);
  return memberSpec(dir, name, clientPort!, peerPort!, `${name}=http://127.0.0.1:${peerPort}`, extra, {});
}

/** Three members (names m1..m3) with their command lines; start them with startMember. */
export async function threeMembers(dir: string, extra: string[] = [], opts: ClusterOptions = {}): Promise<Array<Omit<MemberProc, 'proc' | 'log'>>> {
  const clients = await freePorts(3);
  const peers = await freePortPairs(3);
  const names = ['m1', 'm2', 'm3'];
  const scheme = schemeOf(opts);
  const cluster = names.map((n, i) => `${n}=${scheme}://127.0.0.1:${peers[i]}`).join(',');
  return names.map((name, i) =>
    memberSpec(dir, name, clients[i]!, peers[i]!, cluster, ['--initial-cluster-token=e2e', '--heartbeat-interval=50', '--election-timeout=500', ...extra], opts),
  );
}

export async function healthy(metricsURL: string): Promise<boolean> {
  try {
    const r = await fetch(`${metricsURL}/health`, { signal: AbortSignal.timeout(2000) });
    return r.ok && ((await r.json()) as { health: string }).health === 'true';
  } catch {
    return false;
  }
}

export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function etcdctl(endpoints: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    if (ETCDCTL === undefined) return reject(new Error('etcdctl not found: run scripts/fetch-etcd.sh'));
    const p = spawn(ETCDCTL, [`--endpoints=${endpoints}`, ...args], { env: { ...process.env, ETCDCTL_API: '3' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    if (opts.input !== undefined) p.stdin.end(opts.input);
    else p.stdin.end();
  });
}

/**
 * "http://127.0.0.1:2379" -> "127.0.0.1:2379". etcdctl 3.4 puts a URL endpoint verbatim into the
 * HTTP/2 :authority of per-endpoint calls (endpoint status, hashkv, snapshot, defrag), which Node's
 * HTTP/2 server refuses as malformed; host:port endpoints work everywhere.
 */
export function hostPort(url: string): string {
  return new URL(url).host;
}
