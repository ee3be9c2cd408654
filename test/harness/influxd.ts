/**
 * A real InfluxDB server for integration tests and benchmarks: builds `influxd` once per machine
 * (scripts/build-influxd.sh, cached by version outside the repository), then starts it on
 * 127.0.0.1 (or another address of this machine, e.g. a Kubernetes node's, for pods to reach)
 * with a free port and its own temporary data directory, onboarded with an org, a bucket and an
 * operator token.
 *
 * Every started server is recorded in a directory of its own under {@link RUN_ROOT}, with the
 * pid of the test process that owns it; the process kills its servers when it exits, and the
 * vitest global setup reaps servers whose owner died without doing so (a crashed or killed worker).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InfluxDB } from '@influxdata/influxdb-client';
import { TAG_NAMES } from '../../src/outputs/influxdb/schema.ts';
import type { InfluxDestination } from '../../src/outputs/influxdb/spec.ts';
import { alive, trackServer } from './processes.ts';

/** The InfluxDB version the tests run against; change together with the build script's default. */
export const INFLUXD_VERSION = 'v2.7.12';

const BUILD_SCRIPT = fileURLToPath(new URL('../../scripts/build-influxd.sh', import.meta.url));

/** Where started servers keep their data and pid files: one directory per server. */
export const RUN_ROOT = join(tmpdir(), 'kube-audit-operator-influxd');

/** The onboarding password; InfluxDB wants at least 8 characters. Test-only. */
const ADMIN_PASSWORD = 'admin-password';

/** A Flux result row: column name to value, typed by the column's data type. */
export type Row = Record<string, unknown>;

/** One permission of a token created with {@link InfluxServer.createToken}. */
export interface Permission {
  readonly action: 'read' | 'write';
  /** A bucket name of the server's org. */
  readonly bucket: string;
}

/** A running (or stopped, restartable) influxd with an onboarded org. */
export interface InfluxServer {
  /** `http://<host>:<port>` (127.0.0.1 unless asked otherwise); stays the same across {@link restart}. */
  readonly url: string;
  readonly org: string;
  readonly orgID: string;
  /** The bucket made at onboarding, retention infinite. */
  readonly bucket: string;
  /** An all-access operator token. */
  readonly token: string;
  /** Creates a bucket in the org; retention 0 keeps data forever. Returns its id. */
  createBucket(name: string, retentionSeconds?: number): Promise<string>;
  /** Creates a token with exactly these permissions. */
  createToken(permissions: readonly Permission[]): Promise<string>;
  /** Runs a Flux query with the operator token and collects every row. */
  query(flux: string): Promise<Row[]>;
  /** SIGTERM and wait for exit; the data stays for {@link restart}. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit, as a crash would; the data stays. */
  kill(): Promise<void>;
  /** Starts the server again on the same port and data, after stop or kill. */
  restart(): Promise<void>;
  /**
   * SIGSTOP, as a hung server: its port still takes connections (the kernel accepts them) and
   * nothing is answered until {@link resume}.
   */
  pause(): void;
  /** SIGCONT after {@link pause}: the server answers what waited. */
  resume(): void;
  /** Stops the server and removes its data. Safe to call more than once. */
  dispose(): Promise<void>;
}

let binary: Promise<string> | undefined;

/** Where the build script puts the binary (the same rule as the script's). */
export function cachedInfluxdPath(version = INFLUXD_VERSION): string {
  const cache = process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
  const root = process.env.INFLUXD_CACHE_ROOT ?? join(cache, 'kube-audit-operator', 'influxd');
  return join(root, version, 'influxd');
}

/** Whether {@link ensureInfluxd} would return at once: `$INFLUXD_BIN` is set, or the build is cached. */
export function influxdCached(): boolean {
  const override = process.env.INFLUXD_BIN;
  return (override !== undefined && override !== '') || existsSync(cachedInfluxdPath());
}

