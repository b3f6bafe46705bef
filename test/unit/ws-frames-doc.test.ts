/**
 * docs/protocol.md and the codec agree: every op has a section whose layout table matches
 * the codec's schema (offset, size, field, type), the op table lists every code, and every
 * limit the document names exists. The expected table is printed when a section is wrong.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bodySchema, CLIENT_OPS, FRAME_HEADER_BYTES, opName, SERVER_OPS, type FieldType, type Schema } from '../../src/ws-gateway/frames.js';
import * as limits from '../../src/ws-gateway/limits.js';

interface LayoutRow {
  offset: string;
  size: string;
  field: string;
  type: string;
}

const FIXED: Record<string, number> = { u8: 1, i8: 1, bool: 1, u16: 2, i16: 2, error: 2, u32: 4, i32: 4, i64: 8 };

function typeName(type: FieldType): string {
  if (typeof type === 'object') return 'list' in type ? `list<${type.list}>` : 'array';
  return type;
}

function sizeOf(type: FieldType): string {
  if (typeof type === 'object') return '4+n';
  if (type === 'string' || type === 'text') return '2+n';
  if (type === 'bytes') return '4+n';
  return String(FIXED[type]);
}

/** Rows in wire order: offsets are absolute while fixed, '-' after a variable-size field; items are `name[].field` at `+N` within the item. */
function layoutRows(schema: Schema, start: number | null, prefix: string, relative: boolean): LayoutRow[] {
  const rows: LayoutRow[] = [];
  let offset = start;
  for (const [name, type] of schema) {
    rows.push({ offset: offset === null ? '-' : relative ? `+${offset}` : String(offset), size: sizeOf(type), field: prefix + name, type: typeName(type) });
    if (typeof type === 'object' && 'array' in type) rows.push(...layoutRows(type.array, 0, `${prefix}${name}[].`, true));
    offset = offset !== null && typeof type === 'string' && type in FIXED ? offset + FIXED[type] : null;
  }
  return rows;
}

function layoutOf(op: number): LayoutRow[] {
  return layoutRows(bodySchema(op)!, FRAME_HEADER_BYTES, '', false);
}

function markdownTable(op: number): string {
  const lines = ['| offset | size | field | type | meaning |', '|---:|---:|---|---|---|'];
  for (const r of layoutOf(op)) lines.push(`| ${r.offset} | ${r.size} | ${r.field} | ${r.type} | |`);
  return lines.join('\n');
}

const hex = (op: number): string => `0x${op.toString(16).padStart(2, '0').toUpperCase()}`;

/** The rows of the first layout table under the heading `0xNN NAME`, or null without such a heading. */
function docRows(doc: string, op: number): LayoutRow[] | null {
  const lines = doc.split('\n');
  const heading = new RegExp(`^#{2,5} ${hex(op)} ${opName(op)}(\\s|$)`);
  const at = lines.findIndex((l) => heading.test(l));
  if (at < 0) return null;
  const rows: LayoutRow[] = [];
  let inTable = false;
  for (let i = at + 1; i < lines.length; i++) {
    const line = lines[i];
    if (/^#{1,5} /.test(line)) break;
    if (line.startsWith('| offset | size | field | type |')) {
      inTable = true;
      continue;
    }
    if (!inTable) continue;
    if (!line.startsWith('|')) break;
    if (line.startsWith('|---')) continue;
    const cells = line.split('|').slice(1, -1).map((c) => c.trim().replace(/[`\\]/g, ''));
    rows.push({ offset: cells[0], size: cells[1], field: cells[2], type: cells[3] });
  }
  return rows;
}

const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');

describe('docs/protocol.md', () => {
  it.each([...CLIENT_OPS, ...SERVER_OPS].map((op) => [hex(op), opName(op), op]))('has a section %s %s whose layout table matches the codec', (_hex, _name, op) => {
    const rows = docRows(doc, op as number);
    expect(rows, `a heading "### ${_hex} ${_name}"; expected table:\n${markdownTable(op as number)}`).not.toBeNull();
    expect(rows, `expected table:\n${markdownTable(op as number)}`).toEqual(layoutOf(op as number));
  });

  it('lists every op in the op table', () => {
    for (const op of [...CLIENT_OPS, ...SERVER_OPS]) {
      expect(doc, `${hex(op)} ${opName(op)} in the op table`).toMatch(new RegExp(`^\\| ${hex(op)} \\| ${opName(op)} \\|`, 'm'));
    }
  });

  it('names only limits that exist, and every limit exists in the limits table', () => {
    const named = [...doc.matchAll(/^\| `([A-Z][A-Z0-9_]+)` \|/gm)].map((m) => m[1]);
    const exported = Object.keys(limits);
    for (const name of named) expect(exported, `limit ${name} is exported by src/ws-gateway/limits.ts`).toContain(name);
    for (const name of exported) expect(named, `limit ${name} has a row in the limits table`).toContain(name);
  });
});
