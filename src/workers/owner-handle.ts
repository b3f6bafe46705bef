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
 * Owner: the gateway (main) thread. Invariants: requestIds are unique among requests in
 * flight; a request is settled exactly once; the command ring is never waited on (a full
 * ring is THROTTLED, not a queue).
 */
import { Worker } from 'node:worker_threads';
import { assert } from '../assert.js';
import { SluiceError, errorCodeOf, type WireError } from '../errors.js';
import type { CompactionResult } from '../persist/compaction.js';
import type { LogConfig } from '../persist/partition-log.js';
import { LogRing } from '../ring/log-ring.js';
import { SeqlockCells } from '../ring/seqlock-cells.js';
import { SpscRing } from '../ring/spsc-ring.js';
import {
  CELL_COUNT,
  CMD_ACKS_OFFSET,
  CMD_ARGUMENT_OFFSET,
  CMD_BATCH_PAD_OFFSET,
  COPY_ALIGN_BYTES,
  CMD_HEADER_BYTES,
  CMD_KIND_OFFSET,
  CMD_LENGTH_OFFSET,
  CMD_REQUEST_ID_OFFSET,
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
  logRingBytes: number;
  logRingEntries: number;
  fetchBytesMax: number;
  inFlightMax: number;
  throttleBackoffMs: number;
  housekeepingIntervalMs: number;
  flushIntervalMs: number;
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

/** Longest the completion pump sleeps before re-checking; it is woken on new completions. */
const PUMP_WAIT_MS = 250;
/** Restart back-off after an owner died: doubles per quick death, up to the cap. */
const RESTART_DELAY_MS_MIN = 20;
const RESTART_DELAY_MS_MAX = 2000;
/** An owner that lived this long is healthy again: its restart back-off resets. */
const HEALTHY_LIFETIME_MS = 10_000;

type Settle = {
  kind: 'produce' | 'fetch' | 'time';
  resolve: (v: any) => void;
  reject: (e: SluiceError) => void;
  /** produce: the partition slot and the batch length, to undo the alignment hint on rejection. */
  slot: number;
  length: number;
};

interface Slot {
  dir: string;
  config: LogConfig;
  logRing: LogRing;
  cells: SeqlockCells;
  /** Where (mod 8) the next batch will land in the log ring, predicted from the lengths sent. */
  alignHint: number;
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
  #state: 'starting' | 'running' | 'restarting' | 'closed' = 'starting';
  #startedAtMs = 0;
  #restartDelayMs = RESTART_DELAY_MS_MIN;
  #ready!: Promise<void>;
  readonly #pending = new Map<number, Settle>();
  #nextRequestId = 1;
  readonly #control = new Map<number, { resolve: (r: ControlReply) => void; reject: (e: SluiceError) => void }>();
  #nextControlId = 1;
  readonly #slots: (Slot | undefined)[] = [];
  readonly #cellScratch = new Float64Array(CELL_COUNT);
  /** Restarts so far, for metrics and tests. */
  restarts = 0;
  /** Called when a partition's high watermark moved (the engine wakes long polls and subscribers). */
  onAdvance: ((slot: number, highWatermark: number) => void) | null = null;

  constructor(index: number, limits: OwnerLimits, logger: Logger, workerUrl: URL) {
    this.index = index;
    this.#limits = limits;
    this.#logger = logger;
    this.#workerUrl = workerUrl;
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
    const failure = new SluiceError('OWNER_UNAVAILABLE', `owner ${this.index} exited (code ${code}); retry`);
    this.#failAll(failure);
    if (this.#state === 'closed') return;
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
        this.#reopenAll().then(
          () => {
            if (this.#state !== 'closed') this.#state = 'running';
            this.#logger.info({ owner: this.index }, 'owner restarted');
            resolve();
          },
          (err: unknown) => {
            this.#logger.error({ owner: this.index, err: String(err) }, 'owner failed to reopen its partitions');
            resolve();
          },
        );
      }, delay);
    });
  }

  async #reopenAll(): Promise<void> {
    for (let slot = 0; slot < this.#slots.length; slot++) {
      const s = this.#slots[slot];
      if (!s) continue;
      // Fresh shared memory: the dead thread's rings may hold a half-written entry.
      s.logRing = LogRing.create({ dataBytes: this.#limits.logRingBytes, entriesMax: this.#limits.logRingEntries });
      s.cells = SeqlockCells.create(CELL_COUNT);
      s.alignHint = 0;
      await this.#request({ kind: 'open', id: 0, slot, dir: s.dir, config: s.config, logRing: s.logRing.sab, cells: s.cells.sab });
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
    try {
      if (this.#state === 'running') await this.#request({ kind: 'shutdown', id: 0 });
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

  /** State for metrics: whether the thread serves, requests in flight, command ring fill. */
  stats(): { up: boolean; restarts: number; inFlight: number; commandRingUsedBytes: number; commandRingBytes: number } {
    const ring = this.#commands;
    return {
      up: this.#state === 'running',
      restarts: this.restarts,
      inFlight: this.#pending.size,
      commandRingUsedBytes: ring.capacityBytes - ring.freeBytes(),
      commandRingBytes: ring.capacityBytes,
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
    if (this.#state === 'closed') throw new SluiceError('ENGINE_CLOSED', 'the engine is closed');
    if (this.#state !== 'running') {
      throw new SluiceError('OWNER_UNAVAILABLE', `owner ${this.index} is restarting; retry`, { backoffMs: this.#restartDelayMs });
    }
  }

  async openPartition(slot: number, dir: string, config: LogConfig): Promise<RecoveryReportSummary> {
    this.#available();
    const logRing = LogRing.create({ dataBytes: this.#limits.logRingBytes, entriesMax: this.#limits.logRingEntries });
    const cells = SeqlockCells.create(CELL_COUNT);
    const reply = await this.#request({ kind: 'open', id: 0, slot, dir, config, logRing: logRing.sab, cells: cells.sab });
    this.#slots[slot] = { dir, config, logRing, cells, alignHint: 0 };
    return reply.kind === 'ok' && reply.report ? reply.report : { scanned: false, truncations: [], indexesRebuilt: [] };
  }

  async closePartition(slot: number, deleteFiles: boolean): Promise<void> {
    this.#available();
    await this.#request({ kind: 'close', id: 0, slot, deleteFiles });
    this.#slots[slot] = undefined;
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

  /** Reads whole batches from the partition's log ring, or null when the owner must read. */
  readTail(slot: number, offset: number, maxBytes: number): { bytes: Uint8Array; firstKey: number; nextKey: number } | null {
    const s = this.#slots[slot];
    if (!s || this.#state !== 'running') return null;
    return s.logRing.read(offset, maxBytes);
  }

  // ------------------------------------------------------------ data path

  #settle(kind: Settle['kind'], slot = -1, length = 0): { requestId: number; promise: Promise<any> } {
    const requestId = this.#nextRequestId;
    this.#nextRequestId = this.#nextRequestId >= 0xffff_fffe ? 1 : this.#nextRequestId + 1;
    const promise = new Promise<any>((resolve, reject) => {
      this.#pending.set(requestId, { kind, resolve, reject, slot, length });
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
   * or -1 at once (acks 0). Throws THROTTLED synchronously when the ring or the in-flight
   * window is full: nothing is buffered beyond them.
   */
  produce(slot: number, batch: Uint8Array, acks: 0 | 1 | -1): Promise<number> {
    this.#available();
    const s = this.#slots[slot];
    if (!s) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `slot ${slot} is not open`);
    if (this.#pending.size >= this.#limits.inFlightMax) throw this.#throttled('too many requests in flight');
    const ring = this.#commands;
    const pad = s.alignHint;
    const at = ring.reserve(CMD_HEADER_BYTES + pad + batch.length);
    if (at < 0) throw this.#throttled('command ring full');
    const v = ring.view;
    v.setUint8(at + CMD_KIND_OFFSET, CommandKind.produce);
    v.setInt8(at + CMD_ACKS_OFFSET, acks);
    v.setUint8(at + CMD_BATCH_PAD_OFFSET, pad);
    v.setUint8(at + CMD_BATCH_PAD_OFFSET + 1, 0);
    v.setUint32(at + CMD_SLOT_OFFSET, slot, true);
    v.setUint32(at + CMD_LENGTH_OFFSET, batch.length, true);
    v.setFloat64(at + CMD_ARGUMENT_OFFSET, 0, true);
    ring.data.set(batch, at + CMD_HEADER_BYTES + pad);
    // Batches too large for the log ring bypass it and do not move its head.
    if (batch.length <= s.logRing.entryBytesMax) s.alignHint = (pad + batch.length) & (COPY_ALIGN_BYTES - 1);
    if (acks === 0) {
      v.setUint32(at + CMD_REQUEST_ID_OFFSET, 0, true);
      ring.commit();
      return Promise.resolve(-1);
    }
    const { requestId, promise } = this.#settle('produce', slot, batch.length);
    v.setUint32(at + CMD_REQUEST_ID_OFFSET, requestId, true);
    ring.commit();
    return promise;
  }

  /** A rejected batch never reached the log ring: take its length back out of the hint. */
  #undoAlignHint(settle: Settle): void {
    const s = this.#slots[settle.slot];
    if (s && settle.length <= s.logRing.entryBytesMax) s.alignHint = (s.alignHint - settle.length) & (COPY_ALIGN_BYTES - 1);
  }

  fetch(slot: number, offset: number, maxBytes: number): Promise<RawFetch> {
    return this.#simple(CommandKind.fetch, 'fetch', slot, offset, Math.min(maxBytes, this.#limits.fetchBytesMax));
  }

  offsetForTime(slot: number, timestamp: number): Promise<number> {
    return this.#simple(CommandKind.offsetForTime, 'time', slot, timestamp, 0);
  }

  #simple(kind: number, settle: Settle['kind'], slot: number, argument: number, length: number): Promise<any> {
    this.#available();
    if (this.#pending.size >= this.#limits.inFlightMax) throw this.#throttled('too many requests in flight');
    const ring = this.#commands;
    const at = ring.reserve(CMD_HEADER_BYTES);
    if (at < 0) throw this.#throttled('command ring full');
    const { requestId, promise } = this.#settle(settle);
    const v = ring.view;
    v.setUint8(at + CMD_KIND_OFFSET, kind);
    v.setInt8(at + CMD_ACKS_OFFSET, 1);
    v.setUint16(at + CMD_BATCH_PAD_OFFSET, 0, true);
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
    while (gen === this.#generation) {
      this.#drainCompletions(ring);
      await ring.waitAsync(PUMP_WAIT_MS);
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
          if (settle.kind === 'produce') this.#undoAlignHint(settle);
          const wire: WireError = { code: errorCodeOf(errorNum), message: textDecoder.decode(payload), retriable: false };
          settle.reject(SluiceError.fromWire(wire));
        } else if (settle.kind === 'fetch') {
          // The one copy out of shared memory: the frame is reused once released.
          const records = Buffer.allocUnsafeSlow(payloadBytes);
          records.set(payload);
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
