export {
  Wal,
  WAL_DIR,
  SNAP_DIR,
  WRITE_BLOCK_BYTES,
  WARN_SYNC_MS,
  INLINE_SYNC_MAX_BYTES,
  INLINE_SYNC_MAX_MS,
  type WalOptions,
  type SaveBatch,
  type SaveOptions,
  type Replay,
  type OpenedWal,
} from './wal.js';
export { Persisted } from './persisted.js';
export { RecordType, type WalMetadata, type SnapshotMarker } from './record.js';
export {
  WalError,
  WalCorruptError,
  WalReplayError,
  WalNotFoundError,
  WalLockedError,
  WalDiskFullError,
  WalIoError,
  WalPoisonedError,
  WalClosedError,
  WalInvalidBatchError,
  SnapshotCorruptError,
} from './errors.js';
export { nodeFileSystem, type FileSystem, type FileHandle, type OpenMode } from './fs.js';
export {
  FAILPOINTS_ENV,
  FAILPOINT_NAMES,
  Failpoints,
  FailpointSpecError,
  failpoints,
  fire,
  parseFailpoints,
  type FailpointSite,
  type FailAction,
} from './crashpoints.js';
export { FaultInjectingFileSystem, type Failpoint, type FailpointName } from './failpoints.js';
export {
  FSYNC_DURATION_BUCKETS,
  exponentialBuckets,
  type WalMetrics,
  type HistogramData,
  type CounterData,
} from './metrics.js';
export { DEFAULT_SEGMENT_BYTES, MIN_SEGMENT_BYTES } from './segment.js';
export { DEFAULT_MAX_SNAPSHOT_FILES } from './snapshot.js';
export { LOCK_FILE } from './lock.js';
export { goDuration, stderrLogger, type WalLogger, type LogLevel } from './log.js';
