/**
 * A whole member process's parts wired together: the Raft member, its peer and client gRPC
 * servers, the watch hub, metrics and health over HTTP, auto compaction, and structured logs.
 */
import * as grpc from '@grpc/grpc-js';
import { DEFAULT_BCRYPT_COST, MAX_BCRYPT_COST, MIN_BCRYPT_COST, WatchHub } from '@capstan/mvcc';
import { addClientServices, GrpcServer, maxReceiveBytes } from './grpc/index.js';
import { NO_CHANNELZ } from './grpc/channelz.js';
import { listenMux, shutdown, type Mux } from './listen.js';
import { RaftMember, type MemberConfig } from './member.js';
import { Metrics, serveMetrics } from './metrics.js';
import { MAX_PEER_MESSAGE_BYTES } from './peer.js';
import type { TLSConfig } from './tls.js';

export interface NodeConfig extends Omit<MemberConfig, 'log' | 'observeFsync' | 'clientURLs' | 'peerURLs'> {
  readonly listenClientURLs: readonly string[];
  readonly advertiseClientURLs: readonly string[];
  readonly listenPeerURLs: readonly string[];
  readonly initialAdvertisePeerURLs: readonly string[];
  readonly listenMetricsURLs: readonly string[];
  readonly autoCompactionMode: 'periodic' | 'revision';
  /** Milliseconds for periodic, revisions for revision; 0 disables. */
  readonly autoCompactionRetention: number;
  readonly logLevel?: string;
  /** --bcrypt-cost (etcd: 10; outside 4..31 the default is used, with a warning). */
  readonly bcryptCost?: number;
  /** TLS for https client URLs and https metrics URLs (etcd's --cert-file and friends, or --auto-tls). */
  readonly clientTLS?: TLSConfig;
}

export interface RunningNode {
  readonly member: RaftMember;
  readonly metrics: Metrics;
  /** Resolves if this member is removed from the cluster (it should then stop). */
  readonly removed: Promise<void>;
  /** Resolves if the member failed for good (its WAL could not be written): the process should exit non-zero. */
  readonly failed: Promise<Error>;
  /** The member's own log (its name, level and member ID), for what the process around it reports. */
  readonly log: Logger;
  stop(): Promise<void>;
}

const LEVELS = { debug: 0, info: 1, warn: 2, error: 3 } as const;

export type Logger = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

/** One JSON object per line on stderr, as etcd's zap logger. */
export function jsonLogger(name: string, minLevel = 'info'): { log: Logger; setId(id: string): void } {
  let memberId = '';
  const min = LEVELS[minLevel as keyof typeof LEVELS] ?? 1;
  return {
    log: (level, msg, fields) => {
      if (LEVELS[level] < min) return;
      process.stderr.write(JSON.stringify({ level, ts: new Date().toISOString(), msg, name, 'local-member-id': memberId, ...fields }) + '\n');
    },
    setId: (id) => (memberId = id),
  };
}

