/**
 * The consumer-group requests of one WebSocket connection (JOIN_GROUP .. RESET_OFFSETS),
 * served by the engine's GroupCoordinator, and the ASSIGNMENT pushes to the members that
 * joined through this connection. The coordinator is transport-agnostic; this file only
 * maps frames to its calls and back.
 *
 * A member that joined here is detached when the socket closes: the coordinator stops
 * pushing to it and keeps it until its session timeout (Kafka semantics), so a client that
 * reconnects at once rejoins with its member id and keeps its partitions.
 *
 * Owner: the gateway thread.
 */
import { SluiceError } from '../errors.js';
import type { Engine, PartitionDescription } from '../engine/engine.js';
import type { AssignmentListener, GroupCoordinator, MemberAssignment, TopicPartition } from '../engine/group-coordinator.js';
import { checkNotInternal } from '../engine/names.js';
import {
  encodeServerFrame,
  Op,
  ResetStrategy,
  type ClientFrame,
  type CommitOffsetsRequest,
  type DescribeGroupOk,
  type FetchCommittedRequest,
  type JoinGroupRequest,
  type ResetOffsetsRequest,
  type ResponseFrame,
} from './frames.js';


type GroupOp = (typeof Op)['JOIN_GROUP' | 'HEARTBEAT' | 'LEAVE_GROUP' | 'COMMIT_OFFSETS' | 'FETCH_COMMITTED' | 'LIST_GROUPS' | 'DESCRIBE_GROUP' | 'RESET_OFFSETS'];
export type GroupRequest = Extract<ClientFrame, { op: GroupOp }>;

export function isGroupRequest(frame: ClientFrame): frame is GroupRequest {
  return frame.op >= Op.JOIN_GROUP && frame.op <= Op.RESET_OFFSETS;
}

/** A response without its correlation id (distributive over the union). */
type Body = ResponseFrame extends infer F ? (F extends ResponseFrame ? Omit<F, 'correlationId'> : never) : never;

const memberKey = (groupId: string, memberId: string): string => `${groupId}\u0000${memberId}`;

export class GroupSession {
  readonly #coordinator: GroupCoordinator;
  readonly #engine: Engine;
  readonly #push: (frame: Uint8Array) => void;
  /** Members that joined through this connection: groupId + memberId. */
  readonly #members = new Map<string, { groupId: string; memberId: string; listener: AssignmentListener }>();
  #closed = false;

  /** The connection's client id (from HELLO): the member's clientId when JOIN_GROUP leaves it empty. */
  readonly #clientId: () => string;

  constructor(coordinator: GroupCoordinator, engine: Engine, push: (frame: Uint8Array) => void, clientId: () => string) {
    this.#coordinator = coordinator;
    this.#engine = engine;
    this.#push = push;
    this.#clientId = clientId;
  }

