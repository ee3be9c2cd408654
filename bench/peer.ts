/**
 * Peer comparison (SPEC 7): the same audit webhook workload through this project's data path and
 * through Telegraf, each writing into its own bucket of one real influxd on the same machine.
 *
 * - ours: `node dist/main.js standalone --insecure` on loopback, one AuditSink (Metadata, every
 *   stage) whose spec.influxdb points at the bucket, tags verb, resource, namespace, user, level
 *   and stage; its durable spool in a temporary data directory.
 * - peer: Telegraf (scripts/build-telegraf.sh) with inputs.http_listener_v2 on /audit/v1/events,
 *   data_format json_v2 turning each EventList item into a point of measurement kubernetes_audit
 *   with the same six tags and the fields audit_id and request_uri, timestamped by stageTimestamp,
 *   and outputs.influxdb_v2.
 *
 * Both get identical 400-event EventList batches (Metadata and RequestResponse variants of the
 * recorded apiserver 1.20 events, every event its own auditID and microsecond), two requests in
 * flight. A run ends when every point is visible in the bucket (counted with Flux). Reported per
 * workload: events/s to the acks and to visible points, CPU seconds per 100k events of the server
 * process (utime + stime from /proc/<pid>/stat), ack latency p50/p99, peak RSS (VmHWM), and the
 * ours/peer ratio of events per CPU second.
 *
 * `node bench/peer.ts [--quick]` (needs `npm run build` and Telegraf built) writes
 * bench/results/bench-results.json.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AuditEvent } from '../src/audit/types.ts';
import { freePort, type InfluxServer, startInfluxd } from '../test/harness/influxd.ts';
import { BATCH_SIZE, batches, type Level } from './influxdb.ts';

export const TELEGRAF_VERSION = 'v1.37.2';
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const MEASUREMENT = 'kubernetes_audit';
const TAGS = ['verb', 'resource', 'namespace', 'user', 'level', 'stage'] as const;
const IN_FLIGHT = 2;
const WARMUP_BATCHES = 10;
const VISIBLE_TIMEOUT_MS = 120_000;
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

type System = 'ours' | 'peer';

/** One system on one workload. */
export interface SystemResult {
  readonly events: number;
  /** Events over the time from the first post to the last ack. */
  readonly ackedEventsPerSecond: number;
  /** Events over the time from the first post until every point is visible in the bucket. */
  readonly eventsPerSecond: number;
  readonly cpuSecondsPer100k: number;
  readonly eventsPerCpuSecond: number;
  readonly ackP50Millis: number;
  readonly ackP99Millis: number;
  readonly peakRssMiB: number;
  /**
   * CPU seconds per 100k events of influxd over the same window: the cost of the points each one
   * writes (it includes the Flux counts polled until every point is visible).
   */
  readonly influxdCpuSecondsPer100k: number;
  /** Tag and field keys found in the bucket, to check that both write comparable points. */
  readonly tagKeys: readonly string[];
  readonly fieldKeys: readonly string[];
}

/** One workload: both systems and their ratio. */
export interface PeerResult {
  readonly workload: string;
  readonly batch: Level;
  readonly batches: number;
  readonly batchBytes: number;
  readonly ours: SystemResult;
  readonly peer: SystemResult;
  /** ours / peer, events per CPU second of the server process. */
  readonly ratioEventsPerCpuSecond: number;
  /** ours / peer, events per second until visible. */
  readonly ratioEventsPerSecond: number;
}

/** Where scripts/build-telegraf.sh puts the binary (the same rule as the script's). */
export function cachedTelegrafPath(version = TELEGRAF_VERSION): string {
  const cache = process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
  const root = process.env.TELEGRAF_CACHE_ROOT ?? join(cache, 'kube-audit-operator', 'telegraf');
  return join(root, version, 'telegraf');
}

function ensureTelegraf(): string {
  const cached = cachedTelegrafPath();
  if (existsSync(cached)) return cached;
  console.error(`building Telegraf ${TELEGRAF_VERSION} (scripts/build-telegraf.sh)`);
  const out = execFileSync(join(ROOT, 'scripts', 'build-telegraf.sh'), [TELEGRAF_VERSION], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return out.trim().split('\n').at(-1) ?? cached;
}

/** CPU seconds (user + system) the process has used so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Peak resident set (VmHWM) of the process, in MiB. */
function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmHWM:\s+(\d+)\s+kB/m.exec(status)?.[1];
  return Math.round(Number(kib ?? 0) / 1024);
}

