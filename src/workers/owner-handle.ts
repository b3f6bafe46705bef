/**
 * The gateway-side handle of one owner thread: the writer end of its command ring, the
 * reader end of its completion ring, the requests in flight, the reader side of its
 * partitions' log rings and state cells, and the owner's life cycle.
 *
 * If the owner thread dies, every request in flight fails at once with OWNER_UNAVAILABLE
 * (retriable: never a hang), fresh rings are made, a new thread starts and reopens every
 * partition it owned, which runs recovery from disk. Requests made while it restarts fail
 * with OWNER_UNAVAILABLE too.
 *
 * Produce: a batch that fits the partition's log ring is copied once, straight into it
 * (this thread is the log ring's data writer, see ring/log-ring.ts), and the owner gets only
 * a small produceInRing command saying where it lies (workers/commands.ts); a larger batch
 * travels inside the command frame (produceInline), and so does one that finds the log ring
 * full of batches not yet written out (the command ring is bounded too: past it, THROTTLED).
 * With `crcOnGateway` this thread also verifies the CRC-32C of the bytes it just copied into
 * the log ring, so the owner need not read them twice.
 *
 * Owner: the gateway (main) thread. Invariants: requestIds are unique among requests in
 * flight; a request is settled exactly once; neither the command ring nor a log ring is
 * ever waited on (nothing is queued beyond them: THROTTLED); every log ring entry this thread
 * commits is announced to the owner by exactly one produceInRing command, in commit order
 * (a reservation that is not announced, e.g. after a bad CRC, is never committed).
 */
import { Worker } from 'node:worker_threads';
import { assert } from '../assert.js';
import { SluiceError, errorCodeOf, type WireError } from '../errors.js';
import type { CompactionResult } from '../persist/compaction.js';
import type { LogConfig } from '../persist/partition-log.js';
import { checkBatchCrcAt } from '../persist/record-batch.js';
import { COPY_ALIGN_BYTES, LogRing } from '../ring/log-ring.js';
import { copyBytes, MEMCPY_MIN_BYTES } from '../ring/shared-copy.js';
import { SeqlockCells } from '../ring/seqlock-cells.js';
import { SpscRing } from '../ring/spsc-ring.js';
import {
  CELL_COUNT,
  CMD_ACKS_OFFSET,
  CMD_ARGUMENT_OFFSET,
  CMD_BATCH_OFFSET,
  CMD_FLAG_CRC_CHECKED,
  CMD_FLAGS_OFFSET,
  CMD_HEADER_BYTES,
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
  type RecoveryReportSummary,
} from './commands.js';

export interface OwnerLimits {
  commandRingBytes: number;
  completionRingBytes: number;
  /** Entries per log ring (each partition's ring size is chosen by the engine when it opens). */
  logRingEntries: number;
  fetchBytesMax: number;
  inFlightMax: number;
  throttleBackoffMs: number;
  housekeepingIntervalMs: number;
  flushIntervalMs: number;
  /** Verify each batch's CRC-32C on the gateway thread, in the log ring, instead of on the owner. */
  crcOnGateway: boolean;
}

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface PartitionState {
  logStartOffset: number;
  logEndOffset: number;
  highWatermark: number;
  durableOffset: number;
  sizeBytes: number;
  segmentCount: number;
}

export interface RawFetch {
  records: Uint8Array;
  highWatermark: number;
  logStartOffset: number;
}

/** How often the completion pump's watchdog looks for completions a lost notify left waiting, and for the pump's end. */
const PUMP_WATCHDOG_MS = 250;
/** Restart back-off after an owner died: doubles per quick death, up to the cap. */
const RESTART_DELAY_MS_MIN = 20;
const RESTART_DELAY_MS_MAX = 2000;
/** Attempts of a partition close across owner restarts (each waits for the restart to finish). */
const CLOSE_ATTEMPTS_MAX = 3;
/** How long a partition close waits for an owner restart in all. */
const CLOSE_RESTART_WAIT_MS = 10_000;
/** An owner that lived this long is healthy again: its restart back-off resets. */
const HEALTHY_LIFETIME_MS = 10_000;

type Settle = {
  kind: 'produce' | 'fetch' | 'time';
  resolve: (v: any) => void;
  reject: (e: SluiceError) => void;
  /** fetch: the caller's buffer for the records, used when they fit. */
  into?: Uint8Array;
};

