/**
 * `kube-audit-operator standalone` under test as a real process: the built binary (`node
 * dist/main.js`), plain HTTP on 127.0.0.1 (`--insecure`), a data directory for its spool. Waits
 * until `/readyz` answers 200; killed when the test process exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));
const LOG_TAIL = 16_384;

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** The project's Dockerfile, which says how the image runs the process. */
function readDockerfile(): string {
  return readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
}

/**
 * The `NODE_OPTIONS` the container image sets (its Dockerfile's `ENV NODE_OPTIONS`), so that the
 * benchmarks run the process as it ships; the chart passes the same by default (ADR 0021).
 */
export function shippedNodeOptions(): string {
  const dockerfile = readDockerfile();
  const options = /^ENV NODE_OPTIONS="([^"]*)"$/m.exec(dockerfile)?.[1];
  if (options === undefined) throw new Error('Dockerfile: no ENV NODE_OPTIONS="..." line');
  return options;
}

/**
 * The flags the container image gives `node` before the main module (its Dockerfile's exec-form
 * `ENTRYPOINT`): V8 flags that `NODE_OPTIONS` does not accept (ADR 0021).
 */
export function shippedNodeFlags(): string[] {
  const dockerfile = readDockerfile();
  const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1];
  if (entrypoint === undefined) throw new Error('Dockerfile: no exec-form ENTRYPOINT line');
  const argv = JSON.parse(entrypoint) as string[];
  const main = argv.findIndex((arg) => arg.endsWith('/dist/main.js'));
  if (main < 1) throw new Error(`Dockerfile: ENTRYPOINT ${entrypoint} does not run dist/main.js`);
  return argv.slice(1, main);
}

/** How to run it. */
export interface StandaloneOptions {
  /** A manifest file or directory (`-f`). */
  readonly manifests: string;
  readonly port: number;
  /** `--data-dir`: the durable spool, replayed by the next process on the same directory. */
  readonly dataDir: string;
  /** `--log-level`, `warn` unless given. */
  readonly logLevel?: string;
  /** More flags. */
  readonly args?: readonly string[];
  /** `NODE_OPTIONS` of the process (Node.js and V8 flags), as the container image sets it. */
  readonly nodeOptions?: string;
  /** Flags given to `node` before the main module, as the image's ENTRYPOINT gives them. */
  readonly nodeFlags?: readonly string[];
  readonly readyTimeoutMs?: number;
}

/** A running standalone process. */
export interface StandaloneProcess {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly pid: number;
  readonly exited: Promise<number | null>;
  /** The end of what it wrote: its JSON log (stdout) and stderr, interleaved as they came. */
  log(): string;
  /** Sends a signal (SIGTERM unless given) and waits for the exit; null when killed. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** How long one readiness probe may take: a loaded CI machine answers within it. */
const READY_PROBE_MS = 2_000;

/** Starts `standalone` and waits until it is ready. */
export async function startStandalone(options: StandaloneOptions): Promise<StandaloneProcess> {
  const child = spawn(
    process.execPath,
    [
      ...(options.nodeFlags ?? []),
      MAIN,
      'standalone',
      '-f',
      options.manifests,
      '--insecure',
      '--listen',
      `127.0.0.1:${options.port}`,
      '--data-dir',
      options.dataDir,
      '--log-level',
      options.logLevel ?? 'warn',
      ...(options.args ?? []),
    ],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env:
        options.nodeOptions === undefined
          ? process.env
          : { ...process.env, NODE_OPTIONS: options.nodeOptions },
    },
  );
  running.add(child);
  let output = '';
  const collect = (chunk: string) => {
    output = (output + chunk).slice(-LOG_TAIL);
  };
  child.stdout?.setEncoding('utf8').on('data', collect);
  child.stderr?.setEncoding('utf8').on('data', collect);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  const url = `http://127.0.0.1:${options.port}`;
  const deadline = Date.now() + (options.readyTimeoutMs ?? 15_000);
  for (;;) {
    // Each probe has a deadline of its own: something else listening on the port (it was free when
    // picked, but another process may have bound it since, and this one then exits on EADDRINUSE),
    // or a process that accepts but never answers, would otherwise hold the loop past its deadline.
    const ready = await fetch(`${url}/readyz`, {
      signal: AbortSignal.timeout(READY_PROBE_MS),
    }).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop('SIGKILL');
      throw new Error(`standalone not ready on ${url}:\n${output}`);
    }
    await sleep(100);
  }
  return { url, pid: child.pid ?? 0, exited, log: () => output, stop };
}
