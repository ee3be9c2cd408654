// Every policy shipped in examples/ loads and validates. Pure: starts no process.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadPolicies } from '../../src/policy/load.ts';

const dir = new URL('../../examples/policies/', import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith('.yaml') || f.endsWith('.json'));

describe('example policies', () => {
  it('ships some', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  it.each(files)('%s is a valid policy without warnings', (file) => {
    const loaded = loadPolicies(readFileSync(new URL(file, dir), 'utf8'), file);
    expect(loaded.length).toBeGreaterThan(0);
    expect(loaded.flatMap((l) => l.warnings)).toEqual([]);
  });
});
