/**
 * etcd's member flags and their ETCD_* environment variables, with etcd's defaults and checks.
 * A flag wins over its variable (etcd warns about the shadowed variable); an unknown flag, a
 * malformed value or a contradiction is a FlagError, which the command prints and exits 1 on.
 */
export class FlagError extends Error {
  override readonly name = 'FlagError';
}

type Kind = 'string' | 'urls' | 'int' | 'bool' | 'cluster';

interface Spec {
  readonly kind: Kind;
  readonly def?: string;
  readonly help: string;
}

/** Flags Capstan takes, named as etcd names them. */
export const MEMBER_FLAGS: Readonly<Record<string, Spec>> = {
  name: { kind: 'string', def: 'default', help: 'Human-readable name for this member.' },
  'data-dir': { kind: 'string', help: 'Path to the data directory (default: ${name}.etcd).' },
  'listen-client-urls': { kind: 'urls', def: 'http://localhost:2379', help: 'URLs to listen on for client traffic.' },
  'advertise-client-urls': { kind: 'urls', def: 'http://localhost:2379', help: 'Client URLs to advertise to the cluster.' },
  'listen-peer-urls': { kind: 'urls', def: 'http://localhost:2380', help: 'URLs to listen on for peer traffic.' },
  'initial-advertise-peer-urls': { kind: 'urls', def: 'http://localhost:2380', help: 'Peer URLs to advertise to the cluster.' },
  'initial-cluster': { kind: 'cluster', help: 'Initial cluster configuration for bootstrapping (default: ${name}=${initial-advertise-peer-urls}).' },
  'initial-cluster-state': { kind: 'string', def: 'new', help: "Initial cluster state ('new' or 'existing')." },
  'initial-cluster-token': { kind: 'string', def: 'etcd-cluster', help: 'Initial cluster token for the cluster during bootstrap.' },
  'heartbeat-interval': { kind: 'int', def: '100', help: 'Time (in milliseconds) of a heartbeat interval.' },
  'election-timeout': { kind: 'int', def: '1000', help: 'Time (in milliseconds) for an election to timeout.' },
  // The server's DEFAULT_SNAPSHOT_COUNT, written out: this module is loaded before the server (v8tuning.ts).
  'snapshot-count': { kind: 'int', def: '10000', help: 'Number of committed transactions to trigger a snapshot to disk.' },
  'experimental-warning-apply-duration': { kind: 'string', def: '100ms', help: 'Time duration after which a warning is generated if request takes more time.' },
  'experimental-snapshot-catchup-entries': { kind: 'int', def: '5000', help: 'Number of entries for a slow follower to catch up after compacting the raft storage entries.' },
  'experimental-quiet-gc': { kind: 'bool', def: 'true', help: 'Capstan only: collect the JavaScript heap\'s garbage once the member has been quiet for 30 s and its heap has grown 32 MiB.' },
  'quota-backend-bytes': { kind: 'int', def: '0', help: 'Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).' },
  'max-request-bytes': { kind: 'int', def: '1572864', help: 'Maximum client request size in bytes the server will accept.' },
  'max-txn-ops': { kind: 'int', def: '128', help: 'Maximum number of operations permitted in a transaction.' },
  'auto-compaction-mode': { kind: 'string', def: 'periodic', help: "Interpret 'auto-compaction-retention' one of: periodic|revision." },
  'auto-compaction-retention': { kind: 'string', def: '0', help: 'Auto compaction retention for mvcc key value store. 0 means disable.' },
  'listen-metrics-urls': { kind: 'urls', def: '', help: 'List of URLs to listen on for the metrics and health endpoints.' },
  'auth-token': { kind: 'string', def: 'simple', help: "Specify a v3 authentication token type and its options ('simple'; 'jwt' is not supported)." },
  'auth-token-ttl': { kind: 'int', def: '300', help: 'Time (in seconds) of the auth-token-ttl.' },
  'bcrypt-cost': { kind: 'int', def: '10', help: 'Specify the cost / strength of the bcrypt algorithm for hashing auth passwords. Valid values are between 4 and 31.' },
  logger: { kind: 'string', def: 'zap', help: "Only 'zap' (structured JSON logs) is supported." },
  'log-level': { kind: 'string', def: 'info', help: 'Configures log level: debug, info, warn, error.' },
  'cert-file': { kind: 'string', def: '', help: 'Path to the client server TLS cert file.' },
  'key-file': { kind: 'string', def: '', help: 'Path to the client server TLS key file.' },
  'trusted-ca-file': { kind: 'string', def: '', help: 'Path to the client server TLS trusted CA cert file.' },
  'client-cert-auth': { kind: 'bool', def: 'false', help: 'Enable client cert authentication.' },
  'peer-cert-file': { kind: 'string', def: '', help: 'Path to the peer server TLS cert file.' },
  'peer-key-file': { kind: 'string', def: '', help: 'Path to the peer server TLS key file.' },
  'peer-trusted-ca-file': { kind: 'string', def: '', help: 'Path to the peer server TLS trusted CA file.' },
  'peer-client-cert-auth': { kind: 'bool', def: 'false', help: 'Enable peer client cert authentication.' },
  'auto-tls': { kind: 'bool', def: 'false', help: 'Client TLS using generated certificates.' },
  'peer-auto-tls': { kind: 'bool', def: 'false', help: 'Peer TLS using generated certificates.' },
};

