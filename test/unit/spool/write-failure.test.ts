// A write that fails halfway: starts a child Node process (process.execPath, under /bin/sh with
// `ulimit -f`, so that writes past the file size limit are cut short and then fail with EFBIG)
// that appends to a durable queue, and checks the result by reopening the queue in this process.
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { openQueue } from '../../../src/spool/index.ts';
import { TempDirs } from './support.ts';

const SPOOL = fileURLToPath(new URL('../../../src/spool/index.ts', import.meta.url));

const temp = new TempDirs();
afterAll(() => temp.removeAll());

// Batches of 20 events (about 6 KB), except batch 5: 2,000 events (about 600 KB), more than the
// file size limit allows in one segment. Segments of 32 KiB, so batch 5 starts a segment of its
// own and the small batches after it fit again.
const CHILD = `
import { openQueue } from ${JSON.stringify(pathToFileURL(SPOOL).href)};
const [dir] = process.argv.slice(2);
const queue = await openQueue({ dir, maxBytes: 1 << 30, segmentBytes: 32 * 1024 });
const outcomes = [];
for (let b = 0; b < 10; b++) {
  const size = b === 5 ? 2000 : 20;
  const batch = Array.from({ length: size }, (_, i) => ({
    level: 'Metadata', auditID: 'b' + b + '-e' + i, stage: 'ResponseComplete',
    requestURI: '/api/v1/namespaces/shop/configmaps', verb: 'list',
    user: { username: 'admin', groups: ['system:masters'] },
    stageTimestamp: '2026-11-22T04:08:57.440160Z',
  }));
  try {
    await queue.append(batch);
    outcomes.push({ batch: b, ok: true });
  } catch (error) {
    outcomes.push({ batch: b, ok: false, code: error.code, cause: error.cause?.code });
  }
}
await queue.close();
process.stdout.write(JSON.stringify(outcomes));
`;

interface Outcome {
  readonly batch: number;
  readonly ok: boolean;
  readonly code?: string;
  readonly cause?: string;
}

function runLimited(script: string, dir: string): Promise<Outcome[]> {
  return new Promise((resolve, reject) => {
    // 200 blocks: 100 KiB in dash (512-byte blocks), 200 KiB in bash; either is far below batch 5.
    const child = spawn(
      '/bin/sh',
      ['-c', 'ulimit -f 200 && exec "$0" "$@"', process.execPath, script, dir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(JSON.parse(stdout) as Outcome[]);
      else reject(new Error(`child exited with ${String(code)}:\n${stderr}`));
    });
  });
}

it('rejects an append whose write fails halfway, leaves no part of it, and keeps accepting', async () => {
  const dir = await temp.make();
  const script = join(await temp.make(), 'append-past-size-limit.mjs');
  await writeFile(script, CHILD);

  const outcomes = await runLimited(script, dir);
  expect(outcomes.filter((o) => !o.ok)).toEqual([
    { batch: 5, ok: false, code: 'QUEUE_IO', cause: 'EFBIG' },
  ]);

  const queue = await openQueue({ dir, maxBytes: 1 << 30 });
  try {
    expect(queue.recovery.tornBytes).toBe(0);
    const batch = await queue.consumer('check').next(100_000, 0);
    const expected = [0, 1, 2, 3, 4, 6, 7, 8, 9].flatMap((b) =>
      Array.from({ length: 20 }, (_, i) => `b${b}-e${i}`),
    );
    expect(batch?.events.map((e) => e.auditID)).toEqual(expected);
  } finally {
    await queue.close();
  }
});
