/**
 * Peer comparison (SPEC 7): the same audit webhook workload through this project's data path and
 * through Telegraf, both writing into one real influxd on the same machine, one after the other.
 *
 * A workload is an event level blend (Metadata, Request, RequestResponse, or the Mix of 70% / 20% /
 * 10%) and a number of tenants N (1, 10, 100, 1000). Every namespaced event is moved into one of the
 * namespaces `tenant-0` .. `tenant-<N-1>`, in turn; cluster-scoped and non-resource events (4 of the
 * 23 recorded ones) stay as they are and belong to no tenant, so both systems parse them and write
 * nothing for them. Each tenant has a bucket of its own:
 *
 * - ours: `node dist/main.js standalone --insecure` on loopback with N AuditPipelines, one per
 *   tenant namespace (rule `level: Metadata`), each with its own token Secret and bucket, tags verb,
 *   resource, namespace, user, level and stage, and the fields audit_id and request_uri (the
 *   peer's points exactly; workloads named `..., every field` write the schema's every field
 *   instead); the durable spool in a temporary data directory.
 *   No cluster-wide AuditSink: each event belongs to at most one pipeline, as to at most one
 *   Telegraf output.
 * - peer: Telegraf (scripts/build-telegraf.sh) with inputs.http_listener_v2 on /audit/v1/events,
 *   data_format json_v2 turning each EventList item into a point of measurement kubernetes_audit
 *   with the same six tags and the fields audit_id and request_uri, timestamped by stageTimestamp,
 *   and N outputs.influxdb_v2, each with `tagpass namespace = ["tenant-<i>"]` into bucket i: how a
 *   Telegraf user routes tenants to buckets of their own.
 *
 * Both get identical 400-event EventList batches (the recorded apiserver 1.20 events, every event
 * its own auditID and microsecond), two requests in flight (capacity), or for the workloads named
 * `..., 10 batches/s` one batch every 100 ms whatever is in flight (the most one apiserver sends by
 * default), after a warm-up of 10 batches. A run ends when every point is visible in its bucket
 * (counted with Flux). Reported per workload and system: events/s to the acks and to visible
 * points, CPU seconds per 100k events of the server process (utime + stime from /proc/<pid>/stat),
 * events per CPU second, ack latency p50/p99 (of a paced batch, from when it was due), peak RSS
 * (VmHWM), and the ours/peer ratio of events per CPU second. Buckets are deleted after each run so
 * that influxd carries no more than one run's shards.
 *
 * `node bench/peer.ts [--quick]` (needs `npm run build` and Telegraf built) runs only this
 * comparison and writes bench/results/bench-results.json; `npm run bench` runs it after the
 * micro-benchmarks.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, homedir, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AuditEvent } from '../src/audit/types.ts';
import {
  freePort,
  INFLUXD_VERSION,
  type InfluxServer,
  startInfluxd,
} from '../test/harness/influxd.ts';
import { BATCH_SIZE, batches, type LevelMix } from './influxdb.ts';
import {
  shippedNodeFlags,
  shippedNodeOptions,
  startStandalone,
} from '../test/harness/standalone.ts';

export const TELEGRAF_VERSION = 'v1.37.2';
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const MEASUREMENT = 'kubernetes_audit';
const TAGS = ['verb', 'resource', 'namespace', 'user', 'level', 'stage'] as const;
const IN_FLIGHT = 2;
const WARMUP_BATCHES = 10;
/** How long the last points may take to become visible after the last ack. */
const VISIBLE_TIMEOUT_MS = 300_000;
/** Flux counts and bucket calls in flight at once: enough to keep up, few enough for 2 cores. */
const INFLUX_CALLS_IN_FLIGHT = 4;
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

export type System = 'ours' | 'peer';

/** One workload of the matrix. */
export interface Workload {
  /** `<levels>, <n> sink(s)`: the key of `ratio_vs_peer`. */
  readonly name: string;
  readonly levels: LevelMix;
  /** Tenants, each with its own sink and bucket. */
  readonly sinks: number;
  /** Measured batches of 400 events, after the warm-up. */
  readonly batches: number;
  /**
   * The fields our points carry: the peer's two (`audit_id`, `request_uri`), so that both write the
   * same points, or every field of the schema (16 with these events), the default of a sink.
   */
  readonly fields: 'peer' | 'every';
  /**
   * Batches per second offered at a steady pace, each sent when due whatever is still in flight
   * (an open loop, as the apiserver's webhook batching sends: at most 10 batches a second by
   * default, `--audit-webhook-batch-throttle-qps`); absent, {@link IN_FLIGHT} batches at a time
   * as fast as they are answered, which measures capacity.
   */
  readonly pace?: number;
}

