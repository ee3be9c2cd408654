// readBodyText: a request body read as text within the limit, through a reused buffer, over
// in-memory streams. Starts no process.
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ReusedBuffer } from '../../../src/audit/reused-buffer.ts';
import { readBodyText } from '../../../src/receiver/body.ts';
import { ReceiverError } from '../../../src/receiver/errors.ts';
import { rejectionOf } from '../../support/rejection.ts';

const LIMIT = 1024;

function chunked(text: string, size: number): Buffer[] {
  const bytes = Buffer.from(text, 'utf8');
  const chunks: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += size) chunks.push(bytes.subarray(at, at + size));
  return chunks;
}

/** readBodyText with the test's limit, and a buffer of its own unless given one. */
function read(
  body: Readable,
  contentLength?: string,
  buffer = new ReusedBuffer(LIMIT),
): ReturnType<typeof readBodyText> {
  return readBodyText(body, { limit: LIMIT, contentLength, buffer });
}

describe('readBodyText', () => {
  it('decodes a body of many chunks whole, a character split between two of them included', async () => {
    // "é" and "€" are 2 and 3 bytes: chunks of 4 bytes split several of them.
    const text = `{"items":["é€ x","${'ab€'.repeat(40)}"]}`;
    const chunks = chunked(text, 4);
    const buffer = new ReusedBuffer(LIMIT);
    const body = await read(Readable.from(chunks), String(Buffer.byteLength(text)), buffer);
    expect(body).toEqual({ text, bytes: Buffer.byteLength(text) });
    expect(buffer.bytes).toBeGreaterThanOrEqual(body.bytes);
  });

  it('reads bodies arriving at the same time through one buffer, each text its own', async () => {
    const buffer = new ReusedBuffer(LIMIT);
    const a = new PassThrough();
    const b = new PassThrough();
    const texts = [read(a, undefined, buffer), read(b, undefined, buffer)];
    const long = 'a'.repeat(600);
    const short = 'b'.repeat(300);
    for (let at = 0; at < 600; at += 100) {
      a.write(long.slice(at, at + 100));
      if (at < 300) b.write(short.slice(at, at + 100));
      await new Promise((resolve) => setImmediate(resolve));
    }
    b.end();
    a.end();
    const [first, second] = await Promise.all(texts);
    expect(second?.text).toBe(short);
    expect(first?.text).toBe(long);
  });

  it('decodes a single chunk without copying it', async () => {
    const buffer = new ReusedBuffer(LIMIT);
    const body = await read(Readable.from([Buffer.from('{"a":1}')]), undefined, buffer);
    expect(body.text).toBe('{"a":1}');
    expect(buffer.bytes).toBe(0);
  });

  it('refuses a Content-Length above the limit before reading anything', async () => {
    const stream = Readable.from([Buffer.alloc(10)]);
    const error = await rejectionOf(read(stream, String(LIMIT + 1)), ReceiverError);
    expect(error.code).toBe('BODY_TOO_LARGE');
    expect(error.message).toContain(`limit ${LIMIT} bytes`);
    expect(stream.readableFlowing).toBeNull();
  });

  it('refuses a body without Content-Length once its chunks pass the limit, before it ends', async () => {
    const stream = new PassThrough();
    const reading = read(stream);
    // Five chunks of 256 bytes pass 1,024; the body never ends.
    for (let i = 0; i < 5; i++) stream.write(Buffer.alloc(256, 0x20));
    const error = await rejectionOf(reading, ReceiverError);
    expect(error.code).toBe('BODY_TOO_LARGE');
    stream.destroy();
  });

  it('accepts a body of exactly the limit', async () => {
    const text = ' '.repeat(LIMIT);
    const body = await read(Readable.from(chunked(text, 300)), String(LIMIT));
    expect(body.text).toBe(text);
  });

  it('refuses a body shorter or longer than its Content-Length', async () => {
    for (const declared of ['9', '11']) {
      const error = await rejectionOf(
        read(Readable.from(chunked('0123456789', 3)), declared),
        ReceiverError,
      );
      expect(error.code).toBe('BAD_REQUEST');
      expect(error.message).toContain('Content-Length');
    }
  });

  it('refuses a body whose stream fails, keeping the failure as the cause', async () => {
    const stream = new PassThrough();
    const reading = read(stream);
    stream.write('{"items":[');
    const broken = new Error('aborted');
    stream.destroy(broken);
    const error = await rejectionOf(reading, ReceiverError);
    expect(error.code).toBe('BAD_REQUEST');
    expect(error.cause).toBe(broken);
  });
});
