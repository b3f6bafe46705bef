import { describe, expect, it } from 'vitest';
import { checkTopicName, fnv1a32, ownerOf, partitionDirName } from '../../src/engine/names.js';

describe('topic names', () => {
  it('accepts Kafka-legal names', () => {
    for (const name of ['a', 'orders', 'my.topic_v2-1', 'x'.repeat(249)]) expect(checkTopicName(name)).toBe(name);
  });

  it('rejects names that could escape the data directory or are not legal', () => {
    for (const name of ['', '.', '..', '../x', 'a/b', 'a\\b', 'x'.repeat(250), 'é', 'a b', 'a\0b', 42, null]) {
      expect(() => checkTopicName(name)).toThrow(expect.objectContaining({ code: 'INVALID_TOPIC' }));
    }
  });
});

describe('partition to owner mapping', () => {
  it('is deterministic and spreads a topic over every owner', () => {
    expect(fnv1a32('')).toBe(0x811c9dc5);
    expect(fnv1a32('a')).toBe(0xe40c292c);
    const owners = new Set<number>();
    for (let p = 0; p < 8; p++) {
      const o = ownerOf('events', p, 4);
      expect(o).toBe(ownerOf('events', p, 4));
      owners.add(o);
    }
    expect(owners.size).toBe(4);
    expect(partitionDirName('events', 3)).toBe('events-3');
  });
});
