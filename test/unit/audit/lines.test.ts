// Splitting a JSON-lines stream: on "\n" only, whatever the chunks, with "\r\n" endings and the
// line separators JSON allows inside strings. Pure.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { jsonLines } from '../../../src/audit/lines.ts';

async function split(chunks: readonly string[]): Promise<string[]> {
  const lines: string[] = [];
  for await (const line of jsonLines(Readable.from(chunks))) lines.push(line);
  return lines;
}

describe('jsonLines', () => {
  it('keeps U+2028, U+2029 and U+0085 inside a line, as JSON strings may hold them', async () => {
    const record = JSON.stringify({ userAgent: 'a\u2028b\u2029c\u0085d' });
    expect(await split([`${record}\n${record}\n`])).toEqual([record, record]);
  });

  it('joins lines cut across chunks, keeps blank lines, and drops a carriage return before "\\n"', async () => {
    expect(await split(['{"a":', '1}\r\n\n{"b"', ':2}'])).toEqual(['{"a":1}', '', '{"b":2}']);
  });

  it('reads Buffers as UTF-8, with a character cut across two of them', async () => {
    const bytes = Buffer.from('ü\nxü');
    const chunks = [bytes.subarray(0, 1), bytes.subarray(1, 5), bytes.subarray(5)];
    const lines: string[] = [];
    for await (const line of jsonLines(Readable.from(chunks, { objectMode: true }))) {
      lines.push(line);
    }
    expect(lines).toEqual(['ü', 'xü']);
  });

  it('has no lines for nothing', async () => {
    expect(await split([])).toEqual([]);
  });
});