/** The fields Telegraf's json_v2 configuration below writes; ours are set to the same. */
export const PEER_FIELDS = ['audit_id', 'request_uri'] as const;

export function workload(
  levels: LevelMix,
  sinks: number,
  count: number,
  fields: Workload['fields'] = 'peer',
  pace?: number,
): Workload {
  const paced = pace === undefined ? '' : `, ${pace} batches/s`;
  return {
    name: `${levels}, ${sinks} sink${sinks === 1 ? '' : 's'}${fields === 'every' ? ', every field' : ''}${paced}`,
    levels,
    sinks,
    batches: count,
    fields,
    ...(pace === undefined ? {} : { pace }),
  };
}

/** The most batches one kube-apiserver's audit webhook sends per second by default. */
export const APISERVER_PACE = 10;

/**
 * The matrix. Full: every level blend with one sink, and the Mix with 10, 100 and 1000 sinks, with
 * fewer batches at 100 and 1000 sinks, where the rate is lower and the warm-up long (influxd
 * creates a shard per bucket on its first write); then Metadata and RequestResponse with one sink
 * writing every field of the schema, as a sink does by default; then three at the pace one
 * apiserver sends at most (its default throttle), for the acknowledgement's latency, the delay
 * until visible and the memory at a real cluster's rate rather than at capacity. Quick: four of
 * them with fewer batches, within three minutes on two cores.
 */
export function workloads(quick: boolean): Workload[] {
  if (quick) {
    return [
      workload('Metadata', 1, 250),
      workload('RequestResponse', 1, 250),
      workload('Mix', 100, 150),
      workload('Metadata', 1, 100, 'peer', APISERVER_PACE),
    ];
  }
  return [
    workload('Metadata', 1, 1000),
    workload('Request', 1, 1000),
    workload('RequestResponse', 1, 1000),
    workload('Mix', 1, 1000),
    workload('Mix', 10, 1000),
    workload('Mix', 100, 500),
    workload('Mix', 1000, 150),
    workload('Metadata', 1, 1000, 'every'),
    workload('RequestResponse', 1, 1000, 'every'),
    workload('Metadata', 1, 300, 'peer', APISERVER_PACE),
    workload('RequestResponse', 1, 300, 'peer', APISERVER_PACE),
    workload('Mix', 100, 300, 'peer', APISERVER_PACE),
  ];
}

/** One system on one workload. */
export interface SystemResult {
  /** Events posted in the measured part (warm-up excluded), dropped ones included. */
  readonly events: number;
  /** Points the measured events put into the buckets. */
  readonly points: number;
  /** Events over the time from the first post to the last ack. */
  readonly ackedEventsPerSecond: number;
  /** Events over the time from the first post until every point is visible in its bucket. */
  readonly eventsPerSecond: number;
  readonly cpuSecondsPer100k: number;
  readonly eventsPerCpuSecond: number;
  readonly ackP50Millis: number;
  readonly ackP99Millis: number;
  readonly peakRssMiB: number;
  /** Seconds from the last ack until every point was visible. */
  readonly visibleAfterAckSeconds: number;
  /**
   * CPU seconds per 100k events of influxd over the same window, from the first post until every
   * point is visible, less the Flux counts polled meanwhile: the cost of the points each one writes.
   */
  readonly influxdCpuSecondsPer100k: number;
  /** The estimate of what those counts cost influxd, taken out of the figure above. */
  readonly influxdCountsCpuSeconds: number;
  /**
   * influxd's CPU seconds per second from the first post to the last ack: how much of the shared
   * cores it got while the system took the load.
   */
  readonly influxdCoresUntilAck: number;
  /** Tag and field keys found in the first bucket, to check that both write comparable points. */
  readonly tagKeys: readonly string[];
  readonly fieldKeys: readonly string[];
}

