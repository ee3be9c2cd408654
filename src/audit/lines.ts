/**
 * Lines of a JSON-lines stream, split on "\n" alone (a "\r" before it is dropped). Not
 * node:readline: it also ends a line at U+2028 and U+2029, which JSON allows unescaped inside
 * strings (JSON.stringify leaves them so), and an event holding one would read as broken lines.
 */
import { StringDecoder } from 'node:string_decoder';

/** Every line of `chunks` in order, blank ones included, so that callers can number them. */
export async function* jsonLines(chunks: AsyncIterable<string | Buffer>): AsyncGenerator<string> {
  // A character cut across two Buffers is decoded whole.
  const decoder = new StringDecoder('utf8');
  let pending = '';
  for await (const chunk of chunks) {
    pending += typeof chunk === 'string' ? chunk : decoder.write(chunk);
    let start = 0;
    for (let end = pending.indexOf('\n'); end !== -1; end = pending.indexOf('\n', start)) {
      yield withoutCarriageReturn(pending.slice(start, end));
      start = end + 1;
    }
    pending = pending.slice(start);
  }
  pending += decoder.end();
  if (pending !== '') yield withoutCarriageReturn(pending);
}

function withoutCarriageReturn(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}
