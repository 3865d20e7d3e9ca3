#!/usr/bin/env node
/**
 * `capstan`: member (one etcd-compatible member, etcd's flags), up (a local cluster of member
 * processes), status (a table per member).
 */
import { FlagError, memberUsage, parseMemberFlags, parseRetention } from './flags.js';
import { status, parseStatusArgs } from './status.js';
import { startQuietCollector } from './quietgc.js';
import { memberTLS } from './tls.js';
import { up, parseUpArgs } from './up.js';
import { tuneV8ForMember } from './v8tuning.js';

const USAGE = `usage: capstan <command> [flags]

commands:
  member [etcd flags]                     run one member (capstan member --help lists the flags)
  up [--members 3|5] [--data-dir DIR] [--tls]
                                          run a local cluster on 127.0.0.1 (client ports 2379, 22379, 32379, ...);
                                          --tls: https URLs, certificates in DIR/tls, prints the etcdctl flags
  status [--endpoints URL,...] [--cacert F --cert F --key F]
                                          one row per member: id, name, leader, term, indexes, db size, fsync p99
`;

async function member(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(memberUsage());
    return 0;
  }
  const flags = parseMemberFlags(argv, process.env);
  tuneV8ForMember();
  const { startNode, failpoints, FAILPOINTS_ENV } = await import('@capstan/server');
  if (failpoints.specError !== undefined) throw new FlagError(`${FAILPOINTS_ENV}: ${failpoints.specError.message}`);
  for (const v of flags.shadowed) {
    process.stderr.write(JSON.stringify({ level: 'warn', msg: `conflicting environment variable "${v}" is shadowed by corresponding command-line flag` }) + '\n');
  }
  for (const msg of flags.warnings) process.stderr.write(JSON.stringify({ level: 'warn', msg }) + '\n');
  const { clientTLS, peerTLS } = await memberTLS(flags);
  const node = await startNode({
    name: flags.name,
    dataDir: flags.dataDir,
    listenClientURLs: flags.listenClientURLs,
    advertiseClientURLs: flags.advertiseClientURLs,
    listenPeerURLs: flags.listenPeerURLs,
    initialAdvertisePeerURLs: flags.initialAdvertisePeerURLs,
    initialCluster: flags.initialCluster,
    initialClusterState: flags.initialClusterState,
    initialClusterToken: flags.initialClusterToken,
    heartbeatMs: flags.heartbeatMs,
    electionMs: flags.electionMs,
    snapshotCount: flags.snapshotCount,
    snapshotCatchUpEntries: flags.snapshotCatchUpEntries,
    warningApplyMs: flags.warningApplyMs,
    quotaBackendBytes: flags.quotaBackendBytes,
    maxRequestBytes: flags.maxRequestBytes,
    maxTxnOps: flags.maxTxnOps,
    listenMetricsURLs: flags.listenMetricsURLs,
    autoCompactionMode: flags.autoCompactionMode,
    autoCompactionRetention:
      flags.autoCompactionMode === 'revision' ? Number(flags.autoCompactionRetention) : (parseRetention(flags.autoCompactionRetention) ?? 0),
    logLevel: flags.logLevel,
    authTokenTTLMs: flags.authTokenTTLMs,
    bcryptCost: flags.bcryptCost,
    clientTLS,
    peerTLS,
  });
  // As etcd's fatal: a WAL that cannot make anything durable leaves nothing worth a graceful stop
  // (open client streams would hold it for seconds); the error is already logged.
  void node.failed.then(() => process.exit(1));
  const stopQuietGC = flags.quietGC ? startQuietCollector((fields) => node.log('info', 'collected garbage while quiet', fields)) : () => {};
  await new Promise<void>((resolve) => {
    const onSignal = (): void => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    void node.removed.then(onSignal);
  });
  stopQuietGC();
  await node.stop();
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'member':
        return await member(rest);
      case 'up':
        return await up(parseUpArgs(rest));
      case 'status':
        return await status(parseStatusArgs(rest));
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return cmd === undefined ? 1 : 0;
      default:
        process.stderr.write(`capstan: unknown command ${JSON.stringify(cmd)}\n${USAGE}`);
        return 1;
    }
  } catch (err) {
    if (err instanceof FlagError) {
      process.stderr.write(`capstan ${cmd}: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`capstan ${cmd}: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}

/**
 * grpc-js sets the TLS servername to the host it dials, an IP address for https://127.0.0.1:P, and
 * Node warns once (DEP0123) that it ignores such names, which is all that happens: keep that line
 * out of members' JSON logs and status's table. Other warnings print as before.
 */
function dropIPServernameWarning(): void {
  const listeners = process.listeners('warning');
  process.removeAllListeners('warning');
  process.on('warning', (w) => {
    if ((w as Error & { code?: string }).code === 'DEP0123') return;
    for (const l of listeners) l(w);
  });
}

dropIPServernameWarning();
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`capstan: ${String(err)}\n`);
    process.exit(1);
  },
);