/** One side's TLS flags (client: --cert-file ...; peer: --peer-cert-file ...), as given. */
export interface TLSFlags {
  certFile: string;
  keyFile: string;
  trustedCAFile: string;
  clientCertAuth: boolean;
  autoTLS: boolean;
}

export interface MemberFlags {
  name: string;
  dataDir: string;
  listenClientURLs: string[];
  advertiseClientURLs: string[];
  listenPeerURLs: string[];
  initialAdvertisePeerURLs: string[];
  initialCluster: Map<string, string[]>;
  initialClusterState: 'new' | 'existing';
  initialClusterToken: string;
  heartbeatMs: number;
  electionMs: number;
  snapshotCount: number;
  snapshotCatchUpEntries: number;
  /** --experimental-warning-apply-duration, in milliseconds. */
  warningApplyMs: number;
  /** --experimental-quiet-gc (quietgc.ts). */
  quietGC: boolean;
  quotaBackendBytes: number;
  maxRequestBytes: number;
  maxTxnOps: number;
  autoCompactionMode: 'periodic' | 'revision';
  autoCompactionRetention: string;
  listenMetricsURLs: string[];
  logLevel: string;
  /** --auth-token-ttl, in milliseconds. */
  authTokenTTLMs: number;
  bcryptCost: number;
  clientTLS: TLSFlags;
  peerTLS: TLSFlags;
  /** Things given that will be ignored, as etcd warns of them (TLS files for http URLs, ...). */
  warnings: string[];
  /** Environment variables a flag shadowed (etcd logs a warning for each). */
  shadowed: string[];
}

/** etcd's default quota: 2 GiB. */
export const DEFAULT_QUOTA_BACKEND_BYTES = 2 * 1024 * 1024 * 1024;
/** etcd refuses quotas above 8 GiB. */
export const MAX_QUOTA_BACKEND_BYTES = 8 * 1024 * 1024 * 1024;

function envName(flag: string): string {
  return `ETCD_${flag.toUpperCase().replace(/-/g, '_')}`;
}

function urls(flag: string, v: string): string[] {
  if (v === '') return [];
  return v.split(',').map((u) => {
    let parsed: URL;
    try {
      parsed = new URL(u);
    } catch {
      throw new FlagError(`invalid value "${v}" for flag -${flag}: URL address does not have the form "host:port": ${u}`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:' && parsed.protocol !== 'unix:') {
      throw new FlagError(`invalid value "${v}" for flag -${flag}: URL scheme must be http, https, unix, or unixs: ${u}`);
    }
    if (parsed.port === '') throw new FlagError(`invalid value "${v}" for flag -${flag}: URL address does not have the form "host:port": ${u}`);
    if (parsed.pathname !== '/' && parsed.pathname !== '') throw new FlagError(`invalid value "${v}" for flag -${flag}: URL must not contain a path: ${u}`);
    return `${parsed.protocol}//${parsed.host}`;
  });
}

function cluster(v: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const part of v.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new FlagError(`invalid value "${v}" for flag -initial-cluster: ${part} is not name=URL`);
    const name = part.slice(0, eq);
    const list = m.get(name) ?? [];
    list.push(...urls('initial-cluster', part.slice(eq + 1)));
    m.set(name, list);
  }
  return m;
}

