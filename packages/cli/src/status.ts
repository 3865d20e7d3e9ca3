/**
 * `capstan status`: asks every endpoint for etcd's Maintenance.Status and the members list, and
 * its metrics endpoint (peer port + 1 in a `capstan up` cluster, or --metrics-endpoints) for the WAL
 * fsync p99, and prints one row per member.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { codec } from '@capstan/server';
import { FlagError } from './flags.js';
import { CLIENT_PORTS, METRICS_PORT_OFFSET, PEER_PORTS } from './up.js';

export interface StatusArgs {
  endpoints: string[];
  metricsEndpoints: Array<string | undefined>;
  /** TLS for the gRPC calls, as etcdctl's --cacert, --cert and --key (what `capstan up --tls` prints). */
  credentials: grpc.ChannelCredentials;
}

function readFlagFile(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new FlagError(`${flag}: cannot read ${JSON.stringify(path)}: ${(err as Error).message}`);
  }
}

export function parseStatusArgs(argv: readonly string[]): StatusArgs {
  let endpoints = CLIENT_PORTS.slice(0, 3).map((p) => `http://127.0.0.1:${p}`);
  let metricsEndpoints: Array<string | undefined> | undefined;
  const tls = new Map<string, Buffer>();
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split('=', 2) as [string, string | undefined];
    const v = inline ?? argv[++i];
    if (v === undefined) throw new FlagError(`flag needs an argument: ${flag}`);
    if (flag === '--endpoints') endpoints = v.split(',');
    else if (flag === '--metrics-endpoints') metricsEndpoints = v.split(',');
    else if (flag === '--cacert' || flag === '--cert' || flag === '--key') tls.set(flag, readFlagFile(flag, v));
    else throw new FlagError(`flag provided but not defined: ${flag}`);
  }
  if (tls.has('--cert') !== tls.has('--key')) throw new FlagError('--cert and --key must be given together');
  // host:port endpoints are https with TLS flags (as etcdctl's), else http.
  endpoints = endpoints.map((e) => (e.includes('://') ? e : `${tls.size > 0 ? 'https' : 'http'}://${e}`));
  const useTLS = tls.size > 0 || endpoints.some((e) => e.startsWith('https:'));
  return {
    credentials: useTLS ? grpc.credentials.createSsl(tls.get('--cacert') ?? null, tls.get('--key') ?? null, tls.get('--cert') ?? null) : grpc.credentials.createInsecure(),
    endpoints,
    metricsEndpoints:
      metricsEndpoints ??
      endpoints.map((e) => {
        const u = new URL(e);
        const i = CLIENT_PORTS.indexOf(Number(u.port));
        return i >= 0 ? `http://${u.hostname}:${PEER_PORTS[i]! + METRICS_PORT_OFFSET}` : undefined;
      }),
  };
}

type Msg = Record<string, unknown>;

function unary(credentials: grpc.ChannelCredentials, endpoint: string, service: string, method: string, reqType: string, resType: string, req: Msg): Promise<Msg> {
  const reqCodec = codec<Msg>(`etcdserverpb.${reqType}`);
  const resCodec = codec<Msg>(`etcdserverpb.${resType}`);
  const client = new grpc.Client(new URL(endpoint).host, credentials);
  return new Promise<Msg>((resolve, reject) => {
    client.makeUnaryRequest(
      `/etcdserverpb.${service}/${method}`,
      (m: Msg) => reqCodec.encode(m),
      (b: Buffer) => resCodec.decode(b),
      req,
      { deadline: new Date(Date.now() + 5000) },
      (err, res) => {
        client.close();
        if (err !== null) reject(err);
        else resolve(res!);
      },
    );
  });
}

async function fsyncP99(metricsURL: string | undefined): Promise<string> {
  if (metricsURL === undefined) return '-';
  try {
    const text = await (await fetch(`${metricsURL}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
    const buckets: Array<[number, number]> = [];
    let count = 0;
    for (const line of text.split('\n')) {
      const b = /^etcd_disk_wal_fsync_duration_seconds_bucket\{le="([^"]+)"\} (\d+)/.exec(line);
      if (b !== null) buckets.push([b[1] === '+Inf' ? Infinity : Number(b[1]), Number(b[2])]);
      const c = /^etcd_disk_wal_fsync_duration_seconds_count (\d+)/.exec(line);
      if (c !== null) count = Number(c[1]);
    }
    if (count === 0) return '-';
    const le = buckets.find(([, n]) => n >= 0.99 * count)?.[0] ?? Infinity;
    return le === Infinity ? '>8s' : `<=${(le * 1000).toFixed(0)}ms`;
  } catch {
    return '-';
  }
}

function bytes(n: number): string {
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  if (n >= 1024) return `${(n / 1024).toFixed(0)} kB`;
  return `${n} B`;
}

export async function status(args: StatusArgs): Promise<number> {
  const rows: string[][] = [['ENDPOINT', 'ID', 'NAME', 'LEADER', 'TERM', 'RAFT INDEX', 'APPLIED INDEX', 'DB SIZE', 'FSYNC P99', 'ERROR']];
  let failed = 0;
  const names = new Map<string, string>();
  for (const ep of args.endpoints) {
    try {
      const list = await unary(args.credentials, ep, 'Cluster', 'MemberList', 'MemberListRequest', 'MemberListResponse', {});
      for (const m of (list.members as Msg[] | undefined) ?? []) names.set(BigInt(String(m.ID)).toString(16), String(m.name ?? ''));
      break;
    } catch {
      // try the next endpoint
    }
  }
  await Promise.all(
    args.endpoints.map(async (ep, i) => {
      try {
        const s = await unary(args.credentials, ep, 'Maintenance', 'Status', 'StatusRequest', 'StatusResponse', {});
        const h = s.header as Msg;
        const id = BigInt(String(h.memberId ?? h.member_id ?? 0)).toString(16);
        const leader = BigInt(String(s.leader ?? 0)).toString(16);
        rows[i + 1] = [
          ep,
          id,
          names.get(id) ?? '',
          leader === id ? 'true' : 'false',
          String(s.raftTerm ?? 0),
          String(s.raftIndex ?? 0),
          String(s.raftAppliedIndex ?? 0),
          bytes(Number(s.dbSize ?? 0)),
          await fsyncP99(args.metricsEndpoints[i]),
          ((s.errors as string[] | undefined) ?? []).join('; '),
        ];
      } catch (err) {
        failed++;
        rows[i + 1] = [ep, '-', '-', '-', '-', '-', '-', '-', '-', (err as Error).message];
      }
    }),
  );
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]): string => `| ${r.map((v, c) => v.padEnd(widths[c]!)).join(' | ')} |`;
  const sep = `+-${widths.map((w) => '-'.repeat(w)).join('-+-')}-+`;
  process.stdout.write([sep, line(rows[0]!), sep, ...rows.slice(1).map(line), sep].join('\n') + '\n');
  return failed === 0 ? 0 : 1;
}