  /** Serves one group request; the caller adds the correlation id and encodes. */
  async handle(frame: GroupRequest): Promise<Body> {
    const c = this.#coordinator;
    switch (frame.op) {
      case Op.JOIN_GROUP:
        return { op: Op.JOIN_GROUP_OK, ...assignmentBody(this.#join(frame)) };
      case Op.HEARTBEAT:
        return { op: Op.HEARTBEAT_OK, ...assignmentBody(c.heartbeat(frame.groupId, frame.memberId, frame.generation)) };
      case Op.LEAVE_GROUP:
        c.leave(frame.groupId, frame.memberId);
        this.#members.delete(memberKey(frame.groupId, frame.memberId));
        return { op: Op.LEAVE_GROUP_OK };
      case Op.COMMIT_OFFSETS:
        await this.#commit(frame);
        return { op: Op.COMMIT_OFFSETS_OK };
      case Op.FETCH_COMMITTED:
        return { op: Op.FETCH_COMMITTED_OK, offsets: this.#fetchCommitted(frame) };
      case Op.LIST_GROUPS:
        return {
          op: Op.LIST_GROUPS_OK,
          groups: c.listGroups().map((g) => ({ groupId: g.groupId, state: g.state, members: g.members, assignor: g.assignor ?? '' })),
        };
      case Op.DESCRIBE_GROUP:
        return { op: Op.DESCRIBE_GROUP_OK, ...describeGroupBody(c, this.#engine, frame.groupId) };
      case Op.RESET_OFFSETS:
        return { op: Op.RESET_OFFSETS_OK, offsets: await resetOffsets(c, this.#engine, frame) };
      default: {
        const unknown: never = frame;
        throw new Error(`not a group request: ${(unknown as { op: number }).op}`);
      }
    }
  }

  #join(frame: JoinGroupRequest): MemberAssignment {
    if (this.#closed) throw new SluiceError('ENGINE_CLOSED', 'the connection is closing');
    for (const t of frame.topics) checkNotInternal(t);
    const listener: AssignmentListener = (a) => {
      if (!this.#closed) this.#push(encodeServerFrame({ op: Op.ASSIGNMENT, correlationId: 0, ...assignmentBody(a) }));
    };
    const assignment = this.#coordinator.join(
      {
        groupId: frame.groupId,
        memberId: frame.memberId,
        instanceId: frame.instanceId === '' ? undefined : frame.instanceId,
        clientId: frame.clientId === '' ? this.#clientId() : frame.clientId,
        topics: frame.topics,
        sessionTimeoutMs: frame.sessionTimeoutMs,
        rebalanceTimeoutMs: frame.rebalanceTimeoutMs === 0 ? undefined : frame.rebalanceTimeoutMs,
        assignor: frame.assignor === '' ? undefined : (frame.assignor as 'sticky'),
      },
      listener,
    );
    this.#members.set(memberKey(frame.groupId, assignment.memberId), { groupId: frame.groupId, memberId: assignment.memberId, listener });
    return assignment;
  }

  async #commit(frame: CommitOffsetsRequest): Promise<void> {
    for (const o of frame.offsets) checkNotInternal(o.topic);
    await this.#coordinator.commitOffsets(frame.groupId, frame.memberId, frame.generation, frame.offsets);
  }

  #fetchCommitted(frame: FetchCommittedRequest) {
    const partitions = frame.partitions.length === 0 ? undefined : frame.partitions;
    return this.#coordinator.fetchCommitted(frame.groupId, frame.memberId, frame.generation, partitions).map((o) => ({
      offset: o.offset,
      commitTimestamp: o.commitTimestamp,
      partition: o.partition,
      topic: o.topic,
      metadata: o.metadata,
    }));
  }

  /** The socket closed: stop pushing; the members live on until their session timeouts. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const { groupId, memberId, listener } of this.#members.values()) {
      try {
        this.#coordinator.detach(groupId, memberId, listener);
      } catch {
        // Already gone (left, fenced or expired).
      }
    }
    this.#members.clear();
  }
}

function assignmentBody(a: MemberAssignment) {
  return {
    generation: a.generation,
    heartbeatIntervalMs: a.heartbeatIntervalMs,
    groupId: a.groupId,
    memberId: a.memberId,
    partitions: a.partitions.map((p) => ({ partition: p.partition, topic: p.topic })),
  };
}

/**
 * The partitions of topics as the engine describes them, each topic described once per
 * request (a description covers all its partitions); undefined for a topic that is gone.
 */
function topicPartitions(engine: Engine): (topic: string) => PartitionDescription[] | undefined {
  const described = new Map<string, PartitionDescription[] | undefined>();
  return (topic) => {
    if (!described.has(topic)) described.set(topic, engine.listTopics().includes(topic) ? engine.describeTopic(topic).partitions : undefined);
    return described.get(topic);
  };
}

/** DESCRIBE_GROUP_OK's body: members, assignment, and per committed partition its end offset and lag. */
export function describeGroupBody(coordinator: GroupCoordinator, engine: Engine, groupId: string): Omit<DescribeGroupOk, 'op' | 'correlationId'> {
  const d = coordinator.describeGroup(groupId);
  const partitionsOf = topicPartitions(engine);
  const tp = (p: TopicPartition) => ({ partition: p.partition, topic: p.topic });
  return {
    generation: d.generation,
    groupId: d.groupId,
    state: d.state,
    assignor: d.assignor ?? '',
    members: d.members.map((m) => ({
      generation: m.generation,
      memberId: m.memberId,
      instanceId: m.instanceId ?? '',
      clientId: m.clientId,
      topics: [...m.topics],
      partitions: m.partitions.map(tp),
      revoking: m.revoking.map(tp),
    })),
    offsets: [...d.offsets, ...uncommitted(d)].map((o) => {
      // The high watermark, or -1 when the topic or partition is gone.
      const logEndOffset = partitionsOf(o.topic)?.[o.partition]?.highWatermark ?? -1;
      return {
        offset: o.offset,
        logEndOffset,
        lag: logEndOffset < 0 || o.offset < 0 ? -1 : Math.max(0, logEndOffset - o.offset),
        commitTimestamp: o.commitTimestamp,
        partition: o.partition,
        topic: o.topic,
        metadata: o.metadata,
      };
    }).sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition)),
  };
}

/** Partitions assigned to a member without a committed offset: listed with offset -1 (lag unknown), as Kafka's tool shows "-". */
function uncommitted(d: ReturnType<GroupCoordinator['describeGroup']>) {
  const committed = new Set(d.offsets.map((o) => `${o.partition}\u0000${o.topic}`));
  const out: { topic: string; partition: number; offset: number; commitTimestamp: number; metadata: string }[] = [];
  for (const m of d.members) {
    for (const p of m.partitions) {
      if (!committed.has(`${p.partition}\u0000${p.topic}`)) out.push({ topic: p.topic, partition: p.partition, offset: -1, commitTimestamp: -1, metadata: '' });
    }
  }
  return out;
}

/**
 * RESET_OFFSETS: computes each partition's new offset with the engine and commits them all
 * as an admin commit (the coordinator refuses it unless the group is empty). Partitions: every
 * partition of `topics`, or, when empty, every partition the group has an offset for.
 */
export async function resetOffsets(coordinator: GroupCoordinator, engine: Engine, frame: Pick<ResetOffsetsRequest, 'groupId' | 'strategy' | 'value' | 'topics'>) {
  const partitionsOf = topicPartitions(engine);
  const partitions: TopicPartition[] = [];
  if (frame.topics.length > 0) {
    for (const topic of frame.topics) {
      checkNotInternal(topic);
      const count = (partitionsOf(topic) ?? engine.describeTopic(topic).partitions).length; // describeTopic: UNKNOWN_TOPIC_OR_PARTITION
      for (let partition = 0; partition < count; partition++) partitions.push({ topic, partition });
    }
  } else {
    for (const o of coordinator.fetchCommitted(frame.groupId, '', -1)) partitions.push({ topic: o.topic, partition: o.partition });
    if (partitions.length === 0) throw new SluiceError('GROUP_ID_NOT_FOUND', `group ${JSON.stringify(frame.groupId)} has no committed offsets; name the topics to reset`);
  }
  const offsets: { topic: string; partition: number; offset: number; metadata: string }[] = [];
  for (const p of partitions) {
    const d = partitionsOf(p.topic)?.[p.partition];
    if (!d) continue; // a committed partition of a topic deleted meanwhile
    let offset: number;
    switch (frame.strategy) {
      case ResetStrategy.EARLIEST:
        offset = d.logStartOffset;
        break;
      case ResetStrategy.LATEST:
        offset = d.highWatermark;
        break;
      case ResetStrategy.OFFSET:
        offset = Math.min(Math.max(frame.value, d.logStartOffset), d.highWatermark);
        break;
      case ResetStrategy.TIMESTAMP:
        offset = (await engine.offsetForTime(p.topic, p.partition, frame.value)) ?? d.highWatermark;
        break;
      default:
        throw new SluiceError('INVALID_ARGUMENT', `reset strategy must be 0 (earliest), 1 (latest), 2 (offset) or 3 (timestamp), got ${frame.strategy}`);
    }
    offsets.push({ topic: p.topic, partition: p.partition, offset, metadata: '' });
  }
  await coordinator.resetOffsets(frame.groupId, offsets);
  return offsets.map((o) => ({ offset: o.offset, partition: o.partition, topic: o.topic, metadata: o.metadata }));
}
