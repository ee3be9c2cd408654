// A real crash of the process's durable log: starts child Node processes (process.execPath running
// a script written to a temporary directory) that append every batch to two sinks' queues over one
// log and commit from them, SIGKILLs each mid-run, and checks in this process that every
// acknowledged batch survived exactly once, in order, in each sink's queue.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { openLogQueue } from '../../../src/spool/log/index.ts';
import { problemsIn, runAndKill, WRITERS } from './crash-support.ts';
import { TempDirs } from './support.ts';

const LOG = fileURLToPath(new URL('../../../src/spool/log/index.ts', import.meta.url));
const SINKS = ['sinks/a', 'pipelines/shop/b'];
const ROUNDS = 3;

const temp = new TempDirs();
afterAll(() => temp.removeAll());

// The child: three writers append batches of 20 to 180 recorded events (ids
// `r<round>-w<writer>-b<batch>-e<i>`) to both sinks at once, as the registry does, and print
// `acked <batch> <size>` once both appends resolved; an output per sink commits as it goes and
// prints `committed <sink> <last auditID>` once commit() resolves. Small segments, so segments
// are created and deleted while it runs.
const CHILD = `
import { readFileSync } from 'node:fs';
import { openLogQueue } from ${JSON.stringify(pathToFileURL(LOG).href)};
const [dir, round, fixture] = process.argv.slice(2);
const recorded = readFileSync(fixture, 'utf8').split('\\n').filter(Boolean).map((l) => JSON.parse(l));
const out = (line) => process.stdout.write(line + '\\n');
const sinks = ${JSON.stringify(SINKS)};
const queues = [];
for (const key of sinks) {
  const queue = await openLogQueue({ logDir: dir, key, maxBytes: 1 << 30, segmentBytes: 1024 * 1024 });
  // Holds every event for the test to check; its registration is on disk once next() returns.
  await queue.consumer('checker').next(1, 0);
  queues.push(queue);
}
async function writer(w) {
  for (let b = 0; ; b++) {
    const id = 'r' + round + '-w' + w + '-b' + b;
    const size = 20 * (1 + ((b * 7 + w) % 9));
    const batch = [];
    for (let i = 0; i < size; i++) {
      batch.push({ ...recorded[(b + i) % recorded.length], auditID: id + '-e' + i });
    }
    await Promise.all(queues.map((q) => q.append(batch)));
    out('acked ' + id + ' ' + size);
  }
}
async function output(s) {
  const influx = queues[s].consumer('influxdb');
  for (;;) {
    const batch = await influx.next(50, 1000);
    if (batch === null) continue;
    await influx.commit(batch);
    out('committed ' + s + ' ' + batch.events.at(-1).auditID);
  }
}
out('ready');
await Promise.all([...Array.from({ length: ${WRITERS} }, (_, w) => writer(w)), ...sinks.map((_, s) => output(s))]);
`;

it('keeps every acknowledged batch exactly once and in order in each sink across SIGKILLs mid-append', async () => {
  const dir = await temp.make();
  const scriptDir = await temp.make();
  const script = join(scriptDir, 'append-until-killed.mjs');
  await writeFile(script, CHILD);

  const acked = new Map<string, number>();
  for (let round = 0; round < ROUNDS; round++) {
    // Different kill points per round: after 30, 45 and 60 acknowledged batches and a random delay.
    const run = await runAndKill(script, dir, round, 30 + round * 15);
    for (const [id, size] of run.acked) acked.set(id, size);

    for (const [s, key] of SINKS.entries()) {
      const queue = await openLogQueue({ logDir: dir, key, maxBytes: 1 << 30 });
      try {
        const batch = await queue.consumer('checker').next(1_000_000, 0);
        const log = batch?.events.map((e) => e.auditID) ?? [];
        expect(problemsIn(log, acked)).toEqual([]);

        // The output resumes after its last acknowledged commit, never before it.
        const resume = (await queue.consumer('influxdb').next(1, 0))?.events[0]?.auditID;
        const committed = run.lastCommitted.get(String(s));
        if (committed !== undefined) {
          const committedAt = log.indexOf(committed);
          expect(committedAt).toBeGreaterThanOrEqual(0);
          const resumeAt = resume === undefined ? log.length : log.indexOf(resume);
          expect(resumeAt).toBeGreaterThan(committedAt);
        }
      } finally {
        await queue.close();
      }
    }
  }
  expect(acked.size).toBeGreaterThanOrEqual(30 + 45 + 60);
}, 60_000);

// The second child: a busy sink whose output commits everything and a quiet sink whose
// destination is down (its checker never commits) and which keeps two events of each batch (ids
// `r<round>-w0-b<n>-e<i>`, printed `acked` once durable), so that it holds every segment. Small segments and a small log size
// past which laggards are relocated, so that the quiet sink's share is copied forward again and
// again while the kills land.
const RELOCATING_CHILD = `
import { readFileSync } from 'node:fs';
import { openLogQueue } from ${JSON.stringify(pathToFileURL(LOG).href)};
const [dir, round, fixture] = process.argv.slice(2);
const recorded = readFileSync(fixture, 'utf8').split('\\n').filter(Boolean).map((l) => JSON.parse(l));
const out = (line) => process.stdout.write(line + '\\n');
const options = { logDir: dir, maxBytes: 1 << 30, segmentBytes: 128 * 1024, relocateAfterBytes: 1024 * 1024 };
const busy = await openLogQueue({ ...options, key: 'sinks/busy' });
const quiet = await openLogQueue({ ...options, key: 'sinks/quiet' });
await quiet.consumer('checker').next(1, 0);
const influx = busy.consumer('influxdb');
(async () => {
  for (;;) {
    const batch = await influx.next(500, 1000);
    if (batch !== null) await influx.commit(batch);
  }
})();
out('ready');
for (let n = 0; ; n++) {
  const busyBatch = Array.from({ length: 50 }, (_, i) => ({ ...recorded[(n + i) % recorded.length], auditID: 'busy-' + n + '-' + i }));
  const id = 'r' + round + '-w0-b' + n;
  const quietBatch = [0, 1].map((i) => ({ ...recorded[(n + i) % recorded.length], auditID: id + '-e' + i }));
  await Promise.all([busy.append(busyBatch), quiet.append(quietBatch)]);
  out('acked ' + id + ' 2');
}
`;

it('keeps a quiet sink’s acknowledged batches exactly once and in order across SIGKILLs while its share is relocated', async () => {
  const dir = await temp.make();
  const scriptDir = await temp.make();
  const script = join(scriptDir, 'relocate-until-killed.mjs');
  await writeFile(script, RELOCATING_CHILD);

  const acked = new Map<string, number>();
  let relocated = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const run = await runAndKill(script, dir, round, 200 + round * 100);
    for (const [id, size] of run.acked) acked.set(id, size);
    const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as {
      streams: { key: string; base?: number }[];
    };
    if ((state.streams.find((s) => s.key === 'sinks/quiet')?.base ?? 0) > 0) relocated++;
    const queue = await openLogQueue({ logDir: dir, key: 'sinks/quiet', maxBytes: 1 << 30 });
    try {
      const batch = await queue.consumer('checker').next(1_000_000, 0);
      const log = batch?.events.map((e) => e.auditID) ?? [];
      expect(problemsIn(log, acked, () => 2)).toEqual([]);
    } finally {
      await queue.close();
    }
  }
  expect(acked.size).toBeGreaterThanOrEqual(200 + 300 + 400);
  // The quiet sink's share was moved (a completed relocation is in the state file).
  expect(relocated).toBeGreaterThan(0);
}, 90_000);
