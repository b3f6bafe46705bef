import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FaultyFileSystem, nodeFileSystem } from '../../src/persist/fs.js';
import { loadTopics, readJsonFile, saveTopics, writeFileAtomic, type TopicsFile } from '../../src/persist/metadata.js';
import { errorCode, tempDir } from './persist-helpers.js';

const text = (s: string) => new TextEncoder().encode(s);

// Parsed from text, as loadTopics sees it: in an object literal, a "__proto__" key would set
// the prototype instead of making an own property.
const sample: TopicsFile = JSON.parse(`{"version": 1, "topics": {
  "__proto__": {"partitions": 1, "config": {"retentionMs": -1, "retentionBytes": 1000, "segmentBytes": 16384, "segmentMs": 1000, "cleanupPolicy": "compact", "deleteRetentionMs": 0, "timestampType": "LogAppendTime"}, "createdAt": 0},
  "events": {"partitions": 3, "config": {"retentionMs": 604800000, "retentionBytes": -1, "segmentBytes": 1073741824, "segmentMs": 604800000, "cleanupPolicy": "compact,delete", "deleteRetentionMs": 5000, "timestampType": "CreateTime"}, "createdAt": 1700000000000}
}}`);

// A file written before cleanupPolicy, deleteRetentionMs and timestampType existed.
const OLD_FORMAT = `{"version": 1, "topics": {
  "old": {"partitions": 2, "config": {"retentionMs": 1000, "retentionBytes": -1, "segmentBytes": 16384, "segmentMs": 1000}, "createdAt": 5}
}}`;

describe('writeFileAtomic', () => {
  it('replaces the file, fsyncs the data and the folder, and leaves no temporary file', () => {
    const dir = tempDir();
    const path = join(dir, 'meta.json');
    const fs = new FaultyFileSystem();
    writeFileAtomic(fs, path, text('one'));
    expect(readFileSync(path, 'utf8')).toBe('one');
    const before = { ...fs.calls };
    writeFileAtomic(fs, path, text('two, longer'));
    expect(readFileSync(path, 'utf8')).toBe('two, longer');
    expect(fs.calls.fdatasync - before.fdatasync).toBe(1);
    expect(fs.calls.rename - before.rename).toBe(1);
    expect(fs.calls.fsyncDir - before.fsyncDir).toBe(1);
    expect(readdirSync(dir)).toEqual(['meta.json']);
  });

  it('a failed write leaves the old file whole and is a STORAGE_ERROR', () => {
    const dir = tempDir();
    const path = join(dir, 'meta.json');
    writeFileAtomic(nodeFileSystem, path, text('old'));
    const fs = new FaultyFileSystem().tearNextWrite(2);
    expect(errorCode(() => writeFileAtomic(fs, path, text('new content')))).toBe('STORAGE_ERROR');
    expect(readFileSync(path, 'utf8')).toBe('old');
    expect(readdirSync(dir)).toEqual(['meta.json']);
    const fs2 = new FaultyFileSystem().inject({ op: 'rename', code: 'EIO' });
    expect(errorCode(() => writeFileAtomic(fs2, path, text('new content')))).toBe('STORAGE_ERROR');
    expect(readFileSync(path, 'utf8')).toBe('old');
  });
});

describe('readJsonFile', () => {
  it('is undefined for a missing file and STORAGE_ERROR for one that does not parse', () => {
    const dir = tempDir();
    expect(readJsonFile(nodeFileSystem, join(dir, 'none.json'))).toBeUndefined();
    writeFileSync(join(dir, 'bad.json'), '{"version": 1, "topics": {');
    expect(errorCode(() => readJsonFile(nodeFileSystem, join(dir, 'bad.json')))).toBe('STORAGE_ERROR');
  });
});

