/**
 * Loaded into the measured process with `--import` by bench/memory.ts: samples the process's
 * memory every 20 ms and, at exit, writes the peaks to the file named by KUBE_AUDIT_MEMORY_PROBE.
 * `process.memoryUsage()` gives RSS, the heap (used and reserved), external memory and array
 * buffers; `v8.getHeapSpaceStatistics()` splits the heap into its spaces (new space is the young
 * generation's two semi-spaces, old space the tenured objects, code space the compiled code).
 */
import { writeFileSync } from 'node:fs';
import { getHeapSpaceStatistics } from 'node:v8';

const out = process.env.KUBE_AUDIT_MEMORY_PROBE;
const MiB = 1024 * 1024;
const peaks: Record<string, number> = {};

function keep(name: string, bytes: number): void {
  if (bytes > (peaks[name] ?? 0)) peaks[name] = bytes;
}

function sample(): void {
  const m = process.memoryUsage();
  keep('rss', m.rss);
  keep('heapTotal', m.heapTotal);
  keep('heapUsed', m.heapUsed);
  keep('external', m.external);
  keep('arrayBuffers', m.arrayBuffers);
  for (const s of getHeapSpaceStatistics()) {
    keep(`${s.space_name}.size`, s.space_size);
    keep(`${s.space_name}.used`, s.space_used_size);
  }
}

if (out !== undefined) {
  setInterval(sample, 20).unref();
  process.once('exit', () => {
    sample();
    const mib = Object.fromEntries(
      Object.entries(peaks).map(([k, v]) => [k, Math.round((v / MiB) * 10) / 10]),
    );
    writeFileSync(out, `${JSON.stringify(mib)}\n`);
  });
}
