/**
 * `node bench/memory.ts [--full] [--outage] [--every-field] [--only <workload>] [--no-peer]
 * [--repeat <n>] [--batches <n>] [--pace <batches/s>] [--candidate '<NODE_OPTIONS>']...`: what
 * Node.js and V8 settings cost and save.
 * Runs this project's `standalone` on the peer comparison's workloads (bench/peer.ts) once per
 * candidate `NODE_OPTIONS` (each with the `node` flags of the image's ENTRYPOINT), into one real
 * influxd, and Telegraf once per workload as the reference; prints peak RSS (VmHWM), where the
 * memory went (heap spaces, external memory, array buffers, sampled in the process by
 * bench/memory-probe.ts), and events per CPU second, also as a ratio to Telegraf's (`--no-peer`
 * skips Telegraf). ADR 0021 holds the table that chose the shipped settings (the Dockerfile's
 * `ENV NODE_OPTIONS`, the last default candidate).
 *
 * `--outage` stops InfluxDB after the warm-up and starts it again 5 s after every batch is
 * acknowledged (no Telegraf): the peaks are what the sinks hold while they retry, "visible after
 * ack s" is the time from InfluxDB's return until every point is stored, and the events per CPU
 * second include the retries.
 *
 * The default workloads are the quick bench's 1-sink ones and the Mix with 100 sinks; `--full`
 * adds the Mix with 10 and with 1,000 sinks. `--batches` sends that many batches in every
 * workload instead of the quick bench's 150 to 250: backlogs that build up over the full run only
 * show in longer runs. `--pace` offers that many batches a second, open loop, instead of two in
 * flight as fast as they are answered (bench/peer.ts). `--every-field` has our sinks write every
 * field of the schema, as a sink does by default, instead of the peer's two (bench/peer.ts). Needs
 * `npm run build` and Telegraf built, as bench/peer.ts does.
 */
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startInfluxd } from '../test/harness/influxd.ts';
import { shippedNodeOptions } from '../test/harness/standalone.ts';
import {
  ensureTelegraf,
  oursFields,
  runSystem,
  startOurs,
  startPeer,
  type SystemResult,
  traffic,
  type Workload,
  workload,
} from './peer.ts';

const PROBE = fileURLToPath(new URL('./memory-probe.ts', import.meta.url));

/**
 * The candidates compared by default (ADR 0021): Node.js's defaults, a smaller young generation
 * alone, and with old-generation limits from tight to roomy; the shipped settings come last.
 */
const DEFAULT_CANDIDATES = [
  '',
  '--max-semi-space-size=16',
  '--max-semi-space-size=8 --max-old-space-size=96',
  '--max-semi-space-size=16 --max-old-space-size=256',
  '--max-semi-space-size=32 --max-old-space-size=512',
];

function flags(): {
  full: boolean;
  peer: boolean;
  outage: boolean;
  everyField: boolean;
  repeat: number;
  only: string;
  batches: number | undefined;
  pace: number | undefined;
  candidates: string[];
} {
  const argv = process.argv.slice(2);
  const candidates: string[] = [];
  let repeat = 1;
  let only = '';
  let batches: number | undefined;
  let pace: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--candidate') candidates.push(argv[++i] ?? '');
    else if (argv[i] === '--only') only = argv[++i] ?? '';
    else if (argv[i] === '--repeat') repeat = Number(argv[++i]);
    else if (argv[i] === '--batches') batches = Number(argv[++i]);
    else if (argv[i] === '--pace') pace = Number(argv[++i]);
    else if (!['--full', '--no-peer', '--outage', '--every-field'].includes(argv[i] as string))
      throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!Number.isInteger(repeat) || repeat < 1) throw new Error('--repeat takes a positive integer');
  if (batches !== undefined && (!Number.isInteger(batches) || batches < 1)) {
    throw new Error('--batches takes a positive integer');
  }
  if (pace !== undefined && !(pace > 0)) throw new Error('--pace takes a positive number');
  const list = candidates.length > 0 ? candidates : [...DEFAULT_CANDIDATES, shippedNodeOptions()];
  return {
    full: argv.includes('--full'),
    peer: !argv.includes('--no-peer') && !argv.includes('--outage'),
    outage: argv.includes('--outage'),
    everyField: argv.includes('--every-field'),
    repeat,
    only,
    batches,
    pace,
    candidates: [...new Set(list)],
  };
}

/** One candidate on one workload. */
interface Row {
  readonly workload: string;
  readonly nodeOptions: string;
  readonly result: SystemResult;
  /** Peaks sampled in the process, MiB. */
  readonly peaks: Readonly<Record<string, number>>;
}

