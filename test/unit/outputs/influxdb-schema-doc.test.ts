// docs/influxdb-schema.md against the schema module (src/outputs/influxdb/schema.ts): its version,
// and its tag and field tables list exactly the schema's names, in the schema's order. Pure: reads
// a file, starts no process.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FIELD_NAMES, SCHEMA_VERSION, TAG_NAMES } from '../../../src/outputs/influxdb/schema.ts';

const PAGE = readFileSync(new URL('../../../docs/influxdb-schema.md', import.meta.url), 'utf8');

/** The first column of the table under the heading `### <heading>`, without backquotes. */
function firstColumn(heading: string): string[] {
  const section = PAGE.split(`\n### ${heading}\n`)[1]?.split('\n### ')[0] ?? '';
  return section
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => /^\| `([^`]+)`/.exec(line)?.[1] ?? '');
}

describe('docs/influxdb-schema.md', () => {
  it('names the schema version of the encoder', () => {
    expect(PAGE.split('\n')[0]).toBe(`# InfluxDB schema, version ${SCHEMA_VERSION}`);
  });

  it('lists every tag of the schema, in its order', () => {
    expect(firstColumn('Tags')).toEqual([...TAG_NAMES]);
  });

  it('lists every field of the schema, in its order, then the cut-value fields', () => {
    expect(firstColumn('Fields')).toEqual([...FIELD_NAMES, '<tag>_full', '<field>_bytes']);
  });
});
