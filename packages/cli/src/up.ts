/**
 * `capstan up`: a local cluster of member processes on loopback with the ports of etcd's own
 * local-cluster Procfile (client 2379, 22379, 32379, ...; peer 2380, 22380, ...). Ready once every
 * member answers /health; Ctrl-C stops them all; run again on the same data dir, it resumes.
 * With --tls: a CA and certificates in <data-dir>/tls, https client and peer URLs, client
 * certificates required on both, and the etcdctl flags to use printed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureClusterCerts } from '@capstan/server';
import { FlagError } from './flags.js';
import { GLIBC_TUNABLES, memberTunables } from './memberenv.js';
import { etcdctlTLSArgs, memberTLSArgs } from './tls.js';

export const CLIENT_PORTS = [2379, 22379, 32379, 42379, 52379];
export const PEER_PORTS = [2380, 22380, 32380, 42380, 52380];
/** Metrics and /health: the peer port plus one (2381, 22381, ...). */
export const METRICS_PORT_OFFSET = 1;
const READY_TIMEOUT_MS = 30_000;

export interface UpArgs {
  members: 3 | 5 | 1;
  dataDir: string;
  clientPorts: number[];
  peerPorts: number[];
  /** Extra flags for every member (e.g. --snapshot-count). */
  memberFlags: string[];
  /** https URLs with certificates made in <data-dir>/tls. */
  tls: boolean;
}

export function parseUpArgs(argv: readonly string[]): UpArgs {
  let members = 3;
  let dataDir = 'capstan-data';
  let clientPorts = CLIENT_PORTS;
  let peerPorts = PEER_PORTS;
  const memberFlags: string[] = [];
  let tls = false;
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split('=', 2) as [string, string | undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new FlagError(`flag needs an argument: ${flag}`);
      return v;
    };
    const ports = (): number[] => value().split(',').map((p) => Number(p));
    switch (flag) {
      case '--members':
        members = Number(value());
        if (members !== 1 && members !== 3 && members !== 5) throw new FlagError('--members must be 3 or 5 (or 1)');
        break;
      case '--data-dir':
        dataDir = value();
        break;
      case '--client-ports':
        clientPorts = ports();
        break;
      case '--peer-ports':
        peerPorts = ports();
        break;
      case '--member-flag':
        memberFlags.push(value());
        break;
      case '--tls':
        if (inline !== undefined) throw new FlagError('--tls takes no value');
        tls = true;
        break;
      default:
        throw new FlagError(`flag provided but not defined: ${flag}`);
    }
  }
  if (clientPorts.length < members || peerPorts.length < members || [...clientPorts, ...peerPorts].some((p) => !Number.isInteger(p) || p <= 0 || p > 65535)) {
    throw new FlagError(`need ${members} valid client and peer ports`);
  }
  return { members: members as UpArgs['members'], dataDir: resolve(dataDir), clientPorts, peerPorts, memberFlags, tls };
}