/** One workload: both systems and their ratio. */
export interface PeerResult {
  readonly workload: string;
  readonly levels: LevelMix;
  readonly sinks: number;
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

export function ensureTelegraf(): string {
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

/** Runs `fn` over `items`, at most `limit` at a time, keeping their order. */
async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i] as T);
      }
    }),
  );
  return out;
}

/** A server under test: its process, its receiver URL, and how to stop it. */
export interface Running {
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

/** Starts `command`, keeping the tail of its stderr, and waits until `ready` says so. */
async function launch(
  command: string,
  args: readonly string[],
  url: string,
  ready: (stderr: string) => Promise<boolean>,
): Promise<Running> {
  const child = spawn(command, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env },
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-8_000);
  });
  try {
    await until(
      child,
      () => stderr,
      () => ready(stderr),
      60_000,
    );
  } catch (err) {
    await stopper(child)();
    throw err;
  }
  return { pid: child.pid ?? 0, url, stop: stopper(child) };
}

function tenant(i: number): string {
  return `tenant-${i}`;
}

function yamlString(value: string): string {
  return JSON.stringify(value);
}

/**
 * One token Secret and one AuditPipeline per tenant namespace, pipeline i writing to bucket i, with
 * `fields` (every field when undefined).
 */
function ourManifests(
  server: InfluxServer,
  buckets: readonly string[],
  fields: readonly string[] | undefined,
): string {
  return buckets
    .map((bucket, i) =>
      [
        'apiVersion: v1',
        'kind: Secret',
        'metadata:',
        '  name: influx-token',
        `  namespace: ${tenant(i)}`,
        'stringData:',
        `  token: ${yamlString(server.token)}`,
        '---',
        'apiVersion: kube-audit.dev/v1alpha1',
        'kind: AuditPipeline',
        'metadata:',
        '  name: trail',
        `  namespace: ${tenant(i)}`,
        'spec:',
        '  policy:',
        '    rules:',
        '      - level: Metadata',
        '  influxdb:',
        `    url: ${yamlString(server.url)}`,
        `    org: ${yamlString(server.org)}`,
        `    bucket: ${yamlString(bucket)}`,
        `    measurement: ${MEASUREMENT}`,
        `    tags: [${TAGS.join(', ')}]`,
        ...(fields === undefined ? [] : [`    fields: [${fields.join(', ')}]`]),
        '    tokenSecretRef: {name: influx-token, key: token}',
        '',
      ].join('\n'),
    )
    .join('---\n');
}

/**
 * Starts `standalone` with one AuditPipeline per bucket writing `fields` (every field when
 * undefined), under `nodeOptions` and the `node` flags of the image's ENTRYPOINT.
 */
export async function startOurs(
  server: InfluxServer,
  buckets: readonly string[],
  dir: string,
  fields: readonly string[] | undefined,
  nodeOptions = shippedNodeOptions(),
): Promise<Running> {
  const manifests = join(dir, 'pipelines.yaml');
  writeFileSync(manifests, ourManifests(server, buckets, fields));
  const running = await startStandalone({
    manifests,
    port: await freePort(),
    dataDir: join(dir, 'data'),
    nodeOptions,
    nodeFlags: shippedNodeFlags(),
    // A thousand sinks open a thousand spools before the receiver is ready.
    readyTimeoutMs: 120_000,
  });
  return {
    pid: running.pid,
    url: `${running.url}/audit/v1/events`,
    stop: async () => {
      await running.stop('SIGTERM');
    },
  };
}

function telegrafConfig(
  server: InfluxServer,
  buckets: readonly string[],
  port: number,
  bufferLimit: number,
): string {
  const renames = {
    auditID: 'audit_id',
    requestURI: 'request_uri',
    objectRef_resource: 'resource',
    objectRef_namespace: 'namespace',
    user_username: 'user',
  };
  const toml = (values: readonly string[]) =>
    `[${values.map((v) => JSON.stringify(v)).join(', ')}]`;
  const outputs = buckets.map(
    (bucket, i) => `
[[outputs.influxdb_v2]]
  urls = ["${server.url}"]
  token = "${server.token}"
  organization = "${server.org}"
  bucket = "${bucket}"
  [outputs.influxdb_v2.tagpass]
    namespace = ["${tenant(i)}"]
`,
  );
  return `
[agent]
  interval = "10s"
  round_interval = false
  # As the sink: writes of up to 2,500 points, at least every second.
  metric_batch_size = 2500
  flush_interval = "1s"
  flush_jitter = "0s"
  # Per output, large enough that no point is dropped: the run waits for every one in the bucket.
  metric_buffer_limit = ${bufferLimit}
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
${outputs.join('')}`;
}

