export * from './api.js';
export { RaftMember, type MemberConfig, memberIdOf, clusterIdOf, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_SNAPSHOT_COUNT } from './member.js';
export { startNode, jsonLogger, type NodeConfig, type RunningNode } from './node.js';
export { Metrics, serveMetrics } from './metrics.js';
export { codec, addClientServices, serverOptions, type MessageCodec } from './grpc/index.js';
export { failpoints, FAILPOINTS_ENV, FAILPOINT_NAMES } from '@capstan/wal';
