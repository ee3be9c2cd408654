// A sink's dead-letter store read back as written: records whose events hold characters some line
// readers take for line breaks, and lines that are not records. Files in a temporary directory;
// starts no process.
import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/types.ts';
import {
  type DeadLetter,
  type DeadLetterLine,
  DeadLetterStore,
  readDeadLetters,
} from '../../../src/sinks/dead-letter.ts';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kao-dead-letter-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function letter(auditID: string, userAgent: string): DeadLetter {
  const event: AuditEvent = {
    level: 'Metadata',
    auditID,
    stage: 'ResponseComplete',
    requestURI: '/api/v1/namespaces',
    verb: 'list',
    user: { username: 'admin' },
    userAgent,
    stageTimestamp: '2026-11-22T04:08:57.440160Z',
  };
  return { output: 'influxdb', reason: 'refused', code: 'REJECTED', message: 'bad', event };
}

async function readAll(path: string): Promise<DeadLetterLine[]> {
  const lines: DeadLetterLine[] = [];
  for await (const line of readDeadLetters(path)) lines.push(line);
  return lines;
}

describe('readDeadLetters', () => {
  it('reads back whole the events holding U+2028, U+2029, U+0085 or a carriage return', async () => {
    const path = join(dir, 'trail.jsonl');
    const store = new DeadLetterStore({ path, sink: 'trail', maxBytes: 1_000_000 });
    const agents = ['a\u2028b', 'c\u2029d', 'e\u0085f', 'g\r\nh\ri', 'plain'];
    expect(await store.add(agents.map((agent, i) => letter(`id-${i}`, agent)))).toBe(5);

    const lines = await readAll(path);
    expect(lines.map((l) => (l.ok ? l.record.event.userAgent : l.error))).toEqual(agents);
    expect(lines.map((l) => l.line)).toEqual([1, 2, 3, 4, 5]);
  });

  it('numbers lines as the file has them and reports those that are not records', async () => {
    const path = join(dir, 'trail.jsonl');
    const store = new DeadLetterStore({ path, sink: 'trail', maxBytes: 1_000_000 });
    await store.add([letter('first', 'x')]);
    await appendFile(path, '\n{"version":99,"event":{}}\nnot json\n');
    await store.add([letter('last', 'y')]);

    const lines = await readAll(path);
    expect(lines.map((l) => [l.line, l.ok])).toEqual([
      [1, true],
      [3, false],
      [4, false],
      [5, true],
    ]);
    expect(lines[3]?.ok === true && lines[3].record.event.auditID).toBe('last');
  });

  it('has no lines for a file that does not exist', async () => {
    expect(await readAll(join(dir, 'missing.jsonl'))).toEqual([]);
  });
});