export async function startPeer(
  binary: string,
  server: InfluxServer,
  buckets: readonly string[],
  dir: string,
  bufferLimit: number,
): Promise<Running> {
  const port = await freePort();
  const config = join(dir, 'telegraf.conf');
  writeFileSync(config, telegrafConfig(server, buckets, port, bufferLimit));
  const url = `http://127.0.0.1:${port}/audit/v1/events`;
  // A GET is refused (405) once the listener is up.
  return launch(binary, ['--config', config], url, async () => (await fetch(url)).status === 405);
}

/** influxd's REST API with the operator token. */
async function influxApi(server: InfluxServer, method: string, path: string): Promise<void> {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Token ${server.token}` },
  });
  await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status}`);
}

/** Buckets counted by one Flux query, each in a result of its own. */
const BUCKETS_PER_QUERY = 50;

/** Points in each bucket, counted by their `audit_id` field, all in one query. */
async function countPoints(server: InfluxServer, buckets: readonly string[]): Promise<number[]> {
  const rows = await server.query(
    buckets
      .map(
        (bucket, i) =>
          `from(bucket: "${bucket}") |> range(start: 0) ` +
          `|> filter(fn: (r) => r._measurement == "${MEASUREMENT}" and r._field == "audit_id") ` +
          `|> group() |> count() |> yield(name: "b${i}")`,
      )
      .join('\n'),
  );
  const counts = new Array<number>(buckets.length).fill(0);
  for (const row of rows) counts[Number(String(row.result).slice(1))] = Number(row._value ?? 0);
  return counts;
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

/**
 * Waits until bucket i holds `expected[i]` points, polling only the buckets still short; returns
 * how many bucket counts it asked influxd for.
 */
async function untilVisible(
  server: InfluxServer,
  buckets: readonly string[],
  expected: readonly number[],
): Promise<number> {
  const deadline = Date.now() + VISIBLE_TIMEOUT_MS;
  let pending = buckets.map((_, i) => i).filter((i) => (expected[i] ?? 0) > 0);
  let counted = 0;
  while (Date.now() < deadline) {
    counted += pending.length;
    const chunks = inQueries(pending);
    const seen = (
      await mapLimit(chunks, INFLUX_CALLS_IN_FLIGHT, (chunk) =>
        countPoints(
          server,
          chunk.map((i) => buckets[i] as string),
        ),
      )
    ).flat();
    pending = pending.filter((i, k) => (seen[k] ?? 0) < (expected[i] ?? 0));
    if (pending.length === 0) return counted;
    await sleep(100);
  }
  const first = pending[0] ?? 0;
  throw new Error(
    `${pending.length} buckets short after ${VISIBLE_TIMEOUT_MS} ms, e.g. ${buckets[first]} ` +
      `expecting ${expected[first]} points`,
  );
}

/** `items` cut into the groups that one count query takes ({@link BUCKETS_PER_QUERY}). */
function inQueries<T>(items: readonly T[]): T[][] {
  return Array.from({ length: Math.ceil(items.length / BUCKETS_PER_QUERY) }, (_, c) =>
    items.slice(c * BUCKETS_PER_QUERY, (c + 1) * BUCKETS_PER_QUERY),
  );
}

/**
 * influxd's CPU seconds per bucket counted, once every point is in: the median of three rounds
 * counting every bucket as {@link untilVisible} does. The counts polled while a run's last points
 * trail its acks cost influxd CPU that is not the points' (a few tens of milliseconds per query),
 * and the system whose points trail longer is polled longer.
 */
async function countCost(
  server: InfluxServer,
  influxd: number,
  buckets: readonly string[],
): Promise<number> {
  const rounds: number[] = [];
  for (let r = 0; r < 3; r++) {
    const before = cpuSeconds(influxd);
    await mapLimit(inQueries(buckets), INFLUX_CALLS_IN_FLIGHT, (chunk) =>
      countPoints(server, chunk),
    );
    rounds.push(cpuSeconds(influxd) - before);
  }
  rounds.sort((a, b) => a - b);
  return (rounds[1] as number) / buckets.length;
}

/**
 * Posts every body, `IN_FLIGHT` at a time, or with `pace` one every `1 / pace` seconds whatever
 * is in flight; returns each ack's latency in milliseconds. A paced batch's latency counts from
 * when it was due, so that a client running late adds to it rather than hiding it.
 */
async function postAll(url: string, bodies: readonly string[], pace?: number): Promise<number[]> {
  if (pace !== undefined) {
    const start = performance.now();
    return Promise.all(
      bodies.map(async (body, i) => {
        const due = start + (i * 1000) / pace;
        await sleep(Math.max(due - performance.now(), 0));
        await post(url, body);
        return performance.now() - due;
      }),
    );
  }
  const latencies: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++] as string;
        const started = performance.now();
        await post(url, body);
        latencies.push(performance.now() - started);
      }
    }),
  );
  return latencies;
}

