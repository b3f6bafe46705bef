/**
 * The owner thread: the single writer of the partitions assigned to it.
 *
 * Loop (one pass):
 *   1. drain the command ring: for each produce, validate the batch (size, framing, CRC32C
 *      unless the gateway verified it, idempotence) where it lies in shared memory. Most
 *      batches lie in the partition's log ring already (the gateway copied them there): the
 *      owner assigns the offset by rewriting baseOffset in place (outside the CRC) and
 *      appends the entry, or appends it void when it is rejected, so that readers skip it;
 *      a batch too large for the log ring came inside the command and is written to the
 *      segment file from there. Serve fetches of older offsets from disk straight into the
 *      completion ring;
 *   2. flush: write every partition's pending log-ring entries to its active segment, one
 *      write per contiguous run, then publish them (high watermark) and answer acks=1;
 *   3. group commit: start an fdatasync of each dirty segment on libuv's thread pool; while
 *      it runs the owner goes on taking and writing batches; when it calls back, publish the
 *      durable offset, answer every acks=all batch it covers, and start the next one if
 *      more are waiting. So one fsync serves every batch that arrived while the previous
 *      one ran, and the owner never stalls on the disk. A roll's fdatasync of the closed
 *      segment runs on the thread pool too (PartitionLog.#startSeal); the log calls a sync
 *      back only once its durable offset covers the sync's target, so acks=all batches in
 *      a new segment are answered when the seal of the one before it is done as well;
 *   4. housekeeping on a timer: time-based rolls, retention, periodic sync of acks=1 data,
 *      and compaction of compacted partitions whose closed segments changed since their
 *      last pass. A compaction pass runs in the background in slices of about 256 KiB of
 *      log separated by setImmediate (persist/compaction.ts), so this loop goes on taking
 *      and writing batches between slices; its swap is one synchronous step between two
 *      commands, so a read never sees a half-swapped segment.
 * While a pass runs, new commands pile up in the ring; the next pass takes them all, so
 * under load one wake-up and one fsync serve many batches.
 *
 * The owner never blocks in Atomics.wait on its command ring: it waits with
 * Atomics.waitAsync so that control messages (open, close, shutdown) get through. It may
 * block briefly on a full completion ring, because the gateway always drains it.
 *
 * Owner: this file runs in an owner worker thread only. Invariants: a partition slot is
 * owned by exactly one owner; offsets are assigned only here, contiguously; nothing is
 * answered before the condition its acks level promises holds; every produceInRing command
 * becomes exactly one log ring entry (appended or void), in command order; no batch is
 * written to a segment file before its framing and CRC were verified (by this thread, or
 * by the gateway on the very bytes in the log ring: CMD_FLAG_CRC_CHECKED).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { gunzipSync } from 'node:zlib';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { assert, unreachable } from '../assert.js';
import { SluiceError, asStorageError, errorNumber, type WireError } from '../errors.js';
import { isCompacted } from '../persist/cleanup-policy.js';
import type { CompactionResult } from '../persist/compaction.js';
import { nodeFileSystem } from '../persist/fs.js';
import { INFLATED_BATCH_BYTES_MAX } from '../persist/limits.js';
import { PartitionLog } from '../persist/partition-log.js';
import { loadNewestSnapshot, writeSnapshot } from '../persist/producer-snapshot.js';
import {
  checkBatchFrameAt,
  Compression,
  COMPRESSION_MASK,
  CONTROL_BIT,
  nullKeyRecordIndex,
  RECORDS_OFFSET,
  readBatchHeader,
  stampLogAppendTime,
  validateBatchAt,
  writeBaseOffset,
  type BatchHeader,
} from '../persist/record-batch.js';
import { crc32c } from '../persist/crc32c.js';
import { LogRing } from '../ring/log-ring.js';
import { ProducerStates } from './producer-state.js';
import { SeqlockCells } from '../ring/seqlock-cells.js';
import { SpscRing } from '../ring/spsc-ring.js';
import {
  CMD_ACKS_OFFSET,
  CMD_ARGUMENT_OFFSET,
  CMD_BATCH_OFFSET,
  CMD_FLAG_CRC_CHECKED,
  CMD_FLAGS_OFFSET,
  CMD_KIND_OFFSET,
  CMD_LENGTH_OFFSET,
  CMD_REQUEST_ID_OFFSET,
  CMD_RING_ENTRY_OFFSET,
  CMD_RING_POSITION_OFFSET,
  CMD_SLOT_OFFSET,
  Cell,
  CommandKind,
  DONE_ERROR_OFFSET,
  DONE_HEADER_BYTES,
  DONE_HWM_OFFSET,
  DONE_LOG_START_OFFSET,
  DONE_PAYLOAD_LENGTH_OFFSET,
  DONE_REQUEST_ID_OFFSET,
  DONE_SLOT_OFFSET,
  DONE_VALUE_OFFSET,
  NOTIFY_REQUEST_ID,
  type ControlReply,
  type ControlRequest,
  type OwnerInit,
} from './commands.js';

/** Commands taken per pass before flushing, so that acks keep flowing under a flood. */
const DRAIN_BYTES_MAX = 16 * 1024 * 1024;
/** Longest idle sleep (the wake timer's furthest deadline); the loop also wakes for housekeeping and flush deadlines. */
const IDLE_WAIT_MS_MAX = 1000;
/** Room reserved for an error message in a completion frame. */
const ERROR_MESSAGE_BYTES_MAX = 512;
/** How long the owner waits at a time for the gateway to drain a full completion ring. */
const COMPLETION_SPACE_WAIT_MS = 100;

