/**
 * File operations the durable stores share (the per-sink spool, `segments.ts`, and the process's
 * log, `log/log.ts`): whole writes and reads at a position, truncation, directory creation and
 * syncs, and the `QUEUE_IO` error that names what failed.
 */
import { writeSync } from 'node:fs';
import { type FileHandle, mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { QueueError } from './errors.ts';

/** The `code` of a Node.js system error, if it has one. */
export function errorCode(error: unknown): string | undefined {
  return error instanceof Error && 'code' in error && typeof error.code === 'string'
    ? error.code
    : undefined;
}

/** A `QUEUE_IO` error saying what was done to which path, with the cause's message. */
export function ioError(action: string, path: string, cause: unknown): QueueError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new QueueError('QUEUE_IO', `${action} ${path}: ${reason}`, { cause });
}

/** Fsyncs a directory, so the names created or renamed in it survive a power loss (Linux). */
export async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Creates `dir` and its missing parents; with `fsync`, syncs the parent of each directory created,
 * since a new directory is only durable once its parent is synced, up to one that existed.
 */
export async function createDirectory(dir: string, fsync: boolean): Promise<void> {
  const created = await mkdir(dir, { recursive: true });
  if (!fsync || created === undefined) return;
  const top = dirname(created);
  for (let path = dir; path !== top && path !== dirname(path); path = dirname(path)) {
    await syncDirectory(dirname(path));
  }
}

/**
 * Writes all of `buf` at `position` of an open file on the calling thread. For writes into the
 * page cache that an fsync then makes durable, which take a fraction of a millisecond: through
 * libuv's thread pool they would wait behind gzip, reads and other syncs (ADR 0019).
 */
export function writeFullySync(fd: number, buf: Buffer, position: number): void {
  let done = 0;
  while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done, position + done);
}

/** Writes all of `buf` at `position`, however many writes it takes. */
export async function writeFully(handle: FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await handle.write(buf, done, buf.length - done, position + done);
    done += bytesWritten;
  }
}

/** Reads `length` bytes at `position` of an open file, however many reads it takes; fewer at its end. */
export async function readAt(
  handle: FileHandle,
  position: number,
  length: number,
): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buf.subarray(0, done);
}

/** Reads `length` bytes at `position` of the file at `path`; fewer when the file ends before. */
export async function readRange(path: string, position: number, length: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    return await readAt(handle, position, length);
  } finally {
    await handle.close();
  }
}

/** Cuts a file to `length` bytes, synced when `fsync` is set. */
export async function truncateFile(path: string, length: number, fsync: boolean): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.truncate(length);
    if (fsync) await handle.datasync();
  } finally {
    await handle.close();
  }
}