interface Slot {
  dir: string;
  config: LogConfig;
  /** This thread is its data writer and its reader. */
  logRing: LogRing;
  /** A DataView over logRing.data (same offsets), for the CRC field. */
  logRingView: DataView;
  cells: SeqlockCells;
}

function logRingView(ring: LogRing): DataView {
  return new DataView(ring.data.buffer, ring.data.byteOffset, ring.data.byteLength);
}

const textDecoder = new TextDecoder();

export class OwnerHandle {
  readonly index: number;
  readonly #limits: OwnerLimits;
  readonly #logger: Logger;
  readonly #workerUrl: URL;
  #worker!: Worker;
  #commands!: SpscRing;
  #completions!: SpscRing;
  #generation = 0;
  /** 'closing': shutdown() has asked the thread to end, so its exit is expected. */
  #state: 'starting' | 'running' | 'restarting' | 'closing' | 'closed' = 'starting';
  /** Log rings of closed partitions, by data size, kept for the next partitions opened (see LogRing.reset). */
  readonly #spareRings = new Map<number, SharedArrayBuffer[]>();
  #startedAtMs = 0;
  #restartDelayMs = RESTART_DELAY_MS_MIN;
  #ready!: Promise<void>;
  readonly #pending = new Map<number, Settle>();
  #nextRequestId = 1;
  readonly #control = new Map<number, { resolve: (r: ControlReply) => void; reject: (e: SluiceError) => void }>();
  #nextControlId = 1;
  readonly #slots: (Slot | undefined)[] = [];
  readonly #cellScratch = new Float64Array(CELL_COUNT);
  /** Realigns batches on their way into a log ring (see #copyIntoRing); allocated once. */
  readonly #staging: Uint8Array;
  /** Restarts so far, for metrics and tests. */
  restarts = 0;
  /** Called when a partition's high watermark moved (the engine wakes long polls and subscribers). */
  onAdvance: ((slot: number, highWatermark: number) => void) | null = null;

  constructor(index: number, limits: OwnerLimits, logger: Logger, workerUrl: URL) {
    this.index = index;
    this.#limits = limits;
    this.#logger = logger;
    this.#workerUrl = workerUrl;
    this.#staging = new Uint8Array(MEMCPY_MIN_BYTES + COPY_ALIGN_BYTES); // only batches under MEMCPY_MIN_BYTES go through it
    this.#spawn();
  }