describe('topics.json', () => {
  it('a missing file is an empty registry', () => {
    expect(loadTopics(nodeFileSystem, join(tempDir(), 'topics.json'))).toEqual({ version: 1, topics: {} });
  });

  it('saves and loads back every topic, including one named __proto__', () => {
    const path = join(tempDir(), 'topics.json');
    expect(Object.keys(sample.topics)).toEqual(['__proto__', 'events']);
    saveTopics(nodeFileSystem, path, sample);
    const loaded = loadTopics(nodeFileSystem, path);
    expect(Object.keys(loaded.topics).sort()).toEqual(['__proto__', 'events']);
    expect(loaded.topics.events).toEqual(sample.topics.events);
    expect(Object.getPrototypeOf(loaded.topics)).toBe(Object.prototype);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual(JSON.parse(JSON.stringify(sample)));
  });

  it('loads a file written before cleanupPolicy existed with delete, a day of tombstone retention and CreateTime, and saves them', () => {
    const path = join(tempDir(), 'topics.json');
    writeFileSync(path, OLD_FORMAT);
    const loaded = loadTopics(nodeFileSystem, path);
    expect(loaded.topics.old).toEqual({
      partitions: 2,
      config: { retentionMs: 1000, retentionBytes: -1, segmentBytes: 16384, segmentMs: 1000, cleanupPolicy: 'delete', deleteRetentionMs: 86_400_000, timestampType: 'CreateTime' },
      createdAt: 5,
    });
    saveTopics(nodeFileSystem, path, loaded);
    expect(JSON.parse(readFileSync(path, 'utf8')).topics.old.config).toMatchObject({ cleanupPolicy: 'delete', deleteRetentionMs: 86_400_000, timestampType: 'CreateTime' });
  });

  const garbled: [string, string][] = [
    ['not JSON', '{"version":1,"topics":{"a":'],
    ['a bare array', '[]'],
    ['a wrong version', '{"version":2,"topics":{}}'],
    ['topics not an object', '{"version":1,"topics":[]}'],
    ['partitions zero', '{"version":1,"topics":{"a":{"partitions":0,"config":{"retentionMs":1,"retentionBytes":1,"segmentBytes":1,"segmentMs":1},"createdAt":0}}}'],
    ['a missing config field', '{"version":1,"topics":{"a":{"partitions":1,"config":{"retentionMs":1,"retentionBytes":1,"segmentBytes":1},"createdAt":0}}}'],
    ['a string where a number belongs', '{"version":1,"topics":{"a":{"partitions":"1","config":{"retentionMs":1,"retentionBytes":1,"segmentBytes":1,"segmentMs":1},"createdAt":0}}}'],
    ['an unknown cleanupPolicy', '{"version":1,"topics":{"a":{"partitions":1,"config":{"retentionMs":1,"retentionBytes":1,"segmentBytes":1,"segmentMs":1,"cleanupPolicy":"shred"},"createdAt":0}}}'],
    ['an unknown timestampType', '{"version":1,"topics":{"a":{"partitions":1,"config":{"retentionMs":1,"retentionBytes":1,"segmentBytes":1,"segmentMs":1,"timestampType":"LogApendTime"},"createdAt":0}}}'],
    ['a negative deleteRetentionMs', '{"version":1,"topics":{"a":{"partitions":1,"config":{"retentionMs":1,"retentionBytes":1,"segmentBytes":1,"segmentMs":1,"deleteRetentionMs":-1},"createdAt":0}}}'],
    ['invalid UTF-8', '\xff\xfe'],
  ];
  for (const [what, content] of garbled) {
    it(`a topics.json with ${what} is a STORAGE_ERROR naming the file, and is left untouched`, () => {
      const path = join(tempDir(), 'topics.json');
      writeFileSync(path, Buffer.from(content, 'latin1'));
      let err: unknown;
      try {
        loadTopics(nodeFileSystem, path);
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: 'STORAGE_ERROR' });
      expect((err as Error).message).toContain(path);
      expect(readFileSync(path).equals(Buffer.from(content, 'latin1'))).toBe(true);
      expect(existsSync(path + '.tmp')).toBe(false);
    });
  }
});
