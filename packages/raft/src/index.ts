export * from './messages.js';
export * from './storage.js';
export { RawNode, type Ready, type Status, type ProgressStatus } from './rawnode.js';
export { Role, RaftError, type Config, type SoftState, type Logger, DEFAULT_MAX_SIZE_PER_MSG, DEFAULT_MAX_INFLIGHT_MSGS, DEFAULT_MAX_COMMITTED_SIZE_PER_READY } from './raft.js';
export { RaftInvariantError } from './log.js';
export { encodeConfChange, decodeConfChange, ConfChangeDecodeError, validateConfChange } from './confchange.js';
export { bootstrap, BootstrapError } from './bootstrap.js';