  get state(): string {
    return this.#state;
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  /** Resolves once the owner thread is up (after a restart: once every partition reopened). */
  ready(): Promise<void> {
    return this.#ready;
  }

  // ------------------------------------------------------------ life cycle

  #spawn(): void {
    const gen = ++this.#generation;
    this.#commands = SpscRing.create(this.#limits.commandRingBytes);
    this.#completions = SpscRing.create(this.#limits.completionRingBytes);
    const init: OwnerInit = {
      ownerIndex: this.index,
      commandRing: this.#commands.sab,
      completionRing: this.#completions.sab,
      housekeepingIntervalMs: this.#limits.housekeepingIntervalMs,
      flushIntervalMs: this.#limits.flushIntervalMs,
      fetchBytesMax: this.#limits.fetchBytesMax,
    };
    const worker = new Worker(this.#workerUrl, { workerData: init, name: `sluice-owner-${this.index}` });
    this.#worker = worker;
    this.#startedAtMs = Date.now();
    worker.on('message', (msg: ControlReply) => this.#onControlReply(msg));
    worker.on('error', (err) => this.#logger.error({ owner: this.index, err: err.stack ?? String(err) }, 'owner thread error'));
    worker.on('exit', (code) => this.#onExit(gen, code));
    void this.#pump(gen);
  }

  #onExit(gen: number, code: number): void {
    if (gen !== this.#generation) return;
    // Answers the owner wrote before it died are still in the completion ring: deliver them
    // first, so a request that was stored (and synced, for acks=all) is not failed and then
    // stored again by the client's retry.
    this.#drainCompletions(this.#completions);
    const failure = new SluiceError('OWNER_UNAVAILABLE', `owner ${this.index} exited (code ${code}); retry`);
    this.#failAll(failure);
    // A shutdown's own end is no death. Its answer and the exit can reach this thread in one
    // turn (Node drains the port right before it emits 'exit'), ahead of the code awaiting
    // that answer: shutdown() sets 'closing' before it asks.
    if (this.#state === 'closed' || this.#state === 'closing') return;
    this.#logger.error({ owner: this.index, code }, 'owner thread died; restarting and recovering its partitions');
    this.#state = 'restarting';
    this.restarts++;
    if (Date.now() - this.#startedAtMs > HEALTHY_LIFETIME_MS) this.#restartDelayMs = RESTART_DELAY_MS_MIN;
    const delay = this.#restartDelayMs;
    this.#restartDelayMs = Math.min(RESTART_DELAY_MS_MAX, delay * 2);
    this.#ready = new Promise<void>((resolve) => {
      setTimeout(() => {
        if (this.#state === 'closed') return resolve();
        this.#spawn();
        const generation = this.#generation;
        const reopened = new Set<number>();
        // A partition that fails to reopen (not a death: that starts the next restart) is
        // retried with back-off until it opens, so the owner comes back once the cause is
        // fixed; meanwhile its requests get OWNER_UNAVAILABLE (retriable), never a hang.
        const attempt = (retryMs: number): void => {
          this.#reopenAll(reopened).then(
            () => {
              if (this.#state !== 'closed') this.#state = 'running';
              this.#logger.info({ owner: this.index }, 'owner restarted');
              resolve();
            },
            (err: unknown) => {
              if (generation !== this.#generation || this.#state === 'closed') return resolve(); // died again, or closed
              this.#logger.error({ owner: this.index, err: String(err), retryMs }, 'owner failed to reopen its partitions; retrying');
              setTimeout(() => attempt(Math.min(RESTART_DELAY_MS_MAX, retryMs * 2)), retryMs);
            },
          );
        };
        attempt(RESTART_DELAY_MS_MIN);
      }, delay);
    });
  }

  /** Reopens every partition this handle holds that is not in `reopened` yet, adding each to it. */
  async #reopenAll(reopened: Set<number>): Promise<void> {
    for (let slot = 0; slot < this.#slots.length; slot++) {
      const s = this.#slots[slot];
      if (!s || reopened.has(slot)) continue;
      // Fresh shared memory: the dead thread's rings may hold half-written entries, and the
      // entries this thread committed but the dead owner never appended are lost with it.
      s.logRing = LogRing.create({ dataBytes: s.logRing.dataBytes, entriesMax: this.#limits.logRingEntries });
      s.logRingView = logRingView(s.logRing);
      s.cells = SeqlockCells.create(CELL_COUNT);
      await this.#request({ kind: 'open', id: 0, slot, dir: s.dir, config: s.config, logRing: s.logRing.sab, cells: s.cells.sab });
      reopened.add(slot);
    }
  }

  #failAll(error: SluiceError): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(error);
    const control = [...this.#control.values()];
    this.#control.clear();
    for (const c of control) c.reject(error);
  }

  /** Starts the first thread; resolves when it can take requests. */
  start(): Promise<void> {
    this.#state = 'running';
    this.#ready = Promise.resolve();
    return this.#ready;
  }

  async shutdown(): Promise<void> {
    if (this.#state === 'closed') return;
    await this.#ready;
    const running = this.#state === 'running';
    this.#state = 'closing';
    try {
      if (running) await this.#request({ kind: 'shutdown', id: 0 });
    } finally {
      this.#state = 'closed';
      this.#generation++;
      this.#failAll(new SluiceError('ENGINE_CLOSED', 'the engine is closed'));
      await this.#worker.terminate();
    }
  }

  /** Ends the owner thread abruptly, as a crash would (tests and chaos drills). */
  async kill(): Promise<void> {
    // Our own 'exit' listener was added first, so when this one runs the restart is scheduled.
    const exited = new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
    await this.#worker.terminate();
    await exited;
  }

  /** State for metrics: whether the thread serves, requests in flight, command ring fill, the log rings' bytes. */
  stats(): { up: boolean; restarts: number; inFlight: number; commandRingUsedBytes: number; commandRingBytes: number; logRingBytes: number; spareLogRingBytes: number } {
    const ring = this.#commands;
    let logRingBytes = 0;
    for (const s of this.#slots) if (s) logRingBytes += s.logRing.dataBytes;
    let spareLogRingBytes = 0;
    for (const [bytes, spares] of this.#spareRings) spareLogRingBytes += bytes * spares.length;
    return {
      spareLogRingBytes,
      up: this.#state === 'running',
      restarts: this.restarts,
      inFlight: this.#pending.size,
      commandRingUsedBytes: ring.capacityBytes - ring.freeBytes(),
      commandRingBytes: ring.capacityBytes,
      logRingBytes,
    };
  }

  // ------------------------------------------------------------ control

  #onControlReply(msg: ControlReply): void {
    if (msg.kind === 'log') {
      const fields = { owner: this.index, ...msg.fields };
      this.#logger[msg.level](fields, msg.msg);
      return;
    }
    const waiter = this.#control.get(msg.id);
    if (!waiter) return;
    this.#control.delete(msg.id);
    if (msg.kind === 'error') waiter.reject(SluiceError.fromWire(msg.error));
    else waiter.resolve(msg);
  }

  #request(req: ControlRequest): Promise<ControlReply> {
    const id = this.#nextControlId++;
    return new Promise((resolve, reject) => {
      this.#control.set(id, { resolve, reject });
      this.#worker.postMessage({ ...req, id });
    });
  }

  #available(): void {
    if (this.#state === 'closed' || this.#state === 'closing') throw new SluiceError('ENGINE_CLOSED', 'the engine is closed');
    if (this.#state !== 'running') {
      throw new SluiceError('OWNER_UNAVAILABLE', `owner ${this.index} is restarting; retry`, { backoffMs: this.#restartDelayMs });
    }
  }

  /** Opens a partition in `slot`, its log ring `logRingBytes` large (a power of two). */
  async openPartition(slot: number, dir: string, config: LogConfig, logRingBytes: number): Promise<RecoveryReportSummary> {
    this.#available();
    const logRing = this.#logRing(logRingBytes);
    const cells = SeqlockCells.create(CELL_COUNT);
    const reply = await this.#request({ kind: 'open', id: 0, slot, dir, config, logRing: logRing.sab, cells: cells.sab });
    this.#slots[slot] = { dir, config, logRing, logRingView: logRingView(logRing), cells };
    return reply.kind === 'ok' && reply.report ? reply.report : { scanned: false, truncations: [], segmentsDropped: [], indexesRebuilt: [], producerIdMax: -1 };
  }

  /**
   * Closes (and with `deleteFiles` deletes) a partition. Waits out an owner restart and
   * retries after one that interrupted it (at most CLOSE_ATTEMPTS_MAX attempts): a restart
   * reopens every partition this handle holds, so a close that failed because the owner
   * died would otherwise leave the partition open in the new thread, its files held open
   * after its topic was deleted.
   */
  async closePartition(slot: number, deleteFiles: boolean): Promise<void> {
    const deadline = Date.now() + CLOSE_RESTART_WAIT_MS;
    for (let attempt = 1; ; attempt++) {
      while (this.#state === 'restarting' && Date.now() < deadline) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([this.#ready, new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))))]);
        clearTimeout(timer);
      }
      try {
        this.#available();
        await this.#request({ kind: 'close', id: 0, slot, deleteFiles });
        break;
      } catch (err) {
        const unavailable = err instanceof SluiceError && err.code === 'OWNER_UNAVAILABLE';
        if (unavailable && attempt < CLOSE_ATTEMPTS_MAX && Date.now() < deadline) continue;
        // Give the partition up all the same (a restart would reopen it under a deleted topic); its files stay.
        if (unavailable) {
          this.#logger.error({ owner: this.index, slot, dir: this.#slots[slot]?.dir }, 'a partition could not be closed while its owner restarted; its files are left on disk');
          this.#slots[slot] = undefined;
        }
        throw err;
      }
    }
    // The owner thread has let the ring go: it serves the next partition opened with its size.
    const ring = this.#slots[slot]?.logRing;
    if (ring) {
      const spares = this.#spareRings.get(ring.dataBytes) ?? [];
      spares.push(ring.sab);
      this.#spareRings.set(ring.dataBytes, spares);
    }
    this.#slots[slot] = undefined;
  }

  /** A log ring of `dataBytes`: a spare one (a closed partition's, reset) when there is one, else a new one. */
  #logRing(dataBytes: number): LogRing {
    const sab = this.#spareRings.get(dataBytes)?.pop();
    if (sab === undefined) return LogRing.create({ dataBytes, entriesMax: this.#limits.logRingEntries });
    LogRing.reset(sab);
    return new LogRing(sab);
  }

  async runHousekeeping(): Promise<void> {
    this.#available();
    await this.#request({ kind: 'retention', id: 0 });
  }

  /** Runs a compaction pass of the partition in `slot` (see Engine.compact). */
  async compactPartition(slot: number): Promise<CompactionResult> {
    this.#available();
    if (!this.#slots[slot]) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `slot ${slot} is not open`);
    const reply = await this.#request({ kind: 'compact', id: 0, slot });
    assert(reply.kind === 'ok' && reply.compaction !== undefined, 'a compact request is answered with its result');
    return reply.compaction;
  }

  // ------------------------------------------------------------ state

  partitionState(slot: number): PartitionState {
    const s = this.#slots[slot];
    if (!s) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `slot ${slot} is not open`);
    const c = this.#cellScratch;
    s.cells.read(c);
    return {
      logStartOffset: c[Cell.logStartOffset],
      logEndOffset: c[Cell.logEndOffset],
      highWatermark: c[Cell.highWatermark],
      durableOffset: c[Cell.durableOffset],
      sizeBytes: c[Cell.sizeBytes],
      segmentCount: c[Cell.segmentCount],
    };
  }

  /**
   * Reads whole batches from the partition's log ring, or null when the owner must read.
   * With `into` (at least maxBytes + COPY_ALIGN_BYTES), the batches are copied there when they fit.
   */
  readTail(slot: number, offset: number, maxBytes: number, into?: Uint8Array): { bytes: Uint8Array; firstKey: number; nextKey: number } | null {
    const s = this.#slots[slot];
    if (!s || this.#state !== 'running') return null;
    return s.logRing.read(offset, maxBytes, into);
  }

  // ------------------------------------------------------------ data path

  #settle(kind: Settle['kind'], into?: Uint8Array): { requestId: number; promise: Promise<any> } {
    const requestId = this.#nextRequestId;
    this.#nextRequestId = this.#nextRequestId >= 0xffff_fffe ? 1 : this.#nextRequestId + 1;
    const promise = new Promise<any>((resolve, reject) => {
      this.#pending.set(requestId, { kind, resolve, reject, into });
    });
    return { requestId, promise };
  }

  #throttled(why: string): SluiceError {
    return new SluiceError('THROTTLED', `owner ${this.index}: ${why}; retry after ${this.#limits.throttleBackoffMs} ms`, {
      backoffMs: this.#limits.throttleBackoffMs,
    });
  }

  /**
   * Queues one batch for the partition in `slot`. Resolves to the base offset (acks 1/all)
   * or -1 at once (acks 0). Throws THROTTLED synchronously when the command ring, the log
   * ring or the in-flight window is full: nothing is buffered beyond them. With crcOnGateway,
   * throws CORRUPT_MESSAGE synchronously for a bad CRC (acks 0: resolves -1, nothing stored).
   */
  produce(slot: number, batch: Uint8Array, acks: 0 | 1 | -1): Promise<number> {
    this.#available();
    const s = this.#slots[slot];
    if (!s) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `slot ${slot} is not open`);
    if (this.#pending.size >= this.#limits.inFlightMax) throw this.#throttled('too many requests in flight');
    const logRing = s.logRing;
    if (batch.length > logRing.entryBytesMax) return this.#produceInline(slot, batch, acks);
    const ring = this.#commands;
    const at = ring.reserve(CMD_HEADER_BYTES);
    if (at < 0) throw this.#throttled('command ring full');
    // Back to back with the previous batch (no alignment pad), so that the owner writes a
    // run of them with one write call.
    const dataAt = logRing.reserve(batch.length);
    // The log ring is full of batches the owner has not written out yet (many in flight for
    // this partition): this one goes inside the command, which is bounded too (THROTTLED
    // when full). It leaves a key gap in the log ring, which tail reads stop at.
    if (dataAt < 0) return this.#produceInline(slot, batch, acks);
    this.#copyIntoRing(logRing.data, dataAt, batch);
    let flags = 0;
    if (this.#limits.crcOnGateway) {
      try {
        // The bytes in the ring, not the caller's: these are the ones the owner writes.
        checkBatchCrcAt(logRing.data, s.logRingView, dataAt, batch.length);
      } catch (err) {
        // Not committed: the reservation is forgotten and the owner never hears of it.
        if (acks === 0) return Promise.resolve(-1);
        throw err;
      }
      flags = CMD_FLAG_CRC_CHECKED;
    }
    const v = ring.view;
    v.setUint8(at + CMD_KIND_OFFSET, CommandKind.produceInRing);
    v.setInt8(at + CMD_ACKS_OFFSET, acks);
    v.setUint8(at + CMD_FLAGS_OFFSET, flags);
    v.setUint8(at + CMD_FLAGS_OFFSET + 1, 0);
    v.setUint32(at + CMD_SLOT_OFFSET, slot, true);
    v.setUint32(at + CMD_LENGTH_OFFSET, batch.length, true);
    v.setInt32(at + CMD_RING_POSITION_OFFSET, logRing.reservedPosition, true);
    v.setUint32(at + CMD_RING_ENTRY_OFFSET, logRing.reservedEntry >>> 0, true);
    logRing.commit(); // the command ring's commit below hands the entry over
    return this.#commitProduce(at, acks);
  }

  /**
   * Copies `batch` to `target[at..]` (shared memory) with copyBytes: memcpy from
   * MEMCPY_MIN_BYTES on, V8's `set` below, which copies into shared memory word by word only
   * between addresses equal mod 8, byte by byte otherwise; so a small batch whose alignment
   * differs from its place in the ring goes through the staging buffer, placed at the ring's
   * alignment: an ordinary memmove there, then an aligned copy.
   */
  #copyIntoRing(target: Uint8Array, at: number, batch: Uint8Array): void {
    const align = at & (COPY_ALIGN_BYTES - 1);
    if (batch.length >= MEMCPY_MIN_BYTES || ((batch.byteOffset - align) & (COPY_ALIGN_BYTES - 1)) === 0) {
      copyBytes(target, at, batch);
      return;
    }
    const staged = this.#staging.subarray(align, align + batch.length);
    staged.set(batch);
    target.set(staged, at);
  }

  /** A batch too large for the log ring: it travels inside the command frame. */
  #produceInline(slot: number, batch: Uint8Array, acks: 0 | 1 | -1): Promise<number> {
    const ring = this.#commands;
    const at = ring.reserve(CMD_BATCH_OFFSET + batch.length);
    if (at < 0) throw this.#throttled('command ring full');
    const v = ring.view;
    v.setUint8(at + CMD_KIND_OFFSET, CommandKind.produceInline);
    v.setInt8(at + CMD_ACKS_OFFSET, acks);
    v.setUint16(at + CMD_FLAGS_OFFSET, 0, true);
    v.setUint32(at + CMD_SLOT_OFFSET, slot, true);
    v.setUint32(at + CMD_LENGTH_OFFSET, batch.length, true);
    v.setFloat64(at + CMD_ARGUMENT_OFFSET, 0, true);
    copyBytes(ring.data, at + CMD_BATCH_OFFSET, batch);
    return this.#commitProduce(at, acks);
  }

  /** Sets the requestId of the produce command reserved at `at` and commits it. */
  #commitProduce(at: number, acks: 0 | 1 | -1): Promise<number> {
    const ring = this.#commands;
    if (acks === 0) {
      ring.view.setUint32(at + CMD_REQUEST_ID_OFFSET, 0, true);
      ring.commit();
      return Promise.resolve(-1);
    }
    const { requestId, promise } = this.#settle('produce');
    ring.view.setUint32(at + CMD_REQUEST_ID_OFFSET, requestId, true);
    ring.commit();
    return promise;
  }

  /** Reads from disk through the owner; the records land in `into` when they fit, else in a new buffer. */
  fetch(slot: number, offset: number, maxBytes: number, into?: Uint8Array): Promise<RawFetch> {
    return this.#simple(CommandKind.fetch, 'fetch', slot, offset, Math.min(maxBytes, this.#limits.fetchBytesMax), into);
  }

  offsetForTime(slot: number, timestamp: number): Promise<number> {
    return this.#simple(CommandKind.offsetForTime, 'time', slot, timestamp, 0);
  }

  #simple(kind: number, settle: Settle['kind'], slot: number, argument: number, length: number, into?: Uint8Array): Promise<any> {
    this.#available();
    if (this.#pending.size >= this.#limits.inFlightMax) throw this.#throttled('too many requests in flight');
    const ring = this.#commands;
    const at = ring.reserve(CMD_HEADER_BYTES);
    if (at < 0) throw this.#throttled('command ring full');
    const { requestId, promise } = this.#settle(settle, into);
    const v = ring.view;
    v.setUint8(at + CMD_KIND_OFFSET, kind);
    v.setInt8(at + CMD_ACKS_OFFSET, 1);
    v.setUint16(at + CMD_FLAGS_OFFSET, 0, true);
    v.setUint32(at + CMD_REQUEST_ID_OFFSET, requestId, true);
    v.setUint32(at + CMD_SLOT_OFFSET, slot, true);
    v.setUint32(at + CMD_LENGTH_OFFSET, length, true);
    v.setFloat64(at + CMD_ARGUMENT_OFFSET, argument, true);
    ring.commit();
    return promise;
  }

  // ------------------------------------------------------------ completions

  async #pump(gen: number): Promise<void> {
    const ring = this.#completions;
    // The wait has no timeout (a timed waitAsync costs CPU per wake-up, and the pump wakes
    // about once per batch): this watchdog bounds it instead, waking the pump should a
    // notify ever be lost and once its generation has ended, so that it returns. The
    // owner's Worker handle keeps this thread's loop alive; the watchdog does not.
    const watchdog = setInterval(() => {
      if (gen !== this.#generation || !ring.isEmpty()) ring.wake();
    }, PUMP_WATCHDOG_MS).unref();
    try {
      while (gen === this.#generation) {
        this.#drainCompletions(ring);
        await ring.waitAsyncUntilWoken();
      }
    } finally {
      clearInterval(watchdog);
    }
  }

  #drainCompletions(ring: SpscRing): void {
    const v = ring.view;
    for (;;) {
      const at = ring.peek();
      if (at < 0) return;
      const requestId = v.getUint32(at + DONE_REQUEST_ID_OFFSET, true);
      if (requestId === NOTIFY_REQUEST_ID) {
        const slot = v.getUint32(at + DONE_SLOT_OFFSET, true);
        const hwm = v.getFloat64(at + DONE_VALUE_OFFSET, true);
        ring.release();
        this.onAdvance?.(slot, hwm);
        continue;
      }
      const errorNum = v.getUint16(at + DONE_ERROR_OFFSET, true);
      const value = v.getFloat64(at + DONE_VALUE_OFFSET, true);
      const payloadBytes = v.getUint32(at + DONE_PAYLOAD_LENGTH_OFFSET, true);
      const settle = this.#pending.get(requestId);
      if (settle) {
        this.#pending.delete(requestId);
        const payload = ring.data.subarray(at + DONE_HEADER_BYTES, at + DONE_HEADER_BYTES + payloadBytes);
        if (errorNum !== 0) {
          const wire: WireError = { code: errorCodeOf(errorNum), message: textDecoder.decode(payload), retriable: false };
          settle.reject(SluiceError.fromWire(wire));
        } else if (settle.kind === 'fetch') {
          // The one copy out of shared memory: the frame is reused once released. A new
          // buffer of a MiB costs about 0.4 ms here (fresh pages from the kernel, faulted in
          // one by one) against 0.06 ms for the copy: callers that can, lend one (`into`).
          const into = settle.into;
          const records = into !== undefined && into.length >= payloadBytes ? into.subarray(0, payloadBytes) : Buffer.allocUnsafeSlow(payloadBytes);
          copyBytes(records, 0, payload);
          settle.resolve({
            records,
            highWatermark: v.getFloat64(at + DONE_HWM_OFFSET, true),
            logStartOffset: v.getFloat64(at + DONE_LOG_START_OFFSET, true),
          } satisfies RawFetch);
        } else {
          settle.resolve(value);
        }
      }
      ring.release();
    }
  }
}
