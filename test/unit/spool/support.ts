// Shared pieces of the spool tests: small events, temporary directories, queues closed after
// each test, reading a consumer out, a controllable delay.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from '../../../src/audit/types.ts';
import type { Delay, QueueBatch, QueueConsumer, SinkQueue } from '../../../src/spool/index.ts';

/** A small valid event whose auditID is `id`. */
export function event(id: string): AuditEvent {
  return {
    level: 'Metadata',
    auditID: id,
    stage: 'ResponseComplete',
    requestURI: `/api/v1/namespaces/shop/configmaps/${id}`,
    verb: 'get',
    user: { username: 'admin', groups: ['system:masters'] },
    objectRef: { resource: 'configmaps', namespace: 'shop', name: id, apiVersion: 'v1' },
    responseStatus: { code: 200 },
    stageTimestamp: '2026-11-22T04:08:57.440160Z',
  };
}

/** Events `prefix-from` .. `prefix-(to - 1)`. */
export function events(prefix: string, from: number, to: number): AuditEvent[] {
  return Array.from({ length: to - from }, (_, i) => event(`${prefix}-${from + i}`));
}

/** The auditIDs of a batch, or null. */
export function ids(batch: QueueBatch | null): string[] | null {
  return batch === null ? null : batch.events.map((e) => e.auditID);
}

/** Serialized size of an event in the queue: its JSON line. */
export function lineBytes(e: AuditEvent): number {
  return Buffer.byteLength(`${JSON.stringify(e)}\n`);
}

/** Temporary directories created by a test file, removed by `removeAll`. */
export class TempDirs {
  readonly #dirs: string[] = [];

  /** A new empty directory under the OS temp directory. */
  async make(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'spool-test-'));
    this.#dirs.push(dir);
    return dir;
  }

  /** Removes every directory made so far. */
  async removeAll(): Promise<void> {
    await Promise.all(this.#dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  }
}

/** Queues a test opened, closed by `closeAll` (after each test, or before reopening their files). */
export class OpenedQueues {
  readonly #queues: SinkQueue[] = [];

  /** `queue`, closed by the next `closeAll`. */
  add(queue: SinkQueue): SinkQueue {
    this.#queues.push(queue);
    return queue;
  }

  /** Forgets a queue the test closes or destroys itself. */
  forget(queue: SinkQueue): void {
    const at = this.#queues.indexOf(queue);
    if (at !== -1) this.#queues.splice(at, 1);
  }

  /** Closes every queue added since the last call. */
  async closeAll(): Promise<void> {
    await Promise.all(this.#queues.splice(0).map((q) => q.close()));
  }
}

/** Reads and commits everything a consumer has, in batches of `size`; the auditIDs read. */
export async function drain(consumer: QueueConsumer, size = 1000): Promise<string[]> {
  const seen: string[] = [];
  for (;;) {
    const batch = await consumer.next(size, 0);
    if (batch === null) return seen;
    seen.push(...(ids(batch) ?? []));
    await consumer.commit(batch);
  }
}

/** The auditIDs a consumer has, read without committing. */
export async function peek(consumer: QueueConsumer): Promise<string[]> {
  return ids(await consumer.next(100_000, 0)) ?? [];
}

/** Names of the files in `dir` ending in `suffix`, sorted. */
export async function filesEnding(dir: string, suffix: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith(suffix)).sort();
}

/** A delay that only ends when the test says so (or its signal aborts): time under test control. */
export class ManualDelay {
  readonly #timers = new Set<() => void>();

  readonly delay: Delay = (_ms, signal) =>
    new Promise((done) => {
      const finish = (): void => {
        this.#timers.delete(finish);
        signal.removeEventListener('abort', finish);
        done();
      };
      this.#timers.add(finish);
      signal.addEventListener('abort', finish, { once: true });
      if (signal.aborted) finish();
    });

  /** Delays currently running. */
  get waiting(): number {
    return this.#timers.size;
  }

  /** Lets every running delay run out, as if its time had passed. */
  elapse(): void {
    for (const finish of [...this.#timers]) finish();
  }
}

/** Resolves after pending promise callbacks and I/O callbacks have run. */
export function settle(): Promise<void> {
  return new Promise((done) => setImmediate(done));
}

/** `value`, which the test expects to be there. */
export function present<T>(value: T | null | undefined): T {
  if (value === null || value === undefined) throw new Error('expected a value, got nothing');
  return value;
}