/** The pid of the influxd serving `url`, found by its --http-bind-address. */
function influxdPid(url: string): number {
  const bind = `--http-bind-address\0${new URL(url).host}\0`;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(bind)) return Number(entry);
    } catch {
      // Exited while listing.
    }
  }
  throw new Error(`no influxd process bound to ${url}`);
}

/** A server under test: its process, its receiver URL, and how to stop it. */
interface Running {
  readonly pid: number;
  readonly url: string;
  stop(): Promise<void>;
}

function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
}

/** Resolves once `probe` answers true, or fails after `timeoutMs` or when the child exits. */
async function until(
  child: ChildProcess,
  output: () => string,
  probe: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}:\n${output()}`);
    if (await probe().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`not ready after ${timeoutMs} ms:\n${output()}`);
}

function yamlString(value: string): string {
  return JSON.stringify(value);
}

async function startOurs(server: InfluxServer, bucket: string, dir: string): Promise<Running> {
  const port = await freePort();
  const manifests = join(dir, 'sinks.yaml');
  writeFileSync(
    manifests,
    [
      'apiVersion: v1',
      'kind: Secret',
      'metadata:',
      '  name: influx-token',
      'stringData:',
      `  token: ${yamlString(server.token)}`,
      '---',
      'apiVersion: kube-audit.dev/v1alpha1',
      'kind: AuditSink',
      'metadata:',
      '  name: bench',
      'spec:',
      '  policy:',
      '    level: Metadata',
      '    stages: ["RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"]',
      '  influxdb:',
      `    url: ${yamlString(server.url)}`,
      `    org: ${yamlString(server.org)}`,
      `    bucket: ${yamlString(bucket)}`,
      `    measurement: ${MEASUREMENT}`,
      `    tags: [${TAGS.join(', ')}]`,
      '    tokenSecretRef: {name: influx-token, key: token}',
      '',
    ].join('\n'),
  );
  const child = spawn(
    process.execPath,
    [
      join(ROOT, 'dist', 'main.js'),
      'standalone',
      '-f',
      manifests,
      '--insecure',
      '--listen',
      `127.0.0.1:${port}`,
      '--data-dir',
      join(dir, 'data'),
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env } },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-8_000);
  });
  const url = `http://127.0.0.1:${port}/audit/v1/events`;
  try {
    await until(
      child,
      () => stderr,
      () => Promise.resolve(stderr.includes('receiving audit events at')),
      30_000,
    );
  } catch (err) {
    await stopper(child)();
    throw err;
  }
  return { pid: child.pid ?? 0, url, stop: stopper(child) };
}

function telegrafConfig(server: InfluxServer, bucket: string, port: number): string {
  const renames = {
    auditID: 'audit_id',
    requestURI: 'request_uri',
    objectRef_resource: 'resource',
    objectRef_namespace: 'namespace',
    user_username: 'user',
  };
  const toml = (values: readonly string[]) =>
    `[${values.map((v) => JSON.stringify(v)).join(', ')}]`;
  return `
[agent]
  interval = "10s"
  round_interval = false
  # As the sink: writes of up to 1,000 points, at least every second.
  metric_batch_size = 1000
  flush_interval = "1s"
  flush_jitter = "0s"
  # Large enough that no point is dropped: the run waits for every one in the bucket.
  metric_buffer_limit = 10000000
  omit_hostname = true
  quiet = true

[[inputs.http_listener_v2]]
  service_address = "127.0.0.1:${port}"
  paths = ["/audit/v1/events"]
  methods = ["POST"]
  data_format = "json_v2"
  [[inputs.http_listener_v2.json_v2]]
    measurement_name = "${MEASUREMENT}"
    [[inputs.http_listener_v2.json_v2.object]]
      path = "items"
      timestamp_key = "stageTimestamp"
      timestamp_format = "2006-01-02T15:04:05.999999999Z07:00"
      included_keys = ${toml(['auditID', 'requestURI', 'verb', 'objectRef_resource', 'objectRef_namespace', 'user_username', 'level', 'stage', 'stageTimestamp'])}
      tags = ${toml(['verb', 'objectRef_resource', 'objectRef_namespace', 'user_username', 'level', 'stage'])}
      [inputs.http_listener_v2.json_v2.object.renames]
${Object.entries(renames)
  .map(([from, to]) => `        ${from} = "${to}"`)
  .join('\n')}

[[outputs.influxdb_v2]]
  urls = ["${server.url}"]
  token = "${server.token}"
  organization = "${server.org}"
  bucket = "${bucket}"
`;
}