async function post(url: string, body: string): Promise<void> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  const text = await res.text();
  if (res.status < 200 || res.status > 299)
    throw new Error(`POST ${url}: ${res.status} ${text.slice(0, 300)}`);
}

function percentile(sorted: readonly number[], q: number): number {
  return Number((sorted[Math.floor(q * (sorted.length - 1))] ?? 0).toFixed(1));
}

function eventList(items: readonly AuditEvent[]): string {
  return JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items });
}

/** A workload's request bodies, and the points each tenant's bucket gets from them. */
export interface Traffic {
  readonly warmup: readonly string[];
  readonly measured: readonly string[];
  /** Points per tenant after the warm-up, and after the whole run. */
  readonly warmupPoints: readonly number[];
  readonly totalPoints: readonly number[];
}

/**
 * Fresh events (own auditIDs and timestamps) for one system, identical in shape for both. Every
 * namespaced event moves into the next tenant namespace in turn, in its objectRef and in its
 * request URI (which the apiserver's policy, and so the sink's scope, reads for a create).
 */
export function traffic(w: Workload): Traffic {
  const all = batches(w.levels, WARMUP_BATCHES + w.batches, Date.now() * 1000);
  const points = new Array<number>(w.sinks).fill(0);
  let warmupPoints: number[] = [];
  let next = 0;
  const bodies = all.map((batch, b) => {
    if (b === WARMUP_BATCHES) warmupPoints = [...points];
    for (const e of batch) {
      if (e.objectRef?.namespace === undefined) continue;
      const t = next++ % w.sinks;
      const ns = tenant(t);
      e.objectRef = { ...e.objectRef, namespace: ns };
      e.requestURI = e.requestURI.replace(/\/namespaces\/[^/?]+/, `/namespaces/${ns}`);
      points[t] = (points[t] ?? 0) + 1;
    }
    return eventList(batch);
  });
  return {
    warmup: bodies.slice(0, WARMUP_BATCHES),
    measured: bodies.slice(WARMUP_BATCHES),
    warmupPoints,
    totalPoints: points,
  };
}

function sum(values: readonly number[]): number {
  return values.reduce((n, v) => n + v, 0);
}

