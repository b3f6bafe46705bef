/**
 * Topic settings by their Kafka names (`cleanup.policy=compact`), for protocols that carry
 * them as name/value strings (the WebSocket CREATE_TOPIC_WITH_CONFIGS and DESCRIBE_CONFIGS,
 * Kafka's CreateTopics and DescribeConfigs later) and for `sluice topics create --config`.
 * Pure: no I/O. Owner: any thread.
 */
import { SluiceError } from '../errors.js';
import type { TopicConfig } from './engine.js';

/** Kafka name -> TopicConfig field, for every setting a topic has. */
export const TOPIC_CONFIG_NAMES: Readonly<Record<string, Exclude<keyof TopicConfig, 'partitions'>>> = Object.freeze({
  'cleanup.policy': 'cleanupPolicy',
  'delete.retention.ms': 'deleteRetentionMs',
  'retention.ms': 'retentionMs',
  'retention.bytes': 'retentionBytes',
  'segment.ms': 'segmentMs',
  'segment.bytes': 'segmentBytes',
  'message.timestamp.type': 'timestampType',
});

/** At most this many entries per request (there are 7 names; duplicates are refused anyway). */
export const TOPIC_CONFIG_ENTRIES_MAX = 64;

export interface ConfigEntry {
  name: string;
  value: string;
}

/**
 * The TopicConfig fields that `entries` set. Unknown names, duplicates and values that are
 * not what the setting takes are INVALID_ARGUMENT (the engine checks ranges).
 */
export function topicConfigFromEntries(entries: readonly ConfigEntry[]): Partial<TopicConfig> {
  if (entries.length > TOPIC_CONFIG_ENTRIES_MAX) throw new SluiceError('INVALID_ARGUMENT', `at most ${TOPIC_CONFIG_ENTRIES_MAX} config entries`);
  const out: Partial<Record<keyof TopicConfig, unknown>> = {};
  for (const { name, value } of entries) {
    const field = Object.prototype.hasOwnProperty.call(TOPIC_CONFIG_NAMES, name) ? TOPIC_CONFIG_NAMES[name] : undefined;
    if (field === undefined) throw new SluiceError('INVALID_ARGUMENT', `unknown topic config ${JSON.stringify(name)}; known: ${Object.keys(TOPIC_CONFIG_NAMES).join(', ')}`);
    if (field in out) throw new SluiceError('INVALID_ARGUMENT', `topic config ${name} given twice`);
    if (field === 'cleanupPolicy' || field === 'timestampType') {
      out[field] = value; // checked by the engine, with the message for a bad value
    } else {
      if (!/^-?\d+$/.test(value)) throw new SluiceError('INVALID_ARGUMENT', `topic config ${name} takes an integer, got ${JSON.stringify(value)}`);
      out[field] = Number(value);
    }
  }
  return out as Partial<TopicConfig>;
}

/** Every setting of a topic as name/value strings, sorted by name. */
export function topicConfigEntries(config: TopicConfig): ConfigEntry[] {
  return Object.entries(TOPIC_CONFIG_NAMES)
    .map(([name, field]) => ({ name, value: String(config[field]) }))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
}
