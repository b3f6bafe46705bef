/**
 * The package's main entry: `import { Engine } from 'sluice'`.
 */
export { Engine } from './engine/engine.js';
export type {
  Acks,
  CleanupPolicy,
  CompactionResult,
  EngineOptions,
  FetchResult,
  PartitionDescription,
  TopicConfig,
  TopicDescription,
  TopicsChangedEvent,
} from './engine/engine.js';
export {
  COMMAND_RING_BYTES,
  COMPLETION_RING_BYTES,
  FETCH_BYTES_MAX,
  FETCH_INTO_BYTES_MIN,
  LOG_RING_BUDGET_BYTES,
  LOG_RING_BYTES,
  LOG_RING_BYTES_MAX,
  THROTTLE_BACKOFF_MS,
  logRingBytesFor,
} from './engine/engine.js';
export { SluiceError, ERROR_CODES, errorMeaning, isRetriable } from './errors.js';
export type { ErrorCode, WireError } from './errors.js';
export {
  encodeBatch,
  decodeBatch,
  decodeRecords,
  validateBatch,
  forEachBatch,
  utf8,
} from './persist/record-batch.js';
export type { RecordInput, DecodedRecord, RecordHeader, BatchHeader } from './persist/record-batch.js';
export { crc32cImplementation } from './persist/crc32c.js';
export { verifyDataDir } from './workers/verify-pool.js';
export type { DataDirVerifyReport } from './workers/verify-pool.js';
export { startGateway, DEFAULT_GATEWAY_LIMITS } from './ws-gateway/server.js';
export type { Gateway, GatewayOptions, GatewayLimits } from './ws-gateway/server.js';
export { openGroups } from './engine/groups.js';
export type { Groups } from './engine/groups.js';
export { GroupCoordinator } from './engine/group-coordinator.js';
export type { GroupDescription, GroupListing, JoinRequest, MemberAssignment } from './engine/group-coordinator.js';
