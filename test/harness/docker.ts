/**
 * A Docker engine for the tests that build and run the container image: the one `DOCKER_HOST`
 * names, else one already answering on the default socket, else Debian's `dockerd` started here
 * (docker.io and debootstrap installed with apt-get when missing and running as root).
 *
 * The engine started here changes nothing machine-wide: `--iptables=false --ip-masq=false
 * --bridge=none` (containers get no network but `--network host`, and the machine's iptables stay
 * the Kubernetes node's), its own socket, pid file and exec root under {@link RUN_ROOT}, and its
 * own data root under {@link DATA_ROOT}, which is kept so that base images, the built image and
 * BuildKit's cache survive between runs. It is stopped by the last of its users; its dockerd
 * starts a containerd of its own (own socket and state, under the exec root).
 *
 * One engine per machine (a data root belongs to one dockerd): {@link RUN_ROOT}/engine.json
 * records its pids and the test processes using it. {@link releaseDockerEngine} stops it when the
 * last user lets go, and {@link reapOrphanedDockerEngine} when every recorded user has died (a
 * crashed run): dockerd, its containerd and their shims by recorded pid, checked against their
 * command lines, then every mount left under the exec and data roots.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { alive } from './processes.ts';

/** The engine's socket, pid file, exec root, log and record: one engine per machine. */
export const RUN_ROOT = join(tmpdir(), 'kube-audit-operator-docker');

/** The engine's data root (images, containers, build cache), kept between runs. */
export const DATA_ROOT = join(
  process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'),
  'kube-audit-operator',
  'docker',
);

const SOCKET = join(RUN_ROOT, 'docker.sock');
const EXEC_ROOT = join(RUN_ROOT, 'exec');
const PIDFILE = join(RUN_ROOT, 'dockerd.pid');
const LOG = join(RUN_ROOT, 'dockerd.log');
const RECORD = join(RUN_ROOT, 'engine.json');
const LOCK = join(RUN_ROOT, 'lock');
/** The default engine's socket, used when it answers and `DOCKER_HOST` is not set. */
const SYSTEM_SOCKET = '/var/run/docker.sock';

/** 60 s: dockerd answers /_ping in about 2 s on an idle machine. */
const START_TIMEOUT_MS = 60_000;
/** 10 s: a lock directory without its owner's pid this long was left by a process that died. */
const LOCK_UNOWNED_MS = 10_000;
/** 30 s: dockerd stops its containers (10 s grace each) and its containerd on SIGTERM. */
const STOP_TIMEOUT_MS = 30_000;

/** A Docker engine and the client that talks to it. */
export interface DockerEngine {
  /** `unix://<socket>`: the value of DOCKER_HOST for every client call. */
  readonly host: string;
  /** The docker client: one that builds with BuildKit by itself or with its buildx plugin. */
  readonly client: string;
  /** Whether this harness started the engine (and so stops it). */
  readonly startedHere: boolean;
}

/** The result of one docker client call. */
export interface DockerResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

/** What engine.json holds about the engine started here. */
interface EngineRecord {
  readonly dockerd: number;
  /** The test process that started it; it is a user until it lets go. */
  readonly starter: number;
  /** Test processes using the engine, once per {@link ensureDockerEngine} call. */
  users: number[];
}

/**
 * The docker client: `$DOCKER`, else Debian's `/usr/bin/docker` (20.10, builds with BuildKit
 * itself), else the first `docker` on PATH. A Docker 23+ client needs its buildx plugin for the
 * Dockerfile's `RUN --mount`; the one first on PATH on these machines has none.
 */
export function dockerClient(): string {
  const override = process.env.DOCKER;
  if (override !== undefined && override !== '') return override;
  return existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
}

