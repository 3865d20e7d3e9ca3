/**
 * Prometheus metrics under etcd's names (so dashboards and `etcdctl check` style tooling read
 * them unchanged), and the HTTP endpoint serving /metrics and /health.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { failpoints } from '@capstan/wal';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { HandledCounter } from './grpc/handled.js';

/** The etcd versions Capstan answers as (its API is etcd 3.5's). */
export const ETCD_VERSION = '3.5.0';
export const ETCD_CLUSTER_VERSION = '3.5.0';

/** etcd's buckets for disk durations: 1 ms doubling up to about 8 s. */
const DISK_BUCKETS = Array.from({ length: 14 }, (_, i) => 0.001 * 2 ** i);

export interface MetricsSource {
  hasLeader(): boolean;
  leaderChanges(): number;
  /** Requests over --experimental-warning-apply-duration (slow.ts). */
  slowApplies(): number;
  /** Heartbeats sent late by this leader (heartbeat.ts). */
  heartbeatSendFailures(): number;
  isLeader(): boolean;
  committed(): number;
  applied(): number;
  pending(): number;
  dbSize(): Promise<number>;
  keys(): number;
  watchStreams(): number;
  watchers(): number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly walFsync: Histogram;
  readonly backendCommit: Histogram;
  readonly proposalsFailed: Counter;
  /** The client gRPC server reports each call's status to it. */
  readonly grpcHandled = new HandledCounter();
  readonly snapshotSaves: Histogram;

  constructor(src: MetricsSource) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const gauge = (name: string, help: string, get: () => number | Promise<number>): void => {
      new Gauge({
        name,
        help,
        registers,
        async collect() {
          this.set(await get());
        },
      });
    };
    gauge('etcd_server_has_leader', 'Whether or not a leader exists. 1 is existence, 0 is not.', () => (src.hasLeader() ? 1 : 0));
    gauge('etcd_server_is_leader', 'Whether or not this member is a leader. 1 if is, 0 otherwise.', () => (src.isLeader() ? 1 : 0));
    gauge('etcd_server_proposals_committed_total', 'The total number of consensus proposals committed.', () => src.committed());
    gauge('etcd_server_proposals_applied_total', 'The total number of consensus proposals applied.', () => src.applied());
    gauge('etcd_server_proposals_pending', 'The current number of pending proposals to commit.', () => src.pending());
    gauge('etcd_mvcc_db_total_size_in_bytes', 'Total size of the underlying database physically allocated in bytes.', () => src.dbSize());
    gauge('etcd_debugging_mvcc_keys_total', 'Total number of keys.', () => src.keys());
    gauge('etcd_debugging_mvcc_watch_stream_total', 'Total number of watch streams.', () => src.watchStreams());
    gauge('etcd_debugging_mvcc_watcher_total', 'Total number of watchers.', () => src.watchers());
    /** A counter the member keeps itself, read at each scrape. */
    const counter = (name: string, help: string, get: () => number): void => {
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(get());
        },
      });
    };
    counter('etcd_server_leader_changes_seen_total', 'The number of leader changes seen.', () => src.leaderChanges());
    counter('etcd_server_slow_apply_total', 'The total number of slow apply requests (likely overloaded from slow disk).', () => src.slowApplies());
    counter('etcd_server_heartbeat_send_failures_total', 'The total number of leader heartbeat send failures (likely overloaded from slow disk).', () => src.heartbeatSendFailures());
    this.proposalsFailed = new Counter({ name: 'etcd_server_proposals_failed_total', help: 'The total number of failed proposals seen.', registers });
    this.walFsync = new Histogram({
      name: 'etcd_disk_wal_fsync_duration_seconds',
      help: 'The latency distributions of fsync called by WAL.',
      buckets: DISK_BUCKETS,
      registers,
    });
    this.backendCommit = new Histogram({
      name: 'etcd_disk_backend_commit_duration_seconds',
      help: 'The latency distributions of commit called by backend.',
      buckets: DISK_BUCKETS,
      registers,
    });
    this.snapshotSaves = new Histogram({
      name: 'etcd_debugging_snap_save_total_duration_seconds',
      help: 'The total latency distributions of save called by snapshot.',
      buckets: DISK_BUCKETS,
      registers,
    });
    const handled = this.grpcHandled;
    new Counter({
      name: 'grpc_server_handled_total',
      help: 'Total number of RPCs completed on the server, regardless of success or failure.',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method', 'grpc_code'],
      registers,
      collect() {
        this.reset();
        for (const s of handled.series()) {
          this.inc({ grpc_type: s.type, grpc_service: s.service, grpc_method: s.method, grpc_code: s.code }, s.count);
        }
      },
    });
  }

  /** p99 of the WAL fsync histogram, in seconds (for `capstan status`); NaN before any fsync. */
  async fsyncP99(): Promise<number> {
    const m = await this.walFsync.get();
    const count = m.values.find((v) => v.metricName === 'etcd_disk_wal_fsync_duration_seconds_count')?.value ?? 0;
    if (count === 0) return NaN;
    for (const v of m.values) {
      if (v.metricName !== 'etcd_disk_wal_fsync_duration_seconds_bucket') continue;
      if (v.value >= 0.99 * count) return Number(v.labels.le);
    }
    return Infinity;
  }
}

/**
 * /metrics in Prometheus text format; /health as etcd's: {"health":"true"} with 200 when a leader
 * is known, {"health":"false","reason":...} with 503 otherwise.
 */
export function serveMetrics(metrics: Metrics, health: () => Promise<{ ok: boolean; reason?: string }>): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(500);
          res.end(String(err));
        },
      );
    } else if (path === '/version') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ etcdserver: ETCD_VERSION, etcdcluster: ETCD_CLUSTER_VERSION }));
    } else if (failpoints.enabled && (path === FAILPOINTS_PATH || path.startsWith(`${FAILPOINTS_PATH}/`))) {
      serveFailpoints(req, res, path.slice(FAILPOINTS_PATH.length + 1));
    } else if (path === '/health' || path === '/readyz' || path === '/livez') {
      health().then(
        (h) => {
          res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' });
          res.end(JSON.stringify(h.ok ? { health: 'true', reason: '' } : { health: 'false', reason: h.reason ?? '' }));
        },
        (err: unknown) => {
          res.writeHead(503, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ health: 'false', reason: String(err) }));
        },
      );
    } else {
      res.writeHead(404);
      res.end('404 page not found\n');
    }
  });
}

/** Where failpoints are listed and armed, when the member was started with CAPSTAN_FAILPOINTS set. */
export const FAILPOINTS_PATH = '/debug/failpoints';

/**
 * gofail's HTTP interface: GET lists armed failpoints (`name=term` lines), PUT /name with a term
 * as the body arms one, DELETE /name disarms it.
 */
function serveFailpoints(req: IncomingMessage, res: ServerResponse, name: string): void {
  const reply = (code: number, text: string): void => {
    res.writeHead(code, { 'content-type': 'text/plain' });
    res.end(text === '' ? '' : `${text}\n`);
  };
  if (req.method === 'GET' && name === '') return reply(200, failpoints.list().join('\n'));
  if (name === '') return reply(405, 'PUT or DELETE /debug/failpoints/<name>');
  if (req.method !== 'PUT' && req.method !== 'DELETE') return reply(405, 'GET, PUT or DELETE');
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c: string) => {
    if (body.length < 1024) body += c;
  });
  req.on('end', () => {
    try {
      failpoints.set(name, req.method === 'DELETE' ? 'off' : body);
      reply(204, '');
    } catch (err) {
      reply(400, (err as Error).message);
    }
  });
}