function int(flag: string, v: string): number {
  if (!/^-?\d+$/.test(v)) throw new FlagError(`invalid value "${v}" for flag -${flag}: parse error`);
  return Number(v);
}

/** Go's strconv.ParseBool, as etcd's flags take booleans. */
function bool(flag: string, v: string): boolean {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  throw new FlagError(`invalid boolean value "${v}" for -${flag}: parse error`);
}

/**
 * One side's TLS flags, checked as etcd checks them when it opens its listeners: an https URL needs
 * a certificate and key (or auto TLS), and a certificate needs its key.
 */
function tlsFlags(
  side: 'client' | 'peer',
  raw: (flag: string) => string,
  listen: ReadonlyArray<{ kind: string; urls: readonly string[] }>,
  warnings: string[],
): TLSFlags {
  const p = side === 'peer' ? 'peer-' : '';
  const f: TLSFlags = {
    certFile: raw(`${p}cert-file`),
    keyFile: raw(`${p}key-file`),
    trustedCAFile: raw(`${p}trusted-ca-file`),
    clientCertAuth: bool(`${p}client-cert-auth`, raw(`${p}client-cert-auth`)),
    autoTLS: bool(`${p}auto-tls`, raw(`${p}auto-tls`)),
  };
  if ((f.certFile === '') !== (f.keyFile === '')) {
    throw new FlagError(`--${p}cert-file and --${p}key-file must both be given [key: ${JSON.stringify(f.keyFile)}, cert: ${JSON.stringify(f.certFile)}]`);
  }
  const hasCert = f.certFile !== '';
  const https = listen.flatMap((l) => l.urls.filter((u) => u.startsWith('https:')).map((u) => ({ kind: l.kind, url: u })));
  for (const { kind, url } of https) {
    if (!hasCert && !f.autoTLS) {
      throw new FlagError(`TLS key/cert (--${p}cert-file, --${p}key-file) must be provided for ${kind} url ${url} with HTTPS scheme (or use --${p}auto-tls)`);
    }
  }
  if (https.length === 0 && (hasCert || f.clientCertAuth)) {
    warnings.push(`scheme is HTTP while ${side} TLS flags are present; ignoring them for the ${side} URLs`);
  }
  if (f.autoTLS && hasCert) warnings.push(`ignoring ${side} auto TLS since certs given`);
  if (f.autoTLS && !hasCert && (f.clientCertAuth || f.trustedCAFile !== '')) {
    warnings.push(`ignoring --${p}client-cert-auth and --${p}trusted-ca-file with --${p}auto-tls: its certificates are self-signed, so ${side} certificates are not verified`);
  }
  return f;
}

/** A Go duration flag (etcd's fs.DurationVar), in milliseconds. */
function duration(flag: string, v: string): number {
  const ms = parseGoDuration(v);
  if (ms === undefined) throw new FlagError(`invalid value "${v}" for flag -${flag}: parse error`);
  return ms;
}

function positive(flag: string, v: string): number {
  const n = int(flag, v);
  if (n <= 0) throw new FlagError(`--${flag} must be > 0`);
  return n;
}

