export { codec, MessageCodec, protoDir, protoRoot } from './codec.js';
export {
  addClientServices,
  CLIENT_SERVICES,
  DEFAULT_PROGRESS_INTERVAL_MS,
  GRPC_OVERHEAD_BYTES,
  MAX_SEND_BYTES,
  serverOptions,
  serviceDefinition,
  SNAPSHOT_CHUNK_BYTES,
  StatusError,
  type ClientServicesOptions,
  type Decoded,
  type WatchHubLike,
  type WatchStreamLike,
} from './services.js';
export { certCommonName, type HasAuthContext } from './identity.js';