/**
 * The influxd binary: `$INFLUXD_BIN` when set (any 2.x, or 1.8 with flux-enabled for queries),
 * otherwise built by scripts/build-influxd.sh, which returns at once when the binary is cached.
 */
export function ensureInfluxd(): Promise<string> {
  const override = process.env.INFLUXD_BIN;
  if (override !== undefined && override !== '') return Promise.resolve(override);
  binary ??= new Promise<string>((resolve, reject) => {
    execFile(
      'bash',
      [BUILD_SCRIPT],
      // No timeout: a cold build takes minutes, and the global setup reports its duration.
      { env: { ...process.env, INFLUXD_VERSION }, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err !== null) {
          reject(new Error(`scripts/build-influxd.sh failed: ${err.message}\n${stderr}`));
          return;
        }
        const path = stdout.trim().split('\n').at(-1) ?? '';
        if (!existsSync(path)) {
          reject(new Error(`scripts/build-influxd.sh printed no binary path:\n${stdout}`));
          return;
        }
        resolve(path);
      },
    );
  });
  return binary;
}

/** Record of one server on disk, for the reaper. */
interface ServerRecord {
  readonly owner: number;
  readonly pid: number;
  readonly dataDir: string;
}

function writeRecord(dir: string, record: ServerRecord): void {
  writeFileSync(join(dir, 'server.json'), JSON.stringify(record));
}

/**
 * Kills servers whose owning test process is gone and removes their directories. Checks that the
 * recorded pid still runs influxd on that data directory before killing it, so a reused pid is
 * never hit. Returns how many servers it reaped.
 */
