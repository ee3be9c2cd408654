// A real crash: starts child Node processes (process.execPath running a script written to a
// temporary directory) that append to a durable queue and commit from it, SIGKILLs each mid-run,
// and checks in this process that every acknowledged batch survived exactly once, in order.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { openQueue } from '../../../src/spool/index.ts';
import { problemsIn, runAndKill, WRITERS } from './crash-support.ts';
import { TempDirs } from './support.ts';

const SPOOL = fileURLToPath(new URL('../../../src/spool/index.ts', import.meta.url));
const ROUNDS = 3;

const temp = new TempDirs();
afterAll(() => temp.removeAll());

// The child: three writers append batches of 1 to 9 recorded events (ids `r<round>-w<writer>-b<batch>-e<i>`)
// and print `acked <batch> <size>` once append() resolves; an output commits as it goes and
// prints `committed <last auditID>` once commit() resolves. Small segments, so segments are
// created and deleted while it runs.
const CHILD = `
import { readFileSync } from 'node:fs';
import { openQueue } from ${JSON.stringify(pathToFileURL(SPOOL).href)};
const [dir, round, fixture] = process.argv.slice(2);
const recorded = readFileSync(fixture, 'utf8').split('\\n').filter(Boolean).map((l) => JSON.parse(l));
const out = (line) => process.stdout.write(line + '\\n');
const queue = await openQueue({ dir, maxBytes: 1 << 30, segmentBytes: 1024 * 1024 });
// Holds every event for the test to check; its registration is on disk once next() returns.
await queue.consumer('checker').next(1, 0);
const influx = queue.consumer('influxdb');
async function writer(w) {
  for (let b = 0; ; b++) {
    const id = 'r' + round + '-w' + w + '-b' + b;
    const size = 20 * (1 + ((b * 7 + w) % 9));
    const batch = [];
    for (let i = 0; i < size; i++) {
      batch.push({ ...recorded[(b + i) % recorded.length], auditID: id + '-e' + i });
    }
    await queue.append(batch);
    out('acked ' + id + ' ' + size);
  }
}
async function output() {
  for (;;) {
    const batch = await influx.next(50, 1000);
    if (batch === null) continue;
    await influx.commit(batch);
    out('committed ' + batch.events.at(-1).auditID);
  }
}
out('ready');
await Promise.all([...Array.from({ length: ${WRITERS} }, (_, w) => writer(w)), output()]);
`;

it('keeps every acknowledged batch exactly once and in order across SIGKILLs mid-append', async () => {
  const dir = await temp.make();
  const scriptDir = await temp.make();
  const script = join(scriptDir, 'append-until-killed.mjs');
  await writeFile(script, CHILD);

  const acked = new Map<string, number>();
  for (let round = 0; round < ROUNDS; round++) {
    // Different kill points per round: after 30, 45 and 60 acknowledged batches and a random delay.
    const run = await runAndKill(script, dir, round, 30 + round * 15);
    for (const [id, size] of run.acked) acked.set(id, size);

    const queue = await openQueue({ dir, maxBytes: 1 << 30 });
    try {
      const batch = await queue.consumer('checker').next(1_000_000, 0);
      const log = batch?.events.map((e) => e.auditID) ?? [];
      expect(problemsIn(log, acked)).toEqual([]);

      // The output resumes after its last acknowledged commit, never before it.
      const resume = (await queue.consumer('influxdb').next(1, 0))?.events[0]?.auditID;
      const committed = run.lastCommitted.get('');
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
  expect(acked.size).toBeGreaterThanOrEqual(30 + 45 + 60);
}, 60_000);