export async function startNode(cfg: NodeConfig): Promise<RunningNode> {
  const logger = jsonLogger(cfg.name, cfg.logLevel);
  let metrics: Metrics | undefined;
  const member = await RaftMember.start({
    ...cfg,
    clientURLs: cfg.advertiseClientURLs,
    peerURLs: cfg.initialAdvertisePeerURLs,
    log: logger.log,
    observeFsync: (s) => metrics?.walFsync.observe(s),
  });
  logger.setId(member.memberId.toString(16));
  const removed = new Promise<void>((resolve) => (member.onRemoved = resolve));
  const failed = new Promise<Error>((resolve) => (member.onFatal = resolve));
  const hub = new WatchHub(member.sm.store);
  metrics = new Metrics({
    hasLeader: () => member.leaderId !== 0,
    leaderChanges: () => member.leaderChanges,
    slowApplies: () => member.slow.count,
    heartbeatSendFailures: () => member.heartbeatSendFailures,
    isLeader: () => member.isLeader,
    committed: () => member.committedIndex,
    applied: () => member.appliedIndex,
    pending: () => member.pendingProposals,
    dbSize: async () => (await member.status()).dbSize,
    keys: () => member.sm.store.keyCount,
    watchStreams: () => hub.streamCount,
    watchers: () => hub.syncedCount + hub.unsyncedCount,
  });
  const peerServer = new grpc.Server({
    ...NO_CHANNELZ,
    'grpc.max_receive_message_length': MAX_PEER_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_PEER_MESSAGE_BYTES,
  });
  member.transport.register(peerServer);
  const handled = metrics.grpcHandled;
  const clientServer = new GrpcServer({
    maxReceiveBytes: maxReceiveBytes(member.limits),
    onStatus: (path, type, code) => handled.count(path, type, code),
    log: (msg, fields) => logger.log('error', msg, fields),
  });
  let bcryptCost = cfg.bcryptCost ?? DEFAULT_BCRYPT_COST;
  if (bcryptCost < MIN_BCRYPT_COST || bcryptCost > MAX_BCRYPT_COST) {
    logger.log('warn', 'use default bcrypt cost instead of the invalid given cost', {
      'min-cost': MIN_BCRYPT_COST,
      'max-cost': MAX_BCRYPT_COST,
      'default-cost': DEFAULT_BCRYPT_COST,
      'given-cost': bcryptCost,
    });
    bcryptCost = DEFAULT_BCRYPT_COST;
  }
  clientServer.setFastMethods(addClientServices(clientServer, member, hub, {
    log: (rec) => logger.log(rec.level === 'error' ? 'error' : rec.level === 'warn' ? 'warn' : 'info', String(rec.msg ?? 'grpc'), rec),
    bcryptCost,
    // Without a token, the verified client certificate's CN is the user (etcd's AuthInfoFromTLS).
    clientCertAuth: cfg.clientTLS?.clientCertAuth === true,
  }));
  const timers: NodeJS.Timeout[] = [];
  const health = async (): Promise<{ ok: boolean; reason?: string }> => {
    if (member.leaderId === 0) return { ok: false, reason: 'RAFT NO LEADER' };
    await member.readBarrier();
    return { ok: true };
  };
  // /health, /metrics and /version also answer on the client URLs, beside gRPC, as etcd's do.
  const clientHttp = serveMetrics(metrics, health);
  const metricsHttp = serveMetrics(metrics, health);
  const muxes: Mux[] = [];
  try {
    // As etcd's: peer connections whose certificate names hosts must come from one of them.
    muxes.push(await listenMux(cfg.listenPeerURLs, { grpc: peerServer, raft: member.transport.acceptStream, tls: cfg.peerTLS, checkSAN: true, log: logger.log }));
    muxes.push(await listenMux(cfg.listenClientURLs, { grpc: clientServer, http: clientHttp, tls: cfg.clientTLS, log: logger.log }));
    // etcd serves https metrics URLs with the client TLS settings.
    if (cfg.listenMetricsURLs.length > 0) muxes.push(await listenMux(cfg.listenMetricsURLs, { http: metricsHttp, tls: cfg.clientTLS, log: logger.log }));
  } catch (err) {
    for (const m of muxes) await m.close();
    await member.stop();
    peerServer.forceShutdown();
    clientServer.forceClose();
    throw err;
  }
  timers.push(...autoCompaction(member, cfg, logger.log));
  logger.log('info', 'serving client traffic', { address: cfg.listenClientURLs.join(','), 'peer-address': cfg.listenPeerURLs.join(',') });
  let stopping: Promise<void> | undefined;
  return {
    member,
    metrics,
    removed,
    failed,
    log: logger.log,
    stop: () =>
      (stopping ??= (async () => {
        for (const t of timers) clearInterval(t);
        hub.close();
        const [peerMux, clientMux, metricsMux] = muxes;
        await clientMux!.close();
        clientHttp.closeAllConnections();
        await clientServer.close();
        await member.stop();
        await peerMux!.close();
        await shutdown(peerServer);
        await metricsMux?.close();
        metricsHttp.closeAllConnections();
        logger.log('info', 'stopped member');
      })()),
  };
}

/**
 * etcd's auto compaction, run by the leader. Revision mode: every 5 minutes, compact to the
 * current revision minus the retention. Periodic mode: sample the revision every tenth of the
 * retention (at most hourly) and compact to the revision seen one retention ago.
 */
function autoCompaction(member: RaftMember, cfg: NodeConfig, log: Logger): NodeJS.Timeout[] {
  const retention = cfg.autoCompactionRetention;
  if (retention <= 0) return [];
  const compact = (rev: number): void => {
    if (!member.isLeader || rev <= member.sm.store.compactRev || rev <= 0) return;
    member.propose({ compaction: { revision: rev } }).then(
      () => log('info', 'completed auto compaction', { revision: rev }),
      (err: unknown) => log('warn', 'auto compaction failed', { revision: rev, error: String((err as Error)?.message ?? err) }),
    );
  };
  if (cfg.autoCompactionMode === 'revision') {
    return [setInterval(() => compact(member.sm.store.rev - retention), 5 * 60_000)];
  }
  const every = Math.min(retention / 10, 3600_000);
  const samples: number[] = [];
  const keep = Math.ceil(retention / every);
  return [
    setInterval(() => {
      samples.push(member.sm.store.rev);
      if (samples.length > keep) compact(samples.shift()!);
    }, every),
  ];
}
