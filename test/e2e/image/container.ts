/**
 * What the image tests do with containers: `docker run` of the operator's image as the chart runs
 * it, files a container may read, named volumes, HTTPS requests to a container's receiver. Every
 * container and volume carries the test process's pid ({@link TEST_OWNER_LABEL}) and is removed
 * by {@link removeAll}, or by the global setup when the process died. Starts containers only.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { builtValue } from '../../harness/builds.ts';
import { docker, type DockerResult, dockerOk } from '../../harness/docker.ts';
import { HOST_DIR_PREFIX, TEST_OWNER_LABEL } from '../../harness/image.ts';

/** The engine and the image the global setup built (test/harness/builds.ts). */
export const { engine, image } = builtValue('image');

/** The user of the image and of the chart's pods: distroless `nonroot`. */
export const NONROOT = 65532;

/** The image's data directory: the chart's `--data-dir` and volume mount. */
export const DATA_DIR = '/var/lib/kube-audit';

/**
 * The chart's container securityContext as `docker run` flags: read-only root file system, user
 * 65532, every capability dropped, no privilege escalation. `--network host`: the engine the
 * tests start has no bridge, and the receivers listen on 127.0.0.1.
 */
export const AS_THE_CHART_RUNS_IT = [
  '--read-only',
  '--user',
  `${NONROOT}:${NONROOT}`,
  '--cap-drop',
  'ALL',
  '--security-opt',
  'no-new-privileges',
  '--network',
  'host',
] as const;

const owner = ['--label', `${TEST_OWNER_LABEL}=${process.pid}`];
const names = {
  containers: new Set<string>(),
  volumes: new Set<string>(),
  dirs: new Set<string>(),
};

/** A unique name for a container or volume of this test process. */
export function uniqueName(what: string): string {
  return `kao-${what}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** A running container, attached: its output is collected and its exit code awaited. */
export interface Container {
  readonly name: string;
  /** Resolves with the container's exit code. */
  readonly exited: Promise<number>;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Sends a signal (SIGTERM unless given) and resolves with the exit code and how long it took. */
  stop(signal?: string): Promise<{ code: number; ms: number }>;
  /** Runs a command in the container (as its user). */
  exec(args: readonly string[]): Promise<DockerResult>;
}

/**
 * `docker run --rm` of the image with `flags` before it and `args` after it (the command), as an
 * attached client process: the client's exit code is the container's.
 */
export function runContainer(flags: readonly string[], args: readonly string[]): Container {
  const name = uniqueName('c');
  names.containers.add(name);
  const child: ChildProcess = spawn(
    engine.client,
    ['run', '--rm', '--name', name, ...owner, ...flags, image.ref, ...args],
    { env: { ...process.env, DOCKER_HOST: engine.host }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-65_536);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number>((resolve) =>
    child.once('close', (code) => {
      names.containers.delete(name);
      resolve(code ?? 128);
    }),
  );
  return {
    name,
    exited,
    output: () => output,
    async stop(signal = 'SIGTERM') {
      const started = performance.now();
      await docker(engine, ['kill', '--signal', signal, name]);
      const code = await exited;
      return { code, ms: performance.now() - started };
    },
    exec: (execArgs) => docker(engine, ['exec', name, ...execArgs]),
  };
}

/** `docker run --rm` of the image to completion; resolves with its output and exit code. */
export async function runToEnd(
  flags: readonly string[],
  args: readonly string[],
): Promise<{ code: number; output: string }> {
  const container = runContainer(flags, args);
  const code = await container.exited;
  return { code, output: container.output() };
}

/**
 * Runs a Node.js script in a container of `ref` (the image unless given) in place of the
 * operator, as the image's user; the image has no shell. Resolves with its stdout.
 */
export function nodeIn(
  script: string,
  flags: readonly string[] = [],
  ref: string = image.ref,
): Promise<string> {
  return dockerOk(engine, [
    'run',
    '--rm',
    ...owner,
    '--network',
    'none',
    ...flags,
    '--entrypoint',
    '/nodejs/bin/node',
    ref,
    '--input-type=module',
    '-e',
    script,
  ]);
}

/** Creates a fresh named volume. */
export async function createVolume(): Promise<string> {
  const name = uniqueName('v');
  names.volumes.add(name);
  await dockerOk(engine, ['volume', 'create', ...owner, name]);
  return name;
}

/**
 * A temporary directory the container user can read: the host side of a `-v <dir>:<path>:ro`
 * mount. Files written into it are made readable by 65532 with {@link giveToNonroot}.
 */
export async function hostDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `${HOST_DIR_PREFIX}${process.pid}-`));
  names.dirs.add(dir);
  await chmod(dir, 0o755);
  return dir;
}

/** Hands files to user 65532, readable by it only, as the chart's Secret volumes are. */
export async function giveToNonroot(...files: string[]): Promise<void> {
  for (const file of files) {
    await chown(file, NONROOT, NONROOT);
    await chmod(file, 0o400);
  }
}

/** Kills this process's containers and removes its volumes and directories. */
export async function removeAll(): Promise<void> {
  if (names.containers.size > 0) {
    await docker(engine, ['container', 'rm', '--force', ...names.containers]);
  }
  if (names.volumes.size > 0) {
    await docker(engine, ['volume', 'rm', '--force', ...names.volumes]);
  }
  for (const dir of names.dirs) await rm(dir, { recursive: true, force: true });
  names.containers.clear();
  names.volumes.clear();
  names.dirs.clear();
}

/** An HTTPS request to a container's receiver, trusting `ca`; resolves with status and body. */
export function https(
  url: string,
  opts: {
    readonly ca: string;
    readonly method?: string;
    readonly token?: string;
    readonly body?: string;
  },
): Promise<{ status: number; body: string }> {
  const headers: Record<string, string> = {};
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      { method: opts.method ?? 'GET', ca: opts.ca, headers, agent: false, timeout: 10_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${url}: timed out`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}