const progress = (line: string) => console.error(line);

/** With `--outage`: how long InfluxDB stays down after the last batch is acknowledged. */
const OUTAGE_HOLD_MS = 5_000;

const {
  full,
  peer: withPeer,
  outage,
  everyField,
  repeat,
  only,
  batches,
  pace,
  candidates,
} = flags();

const fields = everyField ? 'every' : 'peer';
const matrix: Workload[] = [
  workload('Metadata', 1, batches ?? 250, fields, pace),
  workload('RequestResponse', 1, batches ?? 250, fields, pace),
  ...(full ? [workload('Mix', 10, batches ?? 150, fields, pace)] : []),
  workload('Mix', 100, batches ?? 150, fields, pace),
  ...(full ? [workload('Mix', 1000, batches ?? 150, fields, pace)] : []),
].filter((w) => w.name.includes(only));
const telegraf = ensureTelegraf();
const server = await startInfluxd();
const rows: Row[] = [];
const peers = new Map<string, SystemResult>();
try {
  for (const w of matrix) {
    const peer = withPeer
      ? await runSystem(
          'peer',
          w,
          (buckets, dir) =>
            startPeer(
              telegraf,
              server,
              buckets,
              dir,
              Math.max(10_000, 2 * Math.max(...traffic(w).totalPoints)),
            ),
          server,
          traffic(w),
          progress,
        )
      : undefined;
    if (peer !== undefined) peers.set(w.name, peer);
    for (let r = 0; r < repeat; r++) {
      for (const nodeOptions of candidates) {
        const out = join(tmpdir(), `kube-audit-memory-${process.pid}.json`);
        process.env.KUBE_AUDIT_MEMORY_PROBE = out;
        const result = await runSystem(
          'ours',
          w,
          (buckets, dir) =>
            startOurs(
              server,
              buckets,
              dir,
              oursFields(w),
              `${nodeOptions} --import=${PROBE}`.trim(),
            ),
          server,
          traffic(w),
          progress,
          outage ? OUTAGE_HOLD_MS : undefined,
        );
        const peaks = JSON.parse(readFileSync(out, 'utf8')) as Record<string, number>;
        rmSync(out, { force: true });
        rows.push({ workload: w.name, nodeOptions, result, peaks });
        progress(
          `${w.name} [${nodeOptions || 'defaults'}]: ${result.peakRssMiB} MiB, ` +
            `${result.eventsPerCpuSecond.toLocaleString('en-US')} events/CPU-s`,
        );
      }
    }
  }
} finally {
  delete process.env.KUBE_AUDIT_MEMORY_PROBE;
  await server.dispose();
}

const table = rows.map((r) => {
  const peer = peers.get(r.workload);
  const p = (key: string) => r.peaks[key] ?? 0;
  return {
    workload: r.workload,
    NODE_OPTIONS: r.nodeOptions || '(defaults)',
    'peak RSS MiB': r.result.peakRssMiB,
    'heap total': p('heapTotal'),
    'heap used': p('heapUsed'),
    'new space': p('new_space.size'),
    'old space': p('old_space.size'),
    'old used': p('old_space.used'),
    'code space': p('code_space.size'),
    'large obj': p('large_object_space.size'),
    external: p('external'),
    'array buf': p('arrayBuffers'),
    'events/CPU-s': r.result.eventsPerCpuSecond,
    'vs peer':
      peer === undefined
        ? null
        : Number((r.result.eventsPerCpuSecond / peer.eventsPerCpuSecond).toFixed(2)),
    'ack p99 ms': r.result.ackP99Millis,
    'acked events/s': r.result.ackedEventsPerSecond,
    'visible events/s': r.result.eventsPerSecond,
    'visible after ack s': r.result.visibleAfterAckSeconds,
    'influxd CPU-s/100k': r.result.influxdCpuSecondsPer100k,
    'influxd counts CPU-s': r.result.influxdCountsCpuSeconds,
    'influxd cores until ack': r.result.influxdCoresUntilAck,
  };
});
console.log('\nMemory by NODE_OPTIONS (MiB; heap figures are peaks sampled in the process)\n');
console.table(table);
if (peers.size > 0) {
  console.log('\nTelegraf, the reference\n');
  console.table(
    [...peers].map(([name, p]) => ({
      workload: name,
      'peak RSS MiB': p.peakRssMiB,
      'events/CPU-s': p.eventsPerCpuSecond,
    })),
  );
}
console.log(JSON.stringify({ rows: table }, null, 0));
