/**
 * Opens the consumer-group machinery over an open Engine: the offset store (the internal
 * topic __consumer_offsets, loaded into memory) and the GroupCoordinator, which rebalances
 * when topics change. Every listener (the WebSocket gateway today, a Kafka-protocol one
 * later) shares the one coordinator this returns.
 *
 * Owner: the thread that owns the Engine.
 */
import type { Logger } from '../workers/owner-handle.js';
import type { Engine } from './engine.js';
import { GroupCoordinator, type CoordinatorClock } from './group-coordinator.js';
import { OffsetStore } from './offset-store.js';

export interface Groups {
  readonly coordinator: GroupCoordinator;
  readonly offsets: OffsetStore;
  /** Stops timers and topic listening; members are forgotten (offsets stay in the log). */
  close(): void;
}

async function forgetTopic(offsets: OffsetStore, topic: string, logger: Logger | undefined): Promise<void> {
  for (const groupId of offsets.groupIds()) {
    const partitions = offsets.get(groupId).filter((o) => o.topic === topic);
    if (partitions.length === 0) continue;
    try {
      await offsets.deleteOffsets(groupId, partitions);
    } catch (err) {
      logger?.warn({ groupId, topic, err: err instanceof Error ? err.message : String(err) }, 'could not delete the committed offsets of a deleted topic');
    }
  }
}

export async function openGroups(engine: Engine, options: { logger?: Logger; clock?: CoordinatorClock } = {}): Promise<Groups> {
  const offsets = await OffsetStore.open(engine, { logger: options.logger });
  const coordinator = new GroupCoordinator({
    partitionsOf: (topic) => {
      if (!engine.listTopics().includes(topic)) return undefined;
      return engine.describeTopic(topic).partitions.length;
    },
    offsets,
    clock: options.clock,
    logger: options.logger,
  });
  const unlisten = engine.onTopicsChanged((event) => {
    coordinator.topicsChanged();
    // As Kafka: the committed offsets of a deleted topic go with it (tombstones), so a topic
    // created again under the name starts without stale positions.
    if (event.kind === 'deleted') void forgetTopic(offsets, event.topic, options.logger);
  });
  let closed = false;
  return {
    coordinator,
    offsets,
    close() {
      if (closed) return;
      closed = true;
      unlisten();
      coordinator.close();
    },
  };
}