export async function runSystem(
  system: System,
  w: Workload,
  start: (buckets: readonly string[], dir: string) => Promise<Running>,
  server: InfluxServer,
  load: Traffic,
  progress: (line: string) => void,
  outageMs?: number,
): Promise<SystemResult> {
  const t0 = performance.now();
  const since = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
  const slug = `${system}-${w.levels}-${w.sinks}`.toLowerCase();
  const buckets = Array.from({ length: w.sinks }, (_, i) => `${slug}-${i}`);
  const ids = await mapLimit(buckets, INFLUX_CALLS_IN_FLIGHT, (b) => server.createBucket(b));
  const dir = await mkdtemp(join(tmpdir(), `kube-audit-peer-${system}-`));
  try {
    progress(`  ${system}: ${w.sinks} buckets created at ${since()}`);
    const running = await start(buckets, dir);
    try {
      progress(`  ${system}: started at ${since()}`);
      await postAll(running.url, load.warmup);
      await untilVisible(server, buckets, load.warmupPoints);
      progress(`  ${system}: warm-up visible at ${since()}`);
      const cpuBefore = cpuSeconds(running.pid);
      const influxd = influxdPid(server.url);
      const influxdBefore = cpuSeconds(influxd);
      // An outage: influxd stops for the measured batches and `outageMs` more, then comes back
      // (as another process, whose CPU is not counted).
      if (outageMs !== undefined) await server.stop();
      const started = performance.now();
      let latencies: number[];
      let acked: number;
      let influxdAtAck = influxdBefore;
      try {
        latencies = await postAll(running.url, load.measured, w.pace);
        acked = (performance.now() - started) / 1000;
        if (outageMs === undefined) influxdAtAck = cpuSeconds(influxd);
        if (outageMs !== undefined) await sleep(outageMs);
      } finally {
        if (outageMs !== undefined) await server.restart();
      }
      // Visible after the last ack, or after influxd came back from an outage.
      const from = outageMs === undefined ? acked : (performance.now() - started) / 1000;
      const counted = await untilVisible(server, buckets, load.totalPoints);
      const visible = (performance.now() - started) / 1000;
      // Until every point is stored: a system whose points trail its acks has influxd store them
      // after the last ack. Less what the counts polled meanwhile cost it (estimated once every
      // point is in, so a little more than they cost while points were still arriving).
      const influxdCpu = outageMs === undefined ? cpuSeconds(influxd) - influxdBefore : 0;
      const countsCpu =
        outageMs === undefined
          ? Math.min(influxdCpu, counted * (await countCost(server, influxd, buckets)))
          : 0;
      progress(
        `  ${system}: acked after ${acked.toFixed(1)} s, visible after ${visible.toFixed(1)} s`,
      );
      const cpu = cpuSeconds(running.pid) - cpuBefore;
      const peak = peakRssMiB(running.pid);
      const schema = await schemaKeys(server, buckets[0] as string);
      const events = load.measured.length * BATCH_SIZE;
      latencies.sort((a, b) => a - b);
      return {
        events,
        points: sum(load.totalPoints) - sum(load.warmupPoints),
        ackedEventsPerSecond: Math.round(events / acked),
        eventsPerSecond: Math.round(events / visible),
        cpuSecondsPer100k: Number(((cpu * 100_000) / events).toFixed(3)),
        eventsPerCpuSecond: Math.round(events / cpu),
        ackP50Millis: percentile(latencies, 0.5),
        ackP99Millis: percentile(latencies, 0.99),
        peakRssMiB: peak,
        visibleAfterAckSeconds: Number((visible - from).toFixed(1)),
        influxdCpuSecondsPer100k: Number(
          (((influxdCpu - countsCpu) * 100_000) / events).toFixed(3),
        ),
        influxdCountsCpuSeconds: Number(countsCpu.toFixed(3)),
        influxdCoresUntilAck:
          outageMs === undefined ? Number(((influxdAtAck - influxdBefore) / acked).toFixed(2)) : 0,
        ...schema,
      };
    } finally {
      await running.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
    await mapLimit(ids, INFLUX_CALLS_IN_FLIGHT, (id) =>
      influxApi(server, 'DELETE', `/api/v2/buckets/${id}`),
    );
  }
}

/** The fields our pipelines write on workload `w`: undefined for every field. */
export function oursFields(w: Workload): readonly string[] | undefined {
  return w.fields === 'peer' ? PEER_FIELDS : undefined;
}

/** Fails the run when the two systems did not write points of the same tag and field keys. */
function assertSamePoints(w: Workload, ours: SystemResult, peer: SystemResult): void {
  const keys = (r: SystemResult) => JSON.stringify([r.tagKeys, r.fieldKeys]);
  if (keys(ours) !== keys(peer)) {
    throw new Error(`${w.name}: the points differ: ours ${keys(ours)}, Telegraf's ${keys(peer)}`);
  }
}

/** Both systems on every workload of `matrix`, into one influxd. */
export async function runPeerBench(
  matrix: readonly Workload[],
  progress: (line: string) => void = (line) => console.error(line),
): Promise<PeerResult[]> {
  const telegraf = ensureTelegraf();
  if (!existsSync(join(ROOT, 'dist', 'main.js')))
    throw new Error('dist/main.js missing: run `npm run build`');
  const server = await startInfluxd();
  const results: PeerResult[] = [];
  try {
    for (const w of matrix) {
      const measured: Partial<Record<System, SystemResult>> = {};
      let batchBytes = 0;
      for (const system of ['ours', 'peer'] as const) {
        const began = performance.now();
        const load = traffic(w);
        const bodies = [...load.warmup, ...load.measured];
        batchBytes = Math.round(sum(bodies.map((b) => Buffer.byteLength(b))) / bodies.length);
        // Room per Telegraf output for every point of its tenant, twice over, and at least
        // Telegraf's default of 10,000. Telegraf allocates each output's buffer up front, so a
        // larger floor would only add memory (1,000 outputs of 100,000 metrics hold 1.6 GB).
        const bufferLimit = Math.max(10_000, 2 * Math.max(...load.totalPoints));
        const start =
          system === 'ours'
            ? (buckets: readonly string[], dir: string) =>
                startOurs(server, buckets, dir, oursFields(w))
            : (buckets: readonly string[], dir: string) =>
                startPeer(telegraf, server, buckets, dir, bufferLimit);
        const result = await runSystem(system, w, start, server, load, progress);
        measured[system] = result;
        progress(
          `${w.name}, ${system}: ${result.eventsPerCpuSecond.toLocaleString('en-US')} events/CPU-s, ` +
            `${result.eventsPerSecond.toLocaleString('en-US')} events/s visible ` +
            `(${Math.round((performance.now() - began) / 1000)} s)`,
        );
      }
      const ours = measured.ours as SystemResult;
      const peer = measured.peer as SystemResult;
      if (w.fields === 'peer') assertSamePoints(w, ours, peer);
      results.push({
        workload: w.name,
        levels: w.levels,
        sinks: w.sinks,
        batches: w.batches,
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

/** Prints one row per workload and system. */
export function printPeerResults(results: readonly PeerResult[]): void {
  console.log(
    `\nPeer comparison: this project vs Telegraf ${TELEGRAF_VERSION}, into one influxd ${INFLUXD_VERSION}\n`,
  );
  console.table(
    results.flatMap((r) =>
      (['ours', 'peer'] as const).map((system) => {
        const s = r[system];
        return {
          workload: r.workload,
          system,
          'events/s (visible)': s.eventsPerSecond.toLocaleString('en-US'),
          'events/s (acked)': s.ackedEventsPerSecond.toLocaleString('en-US'),
          'CPU s/100k': s.cpuSecondsPer100k,
          'events/CPU-s': s.eventsPerCpuSecond.toLocaleString('en-US'),
          'ack p50 ms': s.ackP50Millis,
          'ack p99 ms': s.ackP99Millis,
          'peak RSS MiB': s.peakRssMiB,
          'influxd CPU s/100k': s.influxdCpuSecondsPer100k,
          'influxd cores until ack': s.influxdCoresUntilAck,
          'ours/peer': system === 'ours' ? r.ratioEventsPerCpuSecond : '',
        };
      }),
    ),
  );
}

/** The machine and versions a report was measured with. */
export function environment(quick: boolean): Record<string, unknown> {
  return {
    date: new Date().toISOString(),
    mode: quick ? 'quick' : 'full',
    machine: {
      cpu: cpus()[0]?.model ?? 'unknown',
      cores: cpus().length,
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      kernel: release(),
    },
    versions: { node: process.version, telegraf: TELEGRAF_VERSION, influxd: INFLUXD_VERSION },
  };
}

/** The report's peer part: `ratio_vs_peer` (workload → ours/peer events per CPU second) and rows. */
export function peerReport(results: readonly PeerResult[]): Record<string, unknown> {
  return {
    ratio_vs_peer: Object.fromEntries(results.map((r) => [r.workload, r.ratioEventsPerCpuSecond])),
    workloads: results,
  };
}

/** Where `npm run bench` and `npm run bench:peer` write their report. */
export const RESULTS_FILE = new URL('./results/bench-results.json', import.meta.url);

/** Writes the report as JSON. */
export function writeReport(report: Record<string, unknown>): void {
  mkdirSync(new URL('./', RESULTS_FILE), { recursive: true });
  writeFileSync(RESULTS_FILE, `${JSON.stringify(report, null, 2)}\n`);
}

if (import.meta.main) {
  const quick = process.argv.includes('--quick');
  const began = performance.now();
  const results = await runPeerBench(workloads(quick));
  printPeerResults(results);
  writeReport({
    ...environment(quick),
    seconds: Math.round((performance.now() - began) / 1000),
    ...peerReport(results),
  });
  console.log('\nwritten: bench/results/bench-results.json');
}
