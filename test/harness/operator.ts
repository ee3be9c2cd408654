/**
 * The operator under test as a real process: `node dist/main.js run ...` (the built binary, as
 * users run it), with its log captured to a file for assertions and secret scans. Started on
 * 127.0.0.1 only; killed when the test process exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { fileURLToPath } from 'node:url';
import { eventually } from '../support/wait.ts';

const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** A running (or restartable) operator process. */
export interface OperatorProcess {
  /** Everything it logged, across restarts. */
  readonly logFile: string;
  /** The process id of the current (or last) run. */
  readonly pid: number | undefined;
  log(): string;
  /** Sends a signal and waits for the exit; resolves with the exit code (null when killed). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Starts it again with the same arguments, and waits until ready. */
  restart(): Promise<void>;
}

/** How to reach the operator's readiness endpoint. */
export interface ReadinessProbe {
  /** `https://127.0.0.1:<port>` */
  readonly url: string;
  readonly ca: string;
}

/** Starts `kube-audit-operator <args>` and waits until `/readyz` answers 200. */
export async function startOperatorProcess(
  args: readonly string[],
  probe: ReadinessProbe,
  logFile: string,
): Promise<OperatorProcess> {
  const out = createWriteStream(logFile, { flags: 'a' });
  let child: ChildProcess | undefined;
  let exited: Promise<number | null> = Promise.resolve(null);
  const start = async () => {
    const proc = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    running.add(proc);
    proc.stdout.pipe(out, { end: false });
    proc.stderr.pipe(out, { end: false });
    exited = new Promise((resolve) => {
      proc.once('exit', (code) => {
        running.delete(proc);
        resolve(code);
      });
    });
    const early = exited.then((code) => {
      throw new Error(`operator exited with ${code} before it was ready:\n${tail(logFile)}`);
    });
    await Promise.race([
      early,
      eventually('the operator to be ready', () => ready(probe), 60_000, 100),
    ]);
    early.catch(() => undefined);
  };
  await start();
  return {
    logFile,
    get pid() {
      return child?.pid;
    },
    log: () => readFileSync(logFile, 'utf8'),
    async stop(signal = 'SIGTERM') {
      if (child?.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    restart: start,
  };
}

function ready(probe: ReadinessProbe): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpsRequest(`${probe.url}/readyz`, { ca: probe.ca, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-30).join('\n');
  } catch {
    return '(no log)';
  }
}

/** What every test runs the operator with. */
export interface OperatorRunOptions {
  readonly kubeconfig: string;
  readonly port: number;
  readonly serving: { readonly certFile: string; readonly keyFile: string };
  readonly tokenFile: string;
  readonly dataDir: string;
  readonly namespace: string;
}

/**
 * `run` on loopback with TLS, a token file and status written every second (tests wait on it),
 * followed by `extra` flags.
 */
export function operatorRunArgs(o: OperatorRunOptions, ...extra: string[]): string[] {
  return [
    'run',
    `--kubeconfig=${o.kubeconfig}`,
    `--listen=127.0.0.1:${o.port}`,
    `--tls-cert-file=${o.serving.certFile}`,
    `--tls-key-file=${o.serving.keyFile}`,
    `--token-file=${o.tokenFile}`,
    `--data-dir=${o.dataDir}`,
    `--namespace=${o.namespace}`,
    '--status-interval-seconds=1',
    ...extra,
  ];
}
