export * from './api.js';
export { RaftMember, type MemberConfig, memberIdOf, clusterIdOf, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_SNAPSHOT_COUNT } from './member.js';
export { startNode, jsonLogger, type NodeConfig, type RunningNode } from './node.js';
export { Metrics, serveMetrics } from './metrics.js';
export { codec, addClientServices, framedMessage, GRPC_MESSAGE_PREFIX_BYTES, GrpcServer, rawClient, rawWatch, type RawCalls, type RawWatch, type MessageCodec } from './grpc/index.js';
export { failpoints, FAILPOINTS_ENV, FAILPOINT_NAMES } from '@capstan/wal';
export { certCommonName } from './grpc/index.js';
export { type TLSConfig } from './tls.js';
export {
  createCA,
  issueCert,
  selfSignedCert,
  writeKeyPair,
  ensureSelfSignedCert,
  ensureClusterCerts,
  type KeyPairPem,
  type IssueOptions,
  type CertFiles,
  type ClusterCertFiles,
} from './certs.js';