/** Runs the docker client against `engine`; never throws on a non-zero exit. */
export function docker(
  engine: DockerEngine,
  args: readonly string[],
  opts: { readonly input?: string; readonly timeoutMs?: number } = {},
): Promise<DockerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(engine.client, args, {
      env: { ...process.env, DOCKER_HOST: engine.host, DOCKER_BUILDKIT: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    const timer =
      opts.timeoutMs === undefined ? undefined : setTimeout(() => child.kill(), opts.timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr:
          Buffer.concat(err).toString('utf8') +
          (signal === null ? '' : `\ndocker ${args[0] ?? ''} ended by ${signal}`),
        code: code ?? 128,
      });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs the docker client; resolves with stdout, rejects with stderr on a non-zero exit. */
export async function dockerOk(
  engine: DockerEngine,
  args: readonly string[],
  opts: { readonly input?: string; readonly timeoutMs?: number } = {},
): Promise<string> {
  const r = await docker(engine, args, opts);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
  return r.stdout;
}

/** Whether an engine answers `GET /_ping` on this unix socket. */
function pings(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    if (!existsSync(socketPath)) {
      resolve(false);
      return;
    }
    const req = request({ socketPath, path: '/_ping', timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

// ---- one engine per machine: a lock and a record ------------------------------------------------

/** Runs `fn` holding {@link LOCK} (a directory: created atomically, stale when its owner died). */
async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  mkdirSync(RUN_ROOT, { recursive: true });
  for (;;) {
    try {
      mkdirSync(LOCK);
      writeFileSync(join(LOCK, 'owner'), String(process.pid));
      break;
    } catch {
      let owner = 0;
      let ageMs = 0;
      try {
        ageMs = Date.now() - statSync(LOCK).mtimeMs;
        owner = Number(readFileSync(join(LOCK, 'owner'), 'utf8'));
      } catch {
        // being created (its owner writes the file next), or just released
      }
      // Stale: its owner died, or died between creating it and writing its pid.
      const stale = owner > 0 ? !alive(owner) : ageMs > LOCK_UNOWNED_MS;
      if (stale) rmSync(LOCK, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

function readRecord(): EngineRecord | undefined {
  try {
    return JSON.parse(readFileSync(RECORD, 'utf8')) as EngineRecord;
  } catch {
    return undefined;
  }
}

function writeRecord(record: EngineRecord): void {
  writeFileSync(RECORD, JSON.stringify(record));
}

/** The command line of a process, or '' when it is gone. */
function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

// ---- installing, starting and stopping ----------------------------------------------------------

/**
 * Installs Debian's docker.io (dockerd 20.10 and its client) and debootstrap (for the base image
 * stand-ins) when missing: root and apt-get only. docker.io brings containerd and runc as its
 * dependencies; on a machine without an init system their maintainer scripts start no service.
 */
function installEngine(): void {
  const missing = [
    ['dockerd', 'docker.io'],
    ['debootstrap', 'debootstrap'],
  ].filter(([bin]) => !onPath(bin as string));
  if (missing.length === 0 && existsSync('/usr/bin/docker')) return;
  if (process.getuid?.() !== 0 || !onPath('apt-get')) {
    throw new Error(
      `no Docker engine: install Debian's docker.io and debootstrap (apt-get install --no-install-recommends docker.io debootstrap), or set DOCKER_HOST`,
    );
  }
  const apt = (args: string[]) =>
    execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=600', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  console.log('docker: installing docker.io and debootstrap (apt-get)');
  apt(['update', '-qq']);
  apt(['install', '-y', '-qq', '--no-install-recommends', 'docker.io', 'debootstrap']);
}

function onPath(bin: string): boolean {
  return (process.env.PATH ?? '')
    .split(':')
    .concat(['/usr/sbin', '/usr/bin', '/sbin'])
    .some((dir) => dir !== '' && existsSync(join(dir, bin)));
}

/** Starts dockerd detached (it outlives a crashed test run, for the reaper) and waits for it. */
async function startEngine(): Promise<number> {
  mkdirSync(EXEC_ROOT, { recursive: true });
  mkdirSync(DATA_ROOT, { recursive: true });
  // A configuration file of our own: /etc/docker/daemon.json would add to the flags. dockerd 20.10
  // writes its identity key to /etc/docker/key.json unless told otherwise: keep it with the data.
  const config = join(RUN_ROOT, 'daemon.json');
  writeFileSync(
    config,
    `${JSON.stringify({ 'deprecated-key-path': join(DATA_ROOT, 'key.json') })}\n`,
  );
  const log = openSync(LOG, 'a');
  let pid: number | undefined;
  try {
    const child = spawn(
      'dockerd',
      [
        `--data-root=${DATA_ROOT}`,
        `--exec-root=${EXEC_ROOT}`,
        `--host=unix://${SOCKET}`,
        `--pidfile=${PIDFILE}`,
        `--config-file=${config}`,
        // Leave the machine's iptables, forwarding and bridges to the Kubernetes node.
        '--iptables=false',
        '--ip-masq=false',
        '--bridge=none',
      ],
      {
        detached: true,
        stdio: ['ignore', log, log],
        env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/usr/bin:/sbin` },
      },
    );
    child.unref();
    pid = child.pid;
  } finally {
    closeSync(log);
  }
  if (pid === undefined) throw new Error('cannot start dockerd');
  writeRecord({ dockerd: pid, starter: process.pid, users: [] });
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await pings(SOCKET))) {
    if (!alive(pid) || Date.now() > deadline) {
      await stopEngine(pid);
      throw new Error(`dockerd did not answer on ${SOCKET}:\n${tail(LOG)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return pid;
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-8192);
  } catch {
    return '(no log)';
  }
}

/** Pids of the processes whose command line names the exec root: containerd and its shims. */
function engineChildren(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .filter((pid) => pid !== process.pid && cmdline(pid).includes(EXEC_ROOT));
}

async function waitGone(pids: readonly number[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(alive)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

/**
 * Stops the engine: SIGTERM to dockerd (it stops its containers and its containerd), SIGKILL
 * after {@link STOP_TIMEOUT_MS}; then whatever still names the exec root (a containerd or shim of
 * a dockerd that was killed); then every mount under the exec and data roots, deepest first
 * (dockerd leaves `<exec-root>/netns/default` mounted); then the exec root.
 */
async function stopEngine(pid: number): Promise<void> {
  // Only a dockerd of this exec root: a recorded pid may have been reused.
  if (cmdline(pid).includes(EXEC_ROOT)) {
    process.kill(pid, 'SIGTERM');
    if (!(await waitGone([pid], STOP_TIMEOUT_MS))) process.kill(pid, 'SIGKILL');
    await waitGone([pid], 5_000);
  }
  const children = engineChildren();
  for (const child of children) {
    try {
      process.kill(child, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await waitGone(children, 5_000);
  for (const target of mountsUnder([EXEC_ROOT, DATA_ROOT])) {
    try {
      execFileSync('umount', [target], { stdio: 'pipe' });
    } catch {
      // Busy: detach it now, the kernel frees it when the last user goes.
      execFileSync('umount', ['-l', target], { stdio: 'pipe' });
    }
  }
  rmSync(EXEC_ROOT, { recursive: true, force: true });
  rmSync(SOCKET, { force: true });
  rmSync(RECORD, { force: true });
}

/** Mount points under these directories, deepest first. */
export function mountsUnder(roots: readonly string[]): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((target): target is string => target !== undefined)
    .map((target) => target.replace(/\\040/g, ' '))
    .filter((target) => roots.some((root) => target === root || target.startsWith(`${root}/`)))
    .sort((a, b) => b.length - a.length);
}

// ---- the public calls ------------------------------------------------------------------------------

/**
 * The engine the tests use: `DOCKER_HOST` when set, else the default socket when an engine
 * answers there, else the engine this harness records (started now when none runs). Each call is
 * one use; pair it with {@link releaseDockerEngine}.
 */
export async function ensureDockerEngine(): Promise<DockerEngine> {
  const client = dockerClient();
  const given = process.env.DOCKER_HOST;
  if (given !== undefined && given !== '') return { host: given, client, startedHere: false };
  if (await pings(SYSTEM_SOCKET)) {
    return { host: `unix://${SYSTEM_SOCKET}`, client, startedHere: false };
  }
  installEngine();
  return withLock(async () => {
    await reapUnlocked();
    let record = readRecord();
    if (record === undefined || !(await pings(SOCKET))) {
      if (record !== undefined) await stopEngine(record.dockerd);
      const started = performance.now();
      const pid = await startEngine();
      console.log(
        `docker: dockerd ${pid} answering on ${SOCKET} after ${((performance.now() - started) / 1000).toFixed(1)} s (data root ${DATA_ROOT})`,
      );
      record = { dockerd: pid, starter: process.pid, users: [] };
    }
    record.users.push(process.pid);
    writeRecord(record);
    return { host: `unix://${SOCKET}`, client: dockerClient(), startedHere: true };
  });
}

/**
 * Ends one use of the engine; the last use stops an engine this harness started, and unmounts
 * what it left. An engine it did not start is left alone.
 */
export async function releaseDockerEngine(engine: DockerEngine): Promise<void> {
  if (!engine.startedHere) return;
  await withLock(async () => {
    const record = readRecord();
    if (record === undefined) return;
    const mine = record.users.indexOf(process.pid);
    if (mine >= 0) record.users.splice(mine, 1);
    if (record.users.some(alive)) {
      writeRecord(record);
      return;
    }
    await stopEngine(record.dockerd);
  });
}

/**
 * Whether another live test process (another run, from this checkout or another one) is using
 * the engine this harness started: its images are in use and must stay.
 */
export function engineSharedWithOthers(engine: DockerEngine): boolean {
  if (!engine.startedHere) return true;
  const others = readRecord()?.users.filter((pid) => pid !== process.pid) ?? [];
  return others.some(alive);
}

/** Stops a recorded engine whose users have all died. Returns whether it stopped one. */
async function reapUnlocked(): Promise<boolean> {
  const record = readRecord();
  if (record === undefined) {
    // No record: a crash between starting dockerd and writing it still leaves mounts to free.
    if (!(await pings(SOCKET))) {
      for (const target of mountsUnder([EXEC_ROOT])) {
        try {
          execFileSync('umount', ['-l', target], { stdio: 'pipe' });
        } catch {
          // gone meanwhile
        }
      }
    }
    return false;
  }
  // In use, or being started (its starter holds the lock and becomes its first user).
  if (record.users.some(alive) || alive(record.starter)) return false;
  await stopEngine(record.dockerd);
  return true;
}

/**
 * Stops the recorded engine when every test process that used it is gone (a crashed or killed
 * run), as the other harnesses reap their servers. Returns whether it stopped one.
 */
export function reapOrphanedDockerEngine(): Promise<boolean> {
  if (!existsSync(RECORD)) return Promise.resolve(false);
  return withLock(reapUnlocked);
}

/** The engine's log file, for error messages. */
export function dockerdLog(): string {
  return tail(LOG);
}