async function startPeer(
  binary: string,
  server: InfluxServer,
  bucket: string,
  dir: string,
): Promise<Running> {
  const port = await freePort();
  const config = join(dir, 'telegraf.conf');
  writeFileSync(config, telegrafConfig(server, bucket, port));
  const child = spawn(binary, ['--config', config], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env },
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-8_000);
  });
  const url = `http://127.0.0.1:${port}/audit/v1/events`;
  try {
    // A GET is refused (405) once the listener is up.
    await until(
      child,
      () => stderr,
      async () => (await fetch(url)).status === 405,
      30_000,
    );
  } catch (err) {
    await stopper(child)();
    throw err;
  }
  return { pid: child.pid ?? 0, url, stop: stopper(child) };
}

async function countPoints(server: InfluxServer, bucket: string): Promise<number> {
  const rows = await server.query(
    `from(bucket: "${bucket}") |> range(start: 0) ` +
      `|> filter(fn: (r) => r._measurement == "${MEASUREMENT}" and r._field == "audit_id") ` +
      `|> group() |> count()`,
  );
  return Number(rows[0]?._value ?? 0);
}

async function schemaKeys(
  server: InfluxServer,
  bucket: string,
): Promise<{ tagKeys: string[]; fieldKeys: string[] }> {
  const keys = async (fn: string) =>
    (
      await server.query(
        `import "influxdata/influxdb/schema"\n` +
          `schema.${fn}(bucket: "${bucket}", start: 0, predicate: (r) => r._measurement == "${MEASUREMENT}")`,
      )
    )
      .map((row) => String(row._value))
      .filter((key) => !key.startsWith('_'))
      .sort();
  return { tagKeys: await keys('tagKeys'), fieldKeys: await keys('fieldKeys') };
}

async function untilVisible(server: InfluxServer, bucket: string, expected: number): Promise<void> {
  const deadline = Date.now() + VISIBLE_TIMEOUT_MS;
  let seen = 0;
  while (Date.now() < deadline) {
    seen = await countPoints(server, bucket);
    if (seen >= expected) return;
    await sleep(100);
  }
  throw new Error(`bucket ${bucket}: ${seen} of ${expected} points after ${VISIBLE_TIMEOUT_MS} ms`);
}

/** Posts every body, `IN_FLIGHT` at a time; returns each ack's latency in milliseconds. */
async function postAll(url: string, bodies: readonly string[]): Promise<number[]> {
  const latencies: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++] as string;
        const started = performance.now();
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        });
        const text = await res.text();
        if (res.status < 200 || res.status > 299)
          throw new Error(`POST ${url}: ${res.status} ${text.slice(0, 300)}`);
        latencies.push(performance.now() - started);
      }
    }),
  );
  return latencies;
}

function percentile(sorted: readonly number[], q: number): number {
  return Number((sorted[Math.floor(q * (sorted.length - 1))] ?? 0).toFixed(1));
}

async function runSystem(
  system: System,
  start: (bucket: string, dir: string) => Promise<Running>,
  server: InfluxServer,
  bucket: string,
  warmup: readonly string[],
  measured: readonly string[],
): Promise<SystemResult> {
  await server.createBucket(bucket);
  const dir = await mkdtemp(join(tmpdir(), `kube-audit-peer-${system}-`));
  const running = await start(bucket, dir);
  try {
    await postAll(running.url, warmup);
    await untilVisible(server, bucket, warmup.length * BATCH_SIZE);
    const cpuBefore = cpuSeconds(running.pid);
    const influxd = influxdPid(server.url);
    const influxdBefore = cpuSeconds(influxd);
    const started = performance.now();
    const latencies = await postAll(running.url, measured);
    const acked = (performance.now() - started) / 1000;
    await untilVisible(server, bucket, (warmup.length + measured.length) * BATCH_SIZE);
    const visible = (performance.now() - started) / 1000;
    const cpu = cpuSeconds(running.pid) - cpuBefore;
    const influxdCpu = cpuSeconds(influxd) - influxdBefore;
    const peak = peakRssMiB(running.pid);
    const schema = await schemaKeys(server, bucket);
    const events = measured.length * BATCH_SIZE;
    latencies.sort((a, b) => a - b);
    return {
      events,
      ackedEventsPerSecond: Math.round(events / acked),
      eventsPerSecond: Math.round(events / visible),
      cpuSecondsPer100k: Number(((cpu * 100_000) / events).toFixed(3)),
      eventsPerCpuSecond: Math.round(events / cpu),
      ackP50Millis: percentile(latencies, 0.5),
      ackP99Millis: percentile(latencies, 0.99),
      peakRssMiB: peak,
      influxdCpuSecondsPer100k: Number(((influxdCpu * 100_000) / events).toFixed(3)),
      ...schema,
    };
  } finally {
    await running.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

function eventList(items: readonly AuditEvent[]): string {
  return JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items });
}