const textEncoder = new TextEncoder();

/** One partition as its owner sees it. Owner thread only. */
class OwnedPartition {
  readonly slot: number;
  readonly log: PartitionLog;
  /** This thread is its entry writer (the gateway writes the batches' bytes). */
  readonly ring: LogRing;
  readonly ringView: DataView;
  readonly cells: SeqlockCells;
  /** Next offset to assign: the log end offset plus what sits unflushed in the ring. */
  nextOffset: number;
  /** Flat triples (requestId, acks, baseOffset) of appended but unflushed batches. */
  readonly unflushed: number[] = [];
  /** Flat pairs (requestId, baseOffset) of acks=all batches written, waiting for an fsync to start. */
  unsynced: number[] = [];
  /** The same pairs for the batches the fsync in flight covers. */
  inSync: number[] = [];
  /** True while an fdatasync runs on the thread pool for this partition (the log counts them). */
  get syncing(): boolean {
    return this.log.syncInFlight;
  }
  /** The flush interval came while a sync was in flight: sync again when it ends (acks=1 data stays within one interval). */
  syncDue = false;
  /** Called when the fsync in flight finishes (close and shutdown wait for it). */
  readonly syncWaiters: (() => void)[] = [];
  /** Idempotent producers' sequences, so a re-sent batch is stored once. */
  readonly producers = new ProducerStates();
  /** The high watermark last announced to the gateway. */
  notifiedHighWatermark = -1;
  /** cleanupPolicy 'compact' or 'compact,delete': records need keys; housekeeping compacts. */
  readonly compacted: boolean;
  /** message.timestamp.type LogAppendTime: each appended batch gets the owner's clock (timestamp-type.ts). */
  readonly logAppendTime: boolean;
  /** The compaction pass running or queued (null when none). */
  compaction: Promise<CompactionResult> | null = null;
  /** Set when the partition starts closing: a running compaction pass stops at its next slice. */
  closing = false;

  constructor(slot: number, log: PartitionLog, ring: LogRing, cells: SeqlockCells) {
    this.slot = slot;
    this.log = log;
    this.ring = ring;
    this.ringView = new DataView(ring.data.buffer, ring.data.byteOffset, ring.data.byteLength);
    this.cells = cells;
    this.nextOffset = log.logEndOffset;
    this.compacted = isCompacted(log.config.cleanupPolicy);
    this.logAppendTime = log.config.timestampType === 'LogAppendTime';
  }

  publishCells(): void {
    const log = this.log;
    this.cells.begin();
    this.cells.set(Cell.logStartOffset, log.logStartOffset);
    this.cells.set(Cell.logEndOffset, log.logEndOffset);
    this.cells.set(Cell.highWatermark, log.logEndOffset);
    this.cells.set(Cell.durableOffset, log.durableOffset);
    this.cells.set(Cell.sizeBytes, log.sizeBytes);
    this.cells.set(Cell.segmentCount, log.segmentCount);
    this.cells.end();
  }
}

class Owner {
  readonly #init: OwnerInit;
  readonly #commands: SpscRing;
  readonly #completions: SpscRing;
  readonly #partitions: (OwnedPartition | undefined)[] = [];
  readonly #dirty = new Set<OwnedPartition>();
  readonly #needSync = new Set<OwnedPartition>();
  #stopping = false;
  #nextHousekeepingMs = 0;
  #nextFlushMs = 0;
  /** The timer that wakes the idle loop for its next deadline (see #armWake), and that deadline. */
  #wakeTimer: ReturnType<typeof setTimeout> | null = null;
  #wakeDueMs = Infinity;

  constructor(init: OwnerInit) {
    this.#init = init;
    this.#commands = new SpscRing(init.commandRing);
    this.#completions = new SpscRing(init.completionRing);
  }

  // ------------------------------------------------------------ loop

