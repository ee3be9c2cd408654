/**
 * A request's body read as UTF-8 text within the receiver's body limit. It does what fastify's
 * own reader (`parseAs: 'buffer'`) did here: a Content-Length above the limit is refused before
 * anything is read, reading stops at the chunk that passes the limit, and a body whose size
 * differs from its Content-Length is refused. The chunks are copied into one buffer that every
 * receiver of the process reuses, then decoded, where fastify's reader made a new buffer of the
 * body's size for every request (ADR 0012, "Later: buffers used once per batch are reused").
 */
import type { Readable } from 'node:stream';
import { ReusedBuffer } from '../audit/reused-buffer.ts';
import { ReceiverError } from './errors.ts';

/**
 * Bodies up to 4 MiB are copied into the reused buffer: a 400-event batch is a few hundred
 * kilobytes at Metadata, a few MiB with request and response bodies. Larger ones get their own.
 */
export const BODY_BUFFER_MAX_BYTES = 4 * 1024 * 1024;

/**
 * The buffer of every receiver of the process (the main listener and the sinks' dedicated ones):
 * each copies and decodes a body in one turn, so one buffer serves them all, however many.
 */
export const RECEIVED_BODIES = new ReusedBuffer(BODY_BUFFER_MAX_BYTES);

/** What {@link readBodyText} needs besides the body. */
export interface BodyReading {
  /** Most bytes accepted (`bodyLimitBytes`). */
  readonly limit: number;
  /** The request's Content-Length header, if it sent one. */
  readonly contentLength: string | undefined;
  /** Where the chunks are copied together ({@link RECEIVED_BODIES} in the receiver). */
  readonly buffer: ReusedBuffer;
}

/** A body read: its text and its size in bytes. */
export interface BodyText {
  readonly text: string;
  readonly bytes: number;
}

/**
 * The body as text, once it has all arrived.
 *
 * @throws ReceiverError `BODY_TOO_LARGE` above the limit, `BAD_REQUEST` when the body ends before
 * its Content-Length, passes it, or fails to arrive (the connection broke).
 */
export function readBodyText(body: Readable, reading: BodyReading): Promise<BodyText> {
  const { limit } = reading;
  const declared = reading.contentLength === undefined ? Number.NaN : Number(reading.contentLength);
  if (declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const stop = (): void => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
    };
    const onData = (chunk: Buffer | string): void => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      received += bytes.length;
      if (received > limit) {
        stop();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(bytes);
    };
    const onEnd = (): void => {
      stop();
      if (!Number.isNaN(declared) && received !== declared) {
        reject(
          new ReceiverError('BAD_REQUEST', { detail: 'body size differs from Content-Length' }),
        );
        return;
      }
      resolve({ text: textOf(chunks, received, reading.buffer), bytes: received });
    };
    const onError = (error: Error): void => {
      stop();
      reject(new ReceiverError('BAD_REQUEST', { cause: error }));
    };
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
    body.resume();
  });
}

/** The chunks decoded as one text: a character split between two chunks stays whole. */
function textOf(chunks: readonly Buffer[], size: number, buffer: ReusedBuffer): string {
  if (chunks.length === 1) return (chunks[0] as Buffer).toString('utf8');
  const whole = buffer.take(size);
  let at = 0;
  for (const chunk of chunks) at += chunk.copy(whole, at);
  return whole.toString('utf8', 0, size);
}

function tooLarge(limit: number): ReceiverError {
  return new ReceiverError('BODY_TOO_LARGE', { detail: `limit ${limit} bytes` });
}