export async function up(args: UpArgs): Promise<number> {
  const main = fileURLToPath(new URL('./main.js', import.meta.url));
  const names = Array.from({ length: args.members }, (_, i) => `infra${i + 1}`);
  const scheme = args.tls ? 'https' : 'http';
  const peer = (i: number): string => `${scheme}://127.0.0.1:${args.peerPorts[i]}`;
  const client = (i: number): string => `${scheme}://127.0.0.1:${args.clientPorts[i]}`;
  // Metrics and /health stay plain HTTP on their own port, for `capstan status` and health checks.
  const metrics = (i: number): string => `http://127.0.0.1:${args.peerPorts[i]! + METRICS_PORT_OFFSET}`;
  const cluster = names.map((n, i) => `${n}=${peer(i)}`).join(',');
  await checkDataDir(args);
  await mkdir(args.dataDir, { recursive: true });
  const certs = args.tls ? await ensureClusterCerts(join(args.dataDir, 'tls'), names) : undefined;
  const children: ChildProcess[] = [];
  const memberEnv = { ...process.env, [GLIBC_TUNABLES]: memberTunables(process.env[GLIBC_TUNABLES]) };
  let stopping = false;
  const exited: Promise<void>[] = [];
  for (let i = 0; i < args.members; i++) {
    const log = createWriteStream(join(args.dataDir, `${names[i]}.log`), { flags: 'a' });
    const child = spawn(
      process.execPath,
      [
        main,
        'member',
        `--name=${names[i]}`,
        `--data-dir=${join(args.dataDir, `${names[i]}.etcd`)}`,
        `--listen-client-urls=${client(i)}`,
        `--advertise-client-urls=${client(i)}`,
        `--listen-peer-urls=${peer(i)}`,
        `--initial-advertise-peer-urls=${peer(i)}`,
        `--initial-cluster=${cluster}`,
        '--initial-cluster-token=capstan-local-cluster',
        '--initial-cluster-state=new',
        `--listen-metrics-urls=${metrics(i)}`,
        ...(certs !== undefined ? memberTLSArgs({ ...certs.members.get(names[i]!)!, caFile: certs.caFile }) : []),
        ...args.memberFlags,
      ],
      { stdio: ['ignore', 'inherit', 'pipe'], env: memberEnv },
    );
    child.stderr!.pipe(log);
    children.push(child);
    exited.push(
      new Promise((resolve) =>
        child.once('exit', (code, signal) => {
          if (!stopping) process.stderr.write(`capstan up: ${names[i]} exited (${signal ?? code}); see ${join(args.dataDir, `${names[i]}.log`)}\n`);
          resolve();
        }),
      ),
    );
  }
  const stopAll = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    const force = setTimeout(() => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }, 10_000);
    await Promise.all(exited);
    clearTimeout(force);
  };
  process.on('SIGINT', () => void stopAll());
  process.on('SIGTERM', () => void stopAll());
  for (let i = 0; i < args.members; i++) process.stdout.write(`${names[i]}: client ${client(i)}  peer ${peer(i)}  metrics ${metrics(i)}/metrics  log ${join(args.dataDir, `${names[i]}.log`)}\n`);
  const ready = await waitHealthy(
    names.map((_, i) => metrics(i)),
    () => stopping,
  );
  if (ready) {
    process.stdout.write(`capstan up: ready: ${args.members} members, endpoints ${names.map((_, i) => client(i)).join(',')}\n`);
    if (certs !== undefined) {
      // host:port endpoints: etcdctl 3.4 sends a URL endpoint as the HTTP/2 authority of some calls.
      const endpoints = args.clientPorts.slice(0, args.members).map((p) => `127.0.0.1:${p}`);
      process.stdout.write(`capstan up: etcdctl flags: --endpoints=${endpoints.join(',')} ${etcdctlTLSArgs(certs.caFile, certs.client).join(' ')}\n`);
    }
  } else if (!stopping) {
    process.stderr.write('capstan up: the cluster did not become healthy in time; stopping it\n');
    await stopAll();
    return 1;
  }
  await Promise.all(exited);
  stopping = true;
  return 0;
}

/** A data dir keeps its cluster's URLs: one made with --tls (https) cannot be resumed without it, and the other way round. */
async function checkDataDir(args: UpArgs): Promise<void> {
  const exists = (p: string): Promise<boolean> =>
    stat(p).then(
      () => true,
      () => false,
    );
  const hasTLS = await exists(join(args.dataDir, 'tls', 'ca.pem'));
  const hasMembers = await exists(join(args.dataDir, 'infra1.etcd'));
  if (args.tls && hasMembers && !hasTLS) throw new FlagError(`${args.dataDir} holds a cluster started without --tls (its members advertise http URLs); use another --data-dir`);
  if (!args.tls && hasTLS) throw new FlagError(`${args.dataDir} holds a cluster started with --tls; run capstan up --tls`);
}

async function waitHealthy(metricsURLs: string[], cancelled: () => boolean): Promise<boolean> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline && !cancelled()) {
    const ok = await Promise.all(
      metricsURLs.map((u) =>
        fetch(`${u}/health`, { signal: AbortSignal.timeout(2000) }).then(
          async (r) => r.ok && ((await r.json()) as { health?: string }).health === 'true',
          () => false,
        ),
      ),
    );
    if (ok.every(Boolean)) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}