/** Both systems on the Metadata and RequestResponse workloads. */
export async function runPeerBench(quick: boolean): Promise<PeerResult[]> {
  const telegraf = ensureTelegraf();
  if (!existsSync(join(ROOT, 'dist', 'main.js')))
    throw new Error('dist/main.js missing: run `npm run build`');
  const count = quick ? 250 : 1000;
  const server = await startInfluxd();
  const results: PeerResult[] = [];
  try {
    for (const level of ['Metadata', 'RequestResponse'] as const) {
      const results2: Partial<Record<System, SystemResult>> = {};
      let batchBytes = 0;
      for (const system of ['ours', 'peer'] as const) {
        // Fresh events (own auditIDs and timestamps) for each system, identical in shape.
        const all = batches(level, WARMUP_BATCHES + count, Date.now() * 1000).map(eventList);
        batchBytes = Math.round(all.reduce((n, b) => n + Buffer.byteLength(b), 0) / all.length);
        const start =
          system === 'ours'
            ? (bucket: string, dir: string) => startOurs(server, bucket, dir)
            : (bucket: string, dir: string) => startPeer(telegraf, server, bucket, dir);
        results2[system] = await runSystem(
          system,
          start,
          server,
          `${system}-${level}`,
          all.slice(0, WARMUP_BATCHES),
          all.slice(WARMUP_BATCHES),
        );
      }
      const ours = results2.ours as SystemResult;
      const peer = results2.peer as SystemResult;
      results.push({
        workload: `${level}, 400-event batches, ${IN_FLIGHT} in flight`,
        batch: level,
        batches: count,
        batchBytes,
        ours,
        peer,
        ratioEventsPerCpuSecond: Number(
          (ours.eventsPerCpuSecond / peer.eventsPerCpuSecond).toFixed(2),
        ),
        ratioEventsPerSecond: Number((ours.eventsPerSecond / peer.eventsPerSecond).toFixed(2)),
      });
    }
  } finally {
    await server.dispose();
  }
  return results;
}

if (import.meta.main) {
  const quick = process.argv.includes('--quick');
  const began = performance.now();
  const results = await runPeerBench(quick);
  console.log(
    `\nPeer comparison: this project vs Telegraf ${TELEGRAF_VERSION}, into one influxd\n`,
  );
  console.table(
    results.flatMap((r) =>
      (['ours', 'peer'] as const).map((system) => {
        const s = r[system];
        return {
          workload: r.batch,
          system,
          'events/s (visible)': s.eventsPerSecond.toLocaleString('en-US'),
          'events/s (acked)': s.ackedEventsPerSecond.toLocaleString('en-US'),
          'CPU s/100k': s.cpuSecondsPer100k,
          'ack p50 ms': s.ackP50Millis,
          'ack p99 ms': s.ackP99Millis,
          'peak RSS MiB': s.peakRssMiB,
          'influxd CPU s/100k': s.influxdCpuSecondsPer100k,
        };
      }),
    ),
  );
  const ratioVsPeer = Object.fromEntries(results.map((r) => [r.batch, r.ratioEventsPerCpuSecond]));
  console.log('ours/peer, events per CPU second:', ratioVsPeer);
  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const report = {
    date: new Date().toISOString(),
    node: process.version,
    telegraf: TELEGRAF_VERSION,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    mode: quick ? 'quick' : 'full',
    seconds: Math.round((performance.now() - began) / 1000),
    ratio_vs_peer: ratioVsPeer,
    workloads: results,
  };
  writeFileSync(new URL('bench-results.json', dir), `${JSON.stringify(report, null, 2)}\n`);
  console.log('\nwritten: bench/results/bench-results.json');
}
