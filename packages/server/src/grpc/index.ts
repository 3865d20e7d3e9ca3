export { codec, MessageCodec, protoDir, protoRoot } from './codec.js';
export {
  addClientServices,
  CLIENT_SERVICES,
  DEFAULT_PROGRESS_INTERVAL_MS,
  GRPC_OVERHEAD_BYTES,
  maxReceiveBytes,
  MAX_SEND_BYTES,
  serviceDefinition,
  SNAPSHOT_CHUNK_BYTES,
  StatusError,
  type ClientServicesOptions,
  type ServiceRegistry,
  type Decoded,
  type WatchHubLike,
  type WatchStreamLike,
} from './services.js';
export { rawClient, rawWatch, type RawCalls, type RawClientOptions, type RawWatch } from './client.js';
export { AuthGate, goStatusText, TOKEN_METADATA, type AuthCall, type AuthGateOptions } from './auth.js';
export { certCommonName, type HasAuthContext } from './identity.js';
export { framedMessage, GRPC_MESSAGE_PREFIX_BYTES } from './wire.js';
export { GrpcServer, parseGrpcTimeout, type FastCall, type FastMethod, type GrpcServerOptions } from './server.js';