  async run(): Promise<void> {
    const now = Date.now();
    this.#nextHousekeepingMs = now + this.#init.housekeepingIntervalMs;
    this.#nextFlushMs = this.#init.flushIntervalMs < 0 ? Infinity : now + this.#init.flushIntervalMs;
    try {
      while (!this.#stopping) {
        const worked = this.#pass();
        this.#timers();
        // After work, yield a turn only if more commands wait (so that fsync callbacks and
        // control messages get through under load); an empty ring goes straight to waiting,
        // which runs the event loop too, rather than through an empty pass first. The wait
        // has no timeout (a timed waitAsync costs CPU per wake-up, about one per batch): the
        // wake timer bounds it. parentPort keeps this thread alive.
        if (worked && !this.#commands.isEmpty()) await yieldToEventLoop();
        else {
          this.#armWake();
          await this.#commands.waitAsyncUntilWoken();
        }
      }
    } finally {
      if (this.#wakeTimer !== null) clearTimeout(this.#wakeTimer);
    }
  }

  /**
   * Makes sure a timer wakes the idle loop by its next housekeeping or flush deadline, and
   * within IDLE_WAIT_MS_MAX in any case (so a lost notify costs at most that). A timer
   * armed early enough is kept: under load the loop waits about once per batch, and the
   * timer is set about once per IDLE_WAIT_MS_MAX.
   */
  #armWake(): void {
    const now = Date.now();
    const due = Math.min(this.#nextHousekeepingMs, this.#nextFlushMs, now + IDLE_WAIT_MS_MAX);
    if (this.#wakeTimer !== null && this.#wakeDueMs <= due) return;
    if (this.#wakeTimer !== null) clearTimeout(this.#wakeTimer);
    this.#wakeDueMs = due;
    this.#wakeTimer = setTimeout(() => {
      this.#wakeTimer = null;
      this.#commands.wake();
    }, Math.max(1, due - now));
  }

  /** One pass: drain, flush, group commit. Returns whether there was anything to do. */
  #pass(): boolean {
    const worked = this.#drain();
    for (const p of this.#dirty) this.#flush(p);
    this.#dirty.clear();
    for (const p of this.#needSync) this.#startSync(p);
    this.#needSync.clear();
    return worked;
  }

  #timers(): void {
    const now = Date.now();
    if (now >= this.#nextFlushMs) {
      this.#nextFlushMs = now + this.#init.flushIntervalMs;
      for (const p of this.#partitions) {
        if (p && p.log.durableOffset < p.log.logEndOffset) {
          if (p.syncing) p.syncDue = true;
          else this.#startSync(p);
        }
      }
    }
    if (now >= this.#nextHousekeepingMs) {
      this.#nextHousekeepingMs = now + this.#init.housekeepingIntervalMs;
      this.#housekeeping(now);
    }
  }

  #housekeeping(now: number): void {
    for (const p of this.#partitions) {
      if (!p) continue;
      if (p.compacted && p.compaction === null && p.log.compactionDue(now)) {
        this.#compact(p).catch((err: unknown) => log('error', 'compaction failed', { slot: p.slot, error: String(err) }));
      }
      // Runs while an fsync is in flight (under steady acks=all load one nearly always is):
      // retention keeps a segment whose fsync is running (PartitionLog.applyRetention).
      try {
        this.#flush(p);
        p.log.maybeRoll(now);
        const { segmentsDeleted, bytesDeleted } = p.log.applyRetention(now);
        if (segmentsDeleted > 0) {
          log('info', 'retention deleted segments', { slot: p.slot, segmentsDeleted, bytesDeleted, logStartOffset: p.log.logStartOffset });
        }
        p.publishCells();
      } catch (err) {
        log('error', 'housekeeping failed', { slot: p.slot, error: String(err) });
      }
    }
  }

  // ------------------------------------------------------------ commands

  #drain(): boolean {
    const ring = this.#commands;
    const view = ring.view;
    let bytes = 0;
    let worked = false;
    while (bytes < DRAIN_BYTES_MAX) {
      const off = ring.peek();
      if (off < 0) break;
      worked = true;
      bytes += ring.frameLength;
      const kind = view.getUint8(off + CMD_KIND_OFFSET);
      switch (kind) {
        case CommandKind.produceInRing:
          bytes += view.getUint32(off + CMD_LENGTH_OFFSET, true);
          this.#produceInRing(off);
          break;
        case CommandKind.produceInline:
          this.#produceInline(off);
          break;
        case CommandKind.fetch:
          this.#fetch(off);
          break;
        case CommandKind.offsetForTime:
          this.#offsetForTime(off);
          break;
        default:
          assert(false, () => `unknown command kind ${kind}`);
      }
      ring.release();
    }
    return worked;
  }