/** Parses `argv` (after the subcommand) and `env` into a checked configuration. */
export function parseMemberFlags(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): MemberFlags {
  const given = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--?([a-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    if (m === null) throw new FlagError(`'${arg}' is not a valid flag`);
    const name = m[1]!;
    const spec = MEMBER_FLAGS[name];
    if (spec === undefined) throw new FlagError(`flag provided but not defined: -${name}`);
    let value = m[2];
    if (value === undefined) {
      if (spec.kind === 'bool') value = 'true';
      else {
        value = argv[++i];
        if (value === undefined) throw new FlagError(`flag needs an argument: -${name}`);
      }
    }
    if (given.has(name)) throw new FlagError(`flag -${name} given twice`);
    given.set(name, value);
  }
  const shadowed: string[] = [];
  for (const [k, v] of Object.entries(env)) {
    if (!k.startsWith('ETCD_') || v === undefined) continue;
    const flag = k.slice(5).toLowerCase().replace(/_/g, '-');
    if (MEMBER_FLAGS[flag] === undefined) {
      // etcd ignores variables it does not know only for a few well-known ones; an unknown ETCD_ variable is an error.
      if (k === 'ETCD_UNSUPPORTED_ARCH' || k === 'ETCDCTL_API') continue;
      throw new FlagError(`unrecognized environment variable ${k}=${v}`);
    }
    if (given.has(flag)) shadowed.push(k);
    else given.set(flag, v);
  }
  const raw = (flag: string): string => given.get(flag) ?? MEMBER_FLAGS[flag]!.def ?? '';
  const name = raw('name');
  const peerURLs = urls('initial-advertise-peer-urls', raw('initial-advertise-peer-urls'));
  const initialCluster = given.has('initial-cluster') ? cluster(raw('initial-cluster')) : new Map([[name, peerURLs]]);
  const state = raw('initial-cluster-state');
  if (state !== 'new' && state !== 'existing') throw new FlagError(`invalid value "${state}" for flag -initial-cluster-state: valid values are "new", "existing"`);
  const mine = initialCluster.get(name);
  if (mine === undefined) {
    throw new FlagError(`couldn't find local name "${name}" in the initial cluster configuration`);
  }
  if ([...mine].sort().join(',') !== [...peerURLs].sort().join(',')) {
    throw new FlagError(
      `--initial-cluster has ${name}=${mine.join(',')} but missing from --initial-advertise-peer-urls=${peerURLs.join(',')} ("${peerURLs.join(',')}"(resolved from ${peerURLs.join(',')}) != "${mine.join(',')}"(resolved from ${mine.join(',')}))`,
    );
  }
  const heartbeatMs = int('heartbeat-interval', raw('heartbeat-interval'));
  const electionMs = int('election-timeout', raw('election-timeout'));
  if (heartbeatMs <= 0) throw new FlagError('--heartbeat-interval must be > 0');
  if (5 * heartbeatMs > electionMs) {
    throw new FlagError(`--election-timeout[${electionMs}ms] should be at least as 5 times as --heartbeat-interval[${heartbeatMs}ms]`);
  }
  if (electionMs > 50000) throw new FlagError(`--election-timeout[${electionMs}ms] is too long, and should be set less than 50000ms`);
  const snapshotCount = int('snapshot-count', raw('snapshot-count'));
  if (snapshotCount <= 0) throw new FlagError('--snapshot-count must be > 0');
  let quota = int('quota-backend-bytes', raw('quota-backend-bytes'));
  if (quota < 0) throw new FlagError('--quota-backend-bytes must not be negative');
  if (quota === 0) quota = DEFAULT_QUOTA_BACKEND_BYTES;
  if (quota > MAX_QUOTA_BACKEND_BYTES) throw new FlagError(`--quota-backend-bytes ${quota} exceeds maximum recommended quota ${MAX_QUOTA_BACKEND_BYTES}`);
  const maxRequestBytes = int('max-request-bytes', raw('max-request-bytes'));
  if (maxRequestBytes <= 0) throw new FlagError('--max-request-bytes must be > 0');
  const maxTxnOps = int('max-txn-ops', raw('max-txn-ops'));
  if (maxTxnOps <= 0) throw new FlagError('--max-txn-ops must be > 0');
  const mode = raw('auto-compaction-mode');
  if (mode !== 'periodic' && mode !== 'revision') throw new FlagError(`unknown auto-compaction-mode ${JSON.stringify(mode)}`);
  const retention = raw('auto-compaction-retention');
  if (mode === 'revision' && !/^\d+$/.test(retention)) throw new FlagError(`invalid auto-compaction-retention ${JSON.stringify(retention)} for mode revision`);
  if (mode === 'periodic' && parseRetention(retention) === undefined) throw new FlagError(`invalid auto-compaction-retention ${JSON.stringify(retention)}`);
  // etcd's decomposeOpts: the type, then comma-separated name=value options (none used by simple).
  const tokenOpts = raw('auth-token').split(',');
  if (tokenOpts[0] === 'jwt') throw new FlagError('auth: invalid auth options (--auth-token jwt is not supported by Capstan; use simple)');
  if (tokenOpts[0] !== 'simple' || tokenOpts.slice(1).some((o) => o.split('=').length !== 2)) {
    throw new FlagError(`auth: invalid auth options (unknown token type or malformed options in --auth-token ${JSON.stringify(raw('auth-token'))})`);
  }
  const authTokenTTL = positive('auth-token-ttl', raw('auth-token-ttl'));
  if (raw('logger') !== 'zap') throw new FlagError(`unknown logger option ${JSON.stringify(raw('logger'))}: only "zap" is supported`);
  const listenClientURLs = urls('listen-client-urls', raw('listen-client-urls'));
  const listenPeerURLs = urls('listen-peer-urls', raw('listen-peer-urls'));
  const listenMetricsURLs = urls('listen-metrics-urls', raw('listen-metrics-urls'));
  const warnings: string[] = [];
  const clientTLS = tlsFlags(
    'client',
    raw,
    [
      { kind: 'client', urls: listenClientURLs },
      { kind: 'metrics', urls: listenMetricsURLs },
    ],
    warnings,
  );
  const peerTLS = tlsFlags('peer', raw, [{ kind: 'peer', urls: listenPeerURLs }], warnings);
  return {
    name,
    dataDir: given.get('data-dir') ?? `${name}.etcd`,
    listenClientURLs,
    advertiseClientURLs: urls('advertise-client-urls', raw('advertise-client-urls')),
    listenPeerURLs,
    initialAdvertisePeerURLs: peerURLs,
    initialCluster,
    initialClusterState: state,
    initialClusterToken: raw('initial-cluster-token'),
    heartbeatMs,
    electionMs,
    snapshotCount,
    snapshotCatchUpEntries: positive('experimental-snapshot-catchup-entries', raw('experimental-snapshot-catchup-entries')),
    warningApplyMs: duration('experimental-warning-apply-duration', raw('experimental-warning-apply-duration')),
    quietGC: bool('experimental-quiet-gc', raw('experimental-quiet-gc')),
    quotaBackendBytes: quota,
    maxRequestBytes,
    maxTxnOps,
    autoCompactionMode: mode,
    autoCompactionRetention: retention,
    listenMetricsURLs,
    logLevel: raw('log-level'),
    authTokenTTLMs: authTokenTTL * 1000,
    bcryptCost: int('bcrypt-cost', raw('bcrypt-cost')),
    clientTLS,
    peerTLS,
    warnings,
    shadowed,
  };
}

/** etcd's periodic retention: a bare number is hours, else a Go duration like 30m or 1h30m; ms. */
export function parseRetention(v: string): number | undefined {
  if (/^\d+$/.test(v)) return Number(v) * 3600_000;
  return parseGoDuration(v);
}

/** Milliseconds in each unit Go's time.ParseDuration knows. */
const DURATION_UNITS: Readonly<Record<string, number>> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3600_000 };

/** Go's time.ParseDuration, in milliseconds: "100ms", "1.5s", "1h30m", "-2s", or "0"; undefined if malformed. */
export function parseGoDuration(v: string): number | undefined {
  const sign = v.startsWith('-') ? -1 : 1;
  const body = v.replace(/^[-+]/, '');
  if (body === '0') return 0;
  const re = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = re.exec(body)) !== null) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    consumed = re.lastIndex;
  }
  return consumed === body.length && body.length > 0 ? sign * total : undefined;
}

export function memberUsage(): string {
  const lines = Object.entries(MEMBER_FLAGS).map(([f, s]) => `  --${f}${s.def !== undefined && s.def !== '' ? ` (default ${JSON.stringify(s.def)})` : ''}\n      ${s.help} [${envName(f)}]`);
  return `usage: capstan member [flags]\n\nflags (each also read from its ETCD_* environment variable):\n${lines.join('\n')}\n`;
}