export function reapOrphanedServers(): number {
  if (!existsSync(RUN_ROOT)) return 0;
  let reaped = 0;
  for (const name of readdirSync(RUN_ROOT)) {
    const dir = join(RUN_ROOT, name);
    let record: ServerRecord;
    try {
      record = JSON.parse(readFileSync(join(dir, 'server.json'), 'utf8')) as ServerRecord;
    } catch {
      // No record yet: being created right now, or its owner died before influxd started. The
      // directory name starts with the owner's pid.
      const owner = Number(name.split('-')[0]);
      if (Number.isInteger(owner) && owner > 0 && !alive(owner)) {
        rmSync(dir, { recursive: true, force: true });
      }
      continue;
    }
    if (alive(record.owner)) continue;
    try {
      const cmdline = readFileSync(`/proc/${record.pid}/cmdline`, 'utf8');
      if (cmdline.includes(record.dataDir)) process.kill(record.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
    reaped++;
  }
  return reaped;
}

// ---- starting a server ----------------------------------------------------------------------

/** A free TCP port on 127.0.0.1, as the kernel hands out for port 0. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** 30 s: a fresh influxd answers /health in about 0.3 s; a loaded CI machine takes far longer. */
const START_TIMEOUT_MS = 30_000;

/** 10 s: influxd stops on SIGTERM in about 1.5 s. */
const STOP_TIMEOUT_MS = 10_000;

/** One influxd process on a fixed port and data directory; started again by restart. */
class InfluxdProcess {
  readonly #binary: string;
  readonly #dir: string;
  readonly #host: string;
  readonly #port: number;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #log = '';

  constructor(binaryPath: string, dir: string, host: string, port: number) {
    this.#binary = binaryPath;
    this.#dir = dir;
    this.#host = host;
    this.#port = port;
  }

  get url(): string {
    return `http://${this.#host}:${this.#port}`;
  }

  async start(): Promise<void> {
    const data = join(this.#dir, 'data');
    mkdirSync(data, { recursive: true });
    // influxd reads INFLUXD_* variables and a config file in its working directory: give it
    // neither, so the flags below are the whole configuration.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('INFLUXD_')),
    );
    const child = spawn(
      this.#binary,
      [
        '--http-bind-address',
        `${this.#host}:${this.#port}`,
        '--bolt-path',
        join(data, 'influxd.bolt'),
        '--engine-path',
        join(data, 'engine'),
        '--sqlite-path',
        join(data, 'influxd.sqlite'),
        '--reporting-disabled',
        '--log-level',
        'error',
      ],
      { cwd: this.#dir, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.#child = child;
    this.#log = '';
    const keep = (chunk: Buffer) => {
      // The last few KiB only: enough to say why a start failed.
      this.#log = (this.#log + chunk.toString('utf8')).slice(-8192);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    if (child.pid === undefined) throw new Error(`cannot start ${this.#binary}`);
    trackServer(child, this.#dir, this.#exited);
    writeRecord(this.#dir, { owner: process.pid, pid: child.pid, dataDir: data });

    const deadline = Date.now() + START_TIMEOUT_MS;
    let exited = false;
    void this.#exited.then(() => (exited = true));
    for (;;) {
      if (exited) throw new Error(`influxd exited during start-up:\n${this.#log}`);
      try {
        const res = await fetch(`${this.url}/health`);
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await this.signal('SIGKILL');
        throw new Error(
          `influxd did not answer /health within ${START_TIMEOUT_MS} ms:\n${this.#log}`,
        );
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async signal(signal: 'SIGTERM' | 'SIGKILL' | 'SIGSTOP' | 'SIGCONT'): Promise<void> {
    const child = this.#child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    if (signal === 'SIGSTOP' || signal === 'SIGCONT') return;
    // A paused server takes SIGTERM only once it runs again.
    child.kill('SIGCONT');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.#exited;
    clearTimeout(timer);
  }
}

let serial = 0;

/** Where {@link startInfluxd} listens. */
export interface InfluxdOptions {
  /** An address of this machine; default 127.0.0.1. */
  readonly host?: string;
}

/** Starts a fresh influxd and onboards it; call {@link InfluxServer.dispose} when done. */
export async function startInfluxd(options: InfluxdOptions = {}): Promise<InfluxServer> {
  const binaryPath = await ensureInfluxd();
  mkdirSync(RUN_ROOT, { recursive: true });
  const dir = await mkdtemp(join(RUN_ROOT, `${process.pid}-${serial++}-`));
  let proc: InfluxdProcess | undefined;
  try {
    // The port is free when asked for but could be taken before influxd binds it: try again.
    for (let attempt = 1; ; attempt++) {
      proc = new InfluxdProcess(binaryPath, dir, options.host ?? '127.0.0.1', await freePort());
      try {
        await proc.start();
        break;
      } catch (err) {
        if (attempt === 3) throw err;
      }
    }
    return await onboard(proc, dir);
  } catch (err) {
    await proc?.signal('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function onboard(proc: InfluxdProcess, dir: string): Promise<InfluxServer> {
  const url = proc.url;
  const org = 'kube-audit';
  const bucket = 'audit';
  const token = `operator-token-${process.pid}-${serial}`;
  const res = await fetch(`${url}/api/v2/setup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      username: 'admin',
      password: ADMIN_PASSWORD,
      org,
      bucket,
      token,
      retentionPeriodSeconds: 0,
    }),
  });
  if (!res.ok) throw new Error(`onboarding failed: ${res.status} ${await res.text()}`);
  const setup = (await res.json()) as { org: { id: string } };
  const orgID = setup.org.id;
  const auth = { authorization: `Token ${token}`, 'content-type': 'application/json' };
  let disposed = false;

  async function api<T>(path: string, body: unknown): Promise<T> {
    const r = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify(body),
    });
    if (!r.ok) throw new Error(`POST ${path}: ${r.status} ${await r.text()}`);
    return (await r.json()) as T;
  }

  async function bucketID(name: string): Promise<string> {
    const r = await fetch(`${url}/api/v2/buckets?orgID=${orgID}&name=${encodeURIComponent(name)}`, {
      headers: auth,
    });
    const found = (await r.json()) as { buckets?: { id: string }[] };
    const id = found.buckets?.[0]?.id;
    if (id === undefined) throw new Error(`no bucket ${name}`);
    return id;
  }

  return {
    url,
    org,
    orgID,
    bucket,
    token,
    async createBucket(name, retentionSeconds = 0) {
      const created = await api<{ id: string }>('/api/v2/buckets', {
        orgID,
        name,
        retentionRules:
          retentionSeconds === 0 ? [] : [{ type: 'expire', everySeconds: retentionSeconds }],
      });
      return created.id;
    },
    async createToken(permissions) {
      const resolved = await Promise.all(
        permissions.map(async (p) => ({
          action: p.action,
          resource: { type: 'buckets', orgID, id: await bucketID(p.bucket) },
        })),
      );
      const created = await api<{ token: string }>('/api/v2/authorizations', {
        orgID,
        permissions: resolved,
      });
      return created.token;
    },
    query(flux) {
      return new InfluxDB({ url, token }).getQueryApi(org).collectRows<Row>(flux);
    },
    stop: () => proc.signal('SIGTERM'),
    kill: () => proc.signal('SIGKILL'),
    async restart() {
      await proc.signal('SIGTERM');
      await proc.start();
    },
    pause: () => void proc.signal('SIGSTOP'),
    resume: () => void proc.signal('SIGCONT'),
    async dispose() {
      if (disposed) return;
      disposed = true;
      await proc.signal('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A sink's InfluxDB destination on `server`, with the schema defaults (SPEC 2.3). */
export function destinationOn(
  server: InfluxServer,
  overrides: Partial<InfluxDestination> = {},
): InfluxDestination {
  return {
    url: server.url,
    org: server.org,
    bucket: server.bucket,
    measurement: 'kubernetes_audit',
    createBucket: false,
    retentionSeconds: 0,
    batchSize: 1_000,
    flushIntervalMs: 1_000,
    tags: TAG_NAMES,
    staticTags: {},
    ...overrides,
  };
}

/**
 * Points of measurement `kubernetes_audit` in a bucket, and distinct auditIDs among them, counted
 * by influxd: equal when every event was written exactly once. A point is a series and a
 * timestamp: every tag of an event's point follows from its auditID, so a point is counted as an
 * (auditID, time) pair. influxd 2.7 can return a point that was written twice (an idempotent
 * retry) twice until it compacts its files; that is still one point.
 */
export async function auditPointCounts(
  server: InfluxServer,
  bucket: string,
): Promise<{ points: number; distinct: number }> {
  const auditIDs = `from(bucket: "${bucket}") |> range(start: 0, stop: 2100-01-01T00:00:00Z) |> filter(fn: (r) => r._measurement == "kubernetes_audit" and r._field == "audit_id") |> group()`;
  const total = async (flux: string) => {
    const rows = await server.query(flux);
    return rows.length === 0 ? 0 : Number(rows[0]?._value);
  };
  return {
    points: await total(
      `${auditIDs} |> map(fn: (r) => ({_value: r._value + "@" + string(v: r._time)})) |> distinct() |> count()`,
    ),
    distinct: await total(`${auditIDs} |> distinct() |> count()`),
  };
}

/**
 * Up to `limit` auditIDs written more than once in a bucket, each with its points (time and
 * tags): what a failed exactly-once check prints to show how the copies differ.
 */
export async function duplicatedAuditIds(
  server: InfluxServer,
  bucket: string,
  limit = 3,
): Promise<Record<string, Row[]>> {
  const rows = await server.query(
    `from(bucket: "${bucket}") |> range(start: 0, stop: 2100-01-01T00:00:00Z) |> filter(fn: (r) => r._measurement == "kubernetes_audit" and r._field == "audit_id") |> group()`,
  );
  const byId = new Map<string, Row[]>();
  for (const row of rows) {
    const id = String(row._value);
    byId.set(id, [...(byId.get(id) ?? []), row]);
  }
  return Object.fromEntries([...byId].filter(([, points]) => points.length > 1).slice(0, limit));
}