  #partition(slot: number): OwnedPartition | undefined {
    return this.#partitions[slot];
  }

  /**
   * Validates a produced batch where it lies (framing, size, CRC-32C unless `crcChecked`,
   * keys of a compacted topic) and applies the idempotence table. Returns its header when it
   * is to be appended, or the base offset of the stored batch it duplicates. Throws a
   * SluiceError when it is rejected.
   */
  #admit(p: OwnedPartition, bytes: Uint8Array, view: DataView, pos: number, length: number, crcChecked: boolean): BatchHeader | number {
    const sizeBytesMax = p.log.config.batchBytesMax;
    const header = crcChecked ? checkBatchFrameAt(bytes, view, pos, sizeBytesMax) : validateBatchAt(bytes, view, pos, sizeBytesMax);
    if (header.sizeBytes !== length) {
      throw new SluiceError('CORRUPT_MESSAGE', `batch claims ${header.sizeBytes} bytes but ${length} were sent`);
    }
    const { producerId, baseSequence } = header;
    if (producerId >= 0 && baseSequence < 0) {
      throw new SluiceError('INVALID_REQUEST', `idempotent batch of producer ${producerId} has sequence ${baseSequence}`);
    }
    if (p.compacted) checkKeys(bytes, pos, header);
    if (producerId >= 0) {
      const verdict = p.producers.check(producerId, header.producerEpoch, baseSequence, header.recordCount);
      // Stored already: answer with its offset once the acks level holds for it, which the
      // next flush (and sync) guarantees, since it was appended before.
      if (verdict.kind === 'duplicate') return verdict.baseOffset;
    }
    return header;
  }

  /** Assigns the next offsets to an admitted batch; returns its base offset. */
  #assign(p: OwnedPartition, header: BatchHeader): number {
    const base = p.nextOffset;
    if (header.producerId >= 0) {
      p.producers.record(header.producerId, header.producerEpoch, header.baseSequence, header.recordCount, base);
    }
    p.nextOffset = base + header.recordCount;
    return base;
  }

  /** A batch the gateway copied into the partition's log ring (see commands.ts). */
  #produceInRing(off: number): void {
    const view = this.#commands.view;
    const requestId = view.getUint32(off + CMD_REQUEST_ID_OFFSET, true);
    const acks = view.getInt8(off + CMD_ACKS_OFFSET);
    const crcChecked = (view.getUint8(off + CMD_FLAGS_OFFSET) & CMD_FLAG_CRC_CHECKED) !== 0;
    const slot = view.getUint32(off + CMD_SLOT_OFFSET, true);
    const length = view.getUint32(off + CMD_LENGTH_OFFSET, true);
    const position = view.getInt32(off + CMD_RING_POSITION_OFFSET, true);
    const entry = view.getUint32(off + CMD_RING_ENTRY_OFFSET, true);
    const p = this.#partition(slot);
    // Not open: the ring the command names went with the partition (closed, or not ours).
    if (!p) return this.#fail(requestId, acks, new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `partition slot ${slot} is not open on this owner`));
    const ring = p.ring;
    const at = position & (ring.dataBytes - 1);
    this.#dirty.add(p); // a flush publishes the entry, void or not, so its room comes back
    let admitted: BatchHeader | number;
    try {
      admitted = this.#admit(p, ring.data, p.ringView, at, length, crcChecked);
    } catch (err) {
      ring.appendVoid(entry, p.nextOffset, position, length);
      return this.#fail(requestId, acks, err);
    }
    if (typeof admitted === 'number') {
      ring.appendVoid(entry, p.nextOffset, position, length);
      p.unflushed.push(requestId, acks, admitted);
      return;
    }
    const base = this.#assign(p, admitted);
    writeBaseOffset(p.ringView, at, base);
    if (p.logAppendTime) stampLogAppendTime(crc32c, ring.data, p.ringView, at, length, Date.now());
    ring.append(entry, base, p.nextOffset, position, length);
    p.unflushed.push(requestId, acks, base);
  }

  /** A batch too large for the log ring, inside the command: written to the file from there. */
  #produceInline(off: number): void {
    const ring = this.#commands;
    const view = ring.view;
    const requestId = view.getUint32(off + CMD_REQUEST_ID_OFFSET, true);
    const acks = view.getInt8(off + CMD_ACKS_OFFSET);
    const slot = view.getUint32(off + CMD_SLOT_OFFSET, true);
    const length = view.getUint32(off + CMD_LENGTH_OFFSET, true);
    const p = this.#partition(slot);
    if (!p) return this.#fail(requestId, acks, new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `partition slot ${slot} is not open on this owner`));
    // The log ring's pending batches come first in the file (and a failed flush resets
    // the offsets and producer states this batch is checked against).
    this.#flush(p);
    const batchOff = off + CMD_BATCH_OFFSET;
    let admitted: BatchHeader | number;
    try {
      admitted = this.#admit(p, ring.data, view, batchOff, length, false);
    } catch (err) {
      return this.#fail(requestId, acks, err);
    }
    this.#dirty.add(p);
    if (typeof admitted === 'number') {
      p.unflushed.push(requestId, acks, admitted);
      return;
    }
    const base = p.nextOffset;
    writeBaseOffset(view, batchOff, base);
    if (p.logAppendTime) stampLogAppendTime(crc32c, ring.data, view, batchOff, length, Date.now());
    try {
      p.log.append(ring.data.subarray(batchOff, batchOff + length), base, base + admitted.recordCount);
    } catch (err) {
      return this.#fail(requestId, acks, asStorageError(err, 'append'));
    }
    this.#assign(p, admitted);
    p.unflushed.push(requestId, acks, base);
  }

  #fetch(off: number): void {
    const view = this.#commands.view;
    const requestId = view.getUint32(off + CMD_REQUEST_ID_OFFSET, true);
    const slot = view.getUint32(off + CMD_SLOT_OFFSET, true);
    const maxBytes = Math.min(view.getUint32(off + CMD_LENGTH_OFFSET, true), this.#init.fetchBytesMax);
    const offset = view.getFloat64(off + CMD_ARGUMENT_OFFSET, true);
    const p = this.#partition(slot);
    if (!p) return this.#fail(requestId, 1, new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `partition slot ${slot} is not open on this owner`));
    // Whatever sits unflushed must reach the file before a read could look for it.
    this.#flush(p);
    let plan;
    try {
      plan = p.log.locate(offset, maxBytes);
    } catch (err) {
      return this.#fail(requestId, 1, err);
    }
    if (plan === null) {
      this.#complete(requestId, -1, p);
      return;
    }
    const done = this.#completions;
    const frameBytes = DONE_HEADER_BYTES + Math.max(plan.bytesMax, ERROR_MESSAGE_BYTES_MAX);
    const at = this.#reserveCompletion(frameBytes);
    let n: number;
    try {
      n = p.log.readInto(plan, done.data.subarray(at + DONE_HEADER_BYTES, at + DONE_HEADER_BYTES + plan.bytesMax));
    } catch (err) {
      this.#writeError(at, requestId, err);
      return;
    }
    this.#writeHeader(at, requestId, 0, readBatchHeader(done.view, at + DONE_HEADER_BYTES).baseOffset, p, n);
    done.commit(DONE_HEADER_BYTES + n);
  }

  #offsetForTime(off: number): void {
    const view = this.#commands.view;
    const requestId = view.getUint32(off + CMD_REQUEST_ID_OFFSET, true);
    const slot = view.getUint32(off + CMD_SLOT_OFFSET, true);
    const timestamp = view.getFloat64(off + CMD_ARGUMENT_OFFSET, true);
    const p = this.#partition(slot);
    if (!p) return this.#fail(requestId, 1, new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `partition slot ${slot} is not open on this owner`));
    this.#flush(p);
    try {
      const found = p.log.offsetForTimestamp(timestamp);
      this.#complete(requestId, found ?? -1, p);
    } catch (err) {
      this.#fail(requestId, 1, err);
    }
  }

  // ------------------------------------------------------------ compaction

  /**
   * Runs a compaction pass of `p` after the one running or queued (PartitionLog takes one at
   * a time), in slices on this thread's event loop. Resolves with its result.
   */
  #compact(p: OwnedPartition): Promise<CompactionResult> {
    const previous = p.compaction ?? Promise.resolve(null);
    const run = previous
      .catch(() => null)
      .then(async () => {
        if (p.closing) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `partition slot ${p.slot} is closing`);
        const result = await p.log.compact({ yieldNow: yieldToEventLoop, isCancelled: () => p.closing });
        // The log ring may still hold the closed segments' batches as appended: let reads of
        // those offsets come from the rewritten files instead (both are correct, these smaller).
        if (result.segmentsRewritten > 0) p.ring.hideBelow(p.log.activeSegmentBaseOffset);
        p.publishCells();
        if (result.segmentsRewritten > 0) log('info', 'compaction rewrote segments', { slot: p.slot, ...result });
        return result;
      });
    p.compaction = run;
    const clear = () => {
      if (p.compaction === run) p.compaction = null;
    };
    run.then(clear, clear);
    return run;
  }

  // ------------------------------------------------------------ flush and sync

  #flush(p: OwnedPartition): void {
    const ring = p.ring;
    const end = ring.appendedEnd;
    let i = ring.pendingStart;
    try {
      while (i !== end) {
        if (ring.entryIsVoid(i)) {
          i++; // a rejected batch: never written out
          continue;
        }
        const runStart = ring.entryDataOffset(i);
        let runEnd = runStart + ring.entryLength(i);
        const first = ring.entryFirstKey(i);
        let next = ring.entryNextKey(i);
        i++;
        // A void entry right after the run has offset runEnd and key next too: stop at it.
        while (i !== end && !ring.entryIsVoid(i) && ring.entryDataOffset(i) === runEnd && ring.entryFirstKey(i) === next) {
          runEnd += ring.entryLength(i);
          next = ring.entryNextKey(i);
          i++;
        }
        p.log.append(ring.data.subarray(runStart, runEnd), first, next);
      }
    } catch (err) {
      this.#failUnflushed(p, asStorageError(err, 'append'));
      return;
    }
    ring.publish();
    p.publishCells();
    if (p.log.logEndOffset !== p.notifiedHighWatermark) {
      p.notifiedHighWatermark = p.log.logEndOffset;
      this.#complete(NOTIFY_REQUEST_ID, p.log.logEndOffset, p);
    }
    const u = p.unflushed;
    for (let k = 0; k < u.length; k += 3) {
      const requestId = u[k];
      const acks = u[k + 1];
      const base = u[k + 2];
      if (acks === -1) {
        p.unsynced.push(requestId, base);
        this.#needSync.add(p);
      } else if (acks === 1) {
        this.#complete(requestId, base, p);
      }
    }
    u.length = 0;
  }

  /** Starts the group-commit fsync of a partition unless one is in flight (its callback starts the next). */
  #startSync(p: OwnedPartition): void {
    if (p.syncing) return;
    let target: number;
    try {
      target = p.log.syncAsync((err) => this.#syncDone(p, err));
    } catch (err) {
      this.#failSynced(p.unsynced, asStorageError(err, 'fdatasync'));
      return;
    }
    if (target < 0) {
      // Already durable (a roll synced it): answer at once.
      p.publishCells();
      this.#completeSynced(p, p.unsynced);
      return;
    }
    const covered = p.unsynced;
    p.unsynced = p.inSync;
    p.inSync = covered;
  }

  #syncDone(p: OwnedPartition, err: SluiceError | null): void {
    if (err !== null) {
      log('error', 'fdatasync failed', { slot: p.slot, error: err.message });
      this.#failSynced(p.inSync, err);
      this.#failSynced(p.unsynced, err);
    } else {
      p.publishCells();
      this.#completeSynced(p, p.inSync);
      // The next sync starts at once only for acks=all requests waiting on it. acks=1 data
      // waits for the flush interval if one is set (or rides along with the next acks=all
      // sync, a roll or the close): a write next to an fdatasync of the same file runs at
      // half speed or less here (2.6-3.4 GB/s alone, 0.8-1.8 GB/s beside an fdatasync loop),
      // and chaining syncs for acks=1 data kept one in flight almost all the time
      // (docs/benchmarks.md, Engine section).
      if (p.unsynced.length > 0 || (p.syncDue && p.log.durableOffset < p.log.logEndOffset)) this.#startSync(p);
      p.syncDue = false;
    }
    if (!p.syncing) for (const wake of p.syncWaiters.splice(0)) wake();
  }

  #completeSynced(p: OwnedPartition, pairs: number[]): void {
    for (let k = 0; k < pairs.length; k += 2) this.#complete(pairs[k], pairs[k + 1], p);
    pairs.length = 0;
  }

  #failSynced(pairs: number[], error: SluiceError): void {
    for (let k = 0; k < pairs.length; k += 2) this.#fail(pairs[k], -1, error);
    pairs.length = 0;
  }

  /** Resolves once no fsync of the partition is in flight. */
  #syncIdle(p: OwnedPartition): Promise<void> {
    if (!p.syncing) return Promise.resolve();
    return new Promise((resolve) => p.syncWaiters.push(resolve));
  }

  /** Resolves once no seal fdatasync of a rolled segment of the partition is in flight. */
  #sealIdle(p: OwnedPartition): Promise<void> {
    return new Promise((resolve) => {
      if (!p.log.whenSealed(resolve)) resolve();
    });
  }

  /** Flushes and syncs a partition, answering everything it holds (close, shutdown). */
  async #drainPartition(p: OwnedPartition): Promise<void> {
    this.#flush(p);
    await this.#syncIdle(p);
    // Off this thread first, rolled segments' seals included, so that the synchronous sync
    // below finds nothing left to wait for and the other partitions keep being served.
    if (!p.log.failed && p.log.durableOffset < p.log.logEndOffset) {
      this.#startSync(p);
      await this.#syncIdle(p);
    }
    try {
      p.log.sync();
      p.publishCells();
      this.#completeSynced(p, p.unsynced);
    } catch (err) {
      this.#failSynced(p.unsynced, asStorageError(err, 'fdatasync'));
    }
  }

  /**
   * A write failed: the log truncated itself back to the end of the last run it wrote; the
   * ring's pending entries it no longer holds become void (published, so their room comes
   * back, never read) and their requests fail. The runs written before the failure are in
   * the file and visible: their requests (and duplicates of them) are answered as stored, as
   * a flush would, so that a producer never re-sends a batch the log keeps.
   */
  #failUnflushed(p: OwnedPartition, error: SluiceError): void {
    log('error', 'append failed', { slot: p.slot, error: error.message });
    const storedEnd = p.log.logEndOffset;
    p.ring.voidPending(storedEnd);
    p.ring.publish();
    p.nextOffset = storedEnd;
    // The failed batches were recorded as stored: forget them, so that their resends append.
    p.producers.forgetFrom(storedEnd);
    p.publishCells();
    if (storedEnd !== p.notifiedHighWatermark) {
      p.notifiedHighWatermark = storedEnd;
      this.#complete(NOTIFY_REQUEST_ID, storedEnd, p);
    }
    const u = p.unflushed;
    for (let k = 0; k < u.length; k += 3) {
      const requestId = u[k];
      const acks = u[k + 1];
      const base = u[k + 2];
      // base is the batch's own offset, or a duplicate's original's: either way stored iff below the end.
      if (base >= storedEnd) this.#fail(requestId, acks, error);
      else if (acks === -1) {
        p.unsynced.push(requestId, base);
        this.#needSync.add(p);
      } else if (acks === 1) this.#complete(requestId, base, p);
    }
    u.length = 0;
  }

  // ------------------------------------------------------------ completions

  #reserveCompletion(bytes: number): number {
    const done = this.#completions;
    let at = done.reserve(bytes);
    while (at < 0) {
      done.waitForSpace(bytes, COMPLETION_SPACE_WAIT_MS);
      at = done.reserve(bytes);
    }
    return at;
  }

  #writeHeader(at: number, requestId: number, errorNum: number, value: number, p: OwnedPartition | undefined, payloadBytes: number): void {
    const v = this.#completions.view;
    v.setUint32(at + DONE_REQUEST_ID_OFFSET, requestId, true);
    v.setUint16(at + DONE_ERROR_OFFSET, errorNum, true);
    v.setUint16(at + DONE_ERROR_OFFSET + 2, 0, true);
    v.setFloat64(at + DONE_VALUE_OFFSET, value, true);
    v.setFloat64(at + DONE_HWM_OFFSET, p ? p.log.logEndOffset : -1, true);
    v.setFloat64(at + DONE_LOG_START_OFFSET, p ? p.log.logStartOffset : -1, true);
    v.setUint32(at + DONE_PAYLOAD_LENGTH_OFFSET, payloadBytes, true);
    v.setUint32(at + DONE_SLOT_OFFSET, p ? p.slot : 0, true);
  }

  #complete(requestId: number, value: number, p: OwnedPartition | undefined): void {
    const at = this.#reserveCompletion(DONE_HEADER_BYTES);
    this.#writeHeader(at, requestId, 0, value, p, 0);
    this.#completions.commit(DONE_HEADER_BYTES);
  }

  /** Writes an error completion into a frame already reserved with room for the message. */
  #writeError(at: number, requestId: number, err: unknown): void {
    const error = err instanceof SluiceError ? err : asStorageError(err, 'owner');
    const message = textEncoder.encode(error.message).subarray(0, ERROR_MESSAGE_BYTES_MAX);
    this.#writeHeader(at, requestId, errorNumber(error.code), -1, undefined, message.length);
    this.#completions.data.set(message, at + DONE_HEADER_BYTES);
    this.#completions.commit(DONE_HEADER_BYTES + message.length);
  }

  #fail(requestId: number, acks: number, err: unknown): void {
    if (acks === 0) return; // acks=0: the producer asked for no answer, errors included
    const at = this.#reserveCompletion(DONE_HEADER_BYTES + ERROR_MESSAGE_BYTES_MAX);
    this.#writeError(at, requestId, err);
  }

  // ------------------------------------------------------------ control

  async control(req: ControlRequest): Promise<ControlReply> {
    try {
      switch (req.kind) {
        case 'open':
          return { kind: 'ok', id: req.id, report: this.#open(req) };
        case 'close':
          await this.#close(req.slot, req.deleteFiles);
          return { kind: 'ok', id: req.id };
        case 'retention':
          // Asked for explicitly: wait for fsyncs in flight rather than skip their partitions.
          for (const p of this.#partitions) {
            if (!p) continue;
            await this.#syncIdle(p);
            await this.#sealIdle(p);
          }
          this.#housekeeping(Date.now());
          return { kind: 'ok', id: req.id };
        case 'compact': {
          const p = this.#partitions[req.slot];
          if (!p) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `partition slot ${req.slot} is not open on this owner`);
          return { kind: 'ok', id: req.id, compaction: await this.#compact(p) };
        }
        case 'shutdown':
          await this.#shutdown();
          return { kind: 'ok', id: req.id };
        default:
          return unreachable(req, 'control request');
      }
    } catch (err) {
      const error: WireError = err instanceof SluiceError ? err.toWire() : asStorageError(err, req.kind).toWire();
      return { kind: 'error', id: req.id, error };
    }
  }

  #open(req: Extract<ControlRequest, { kind: 'open' }>) {
    assert(this.#partitions[req.slot] === undefined, () => `slot ${req.slot} is already open`);
    const partitionLog = PartitionLog.open({
      dir: req.dir,
      config: req.config,
      fs: nodeFileSystem,
      clock: { now: () => Date.now() },
      logger: {
        info: (o: object, msg?: string) => log('info', msg ?? 'log', { dir: req.dir, ...o }),
        warn: (o: object, msg?: string) => log('warn', msg ?? 'log', { dir: req.dir, ...o }),
      },
    });
    // A fresh ring (the gateway makes one per open): its entries start at logEndOffset.
    const ring = new LogRing(req.logRing);
    assert(ring.appendedEnd === 0 && ring.pendingStart === 0, 'a partition opens with a fresh log ring');
    const p = new OwnedPartition(req.slot, partitionLog, ring, new SeqlockCells(req.cells));
    // A roll's fdatasync that returns on an idle partition: show the durable offset now, not at the next pass.
    partitionLog.onSealDurable = () => p.publishCells();
    this.#restoreProducers(p, req.dir);
    // At each roll, the producer state as of the new segment's base: what the batches below it say.
    partitionLog.onRoll = (base) => {
      try {
        writeSnapshot(nodeFileSystem, req.dir, base, p.producers.snapshotBelow(base));
      } catch (err) {
        log('warn', 'writing a producer state snapshot failed; a restart replays more of the log', { dir: req.dir, base, err: String(err) });
      }
    };
    p.publishCells();
    this.#partitions[req.slot] = p;
    const r = partitionLog.recoveryReport;
    return {
      scanned: r.scanned,
      truncations: r.truncations.map((t) => ({ segment: t.segment, bytesTruncated: t.bytesTruncated, reason: t.reason })),
      segmentsDropped: [...r.segmentsDropped],
      indexesRebuilt: [...r.indexesRebuilt],
      producerIdMax: p.producers.producerIdMax(),
    };
  }

  /**
   * Rebuilds the partition's idempotent-producer state: the newest usable snapshot, then
   * every batch header after it. Without one (a data dir from before snapshots, or both
   * lost), the headers of the active segment and the one before it, with a warning: a
   * producer keeps at most 16 batches in flight, so its resends after a crash fall there
   * unless the segments are tiny; older duplicates are not recognised.
   */
  #restoreProducers(p: OwnedPartition, dir: string): void {
    const problems: string[] = [];
    const snapshot = loadNewestSnapshot(nodeFileSystem, dir, p.log.logEndOffset, problems);
    for (const problem of problems) log('warn', 'producer state snapshot', { dir, problem });
    let from: number;
    if (snapshot !== null) {
      p.producers.restore(snapshot.producers);
      from = snapshot.offset;
    } else {
      const bases = p.log.segmentBaseOffsets();
      from = bases[Math.max(0, bases.length - 2)];
      if (bases.length > 1) log('warn', 'no producer state snapshot: idempotence state rebuilt from the last two segments only', { dir, from });
    }
    p.log.forEachBatchHeaderFrom(from, (h) => {
      if (h.producerId >= 0 && h.baseSequence >= 0) p.producers.record(h.producerId, h.producerEpoch, h.baseSequence, h.recordCount, h.baseOffset);
    });
  }

  async #close(slot: number, deleteFiles: boolean): Promise<void> {
    const p = this.#partitions[slot];
    if (!p) return;
    // A compaction pass stops at its next slice and leaves the log as it was.
    p.closing = true;
    if (p.compaction !== null) await p.compaction.catch(() => {});
    // Every command for this partition was committed before the gateway asked to close it:
    // take them all now (and no more than those: other partitions may be busy), so none is
    // left to meet a later partition opened in the same slot.
    const mark = this.#commands.writeMark();
    while (this.#commands.isBefore(mark)) this.#pass();
    if (this.#partitions[slot] !== p) return; // closed meanwhile
    await this.#drainPartition(p);
    if (this.#partitions[slot] !== p) return; // closed meanwhile
    this.#partitions[slot] = undefined;
    this.#dirty.delete(p);
    this.#needSync.delete(p);
    if (deleteFiles) p.log.deleteAll();
    else p.log.close({ clean: true });
  }

  async #shutdown(): Promise<void> {
    // Finish everything already queued, then close every log cleanly.
    while (this.#pass());
    for (const p of this.#partitions) if (p) await this.#close(p.slot, false);
    this.#stopping = true;
    this.#commands.wake(); // the loop returns now rather than at its wake timer
  }
}

/**
 * Kafka's rule for compacted topics: every record needs a key, else the whole batch is
 * INVALID_RECORD. Walks the record varints (no allocation per record); a gzip batch is
 * inflated first (compacted topics only); a codec the broker cannot decode (snappy, lz4,
 * zstd) and control batches are not checked (compaction keeps records without a key).
 */
function checkKeys(bytes: Uint8Array, batchOff: number, header: BatchHeader): void {
  if ((header.attributes & CONTROL_BIT) !== 0) return;
  let section = bytes.subarray(batchOff + RECORDS_OFFSET, batchOff + header.sizeBytes);
  const codec = header.attributes & COMPRESSION_MASK;
  if (codec === Compression.gzip) {
    try {
      section = gunzipSync(section, { maxOutputLength: INFLATED_BATCH_BYTES_MAX });
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new SluiceError('MESSAGE_TOO_LARGE', `a gzip batch inflates to more than ${INFLATED_BATCH_BYTES_MAX} bytes, the most the broker inflates to check its keys`);
      }
      throw new SluiceError('CORRUPT_MESSAGE', `a gzip batch does not inflate: ${(err as Error).message}`);
    }
  } else if (codec !== Compression.none) return;
  const i = nullKeyRecordIndex(section, header.recordCount);
  if (i >= 0) throw new SluiceError('INVALID_RECORD', `record ${i} of the batch has no key; a compacted topic needs a key on every record`);
}

function log(level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown>): void {
  const reply: ControlReply = { kind: 'log', level, msg, fields };
  parentPort?.postMessage(reply);
}

function main(): void {
  assert(parentPort !== null, 'owner-main runs in a worker thread');
  const port = parentPort;
  const owner = new Owner(workerData as OwnerInit);
  port.on('message', (req: ControlRequest) => {
    void owner.control(req).then((reply) => {
      port.postMessage(reply);
      if (req.kind === 'shutdown') port.close();
    });
  });
  owner.run().catch((err: unknown) => {
    // An owner that cannot go on dies; the gateway restarts it and recovery runs.
    log('error', 'owner loop failed', { error: err instanceof Error ? err.stack : String(err) });
    process.exit(1);
  });
}

main();
