// `run`: settings errors and start-up failures of the operator command. Runs the built CLI binary
// (`node dist/main.js`) as child processes, as a user would; runs `npm run build` once first if
// dist/main.js is missing. Starts no cluster: the kubeconfigs point at missing files or at a
// closed local port.
import { type ChildProcessWithoutNullStreams, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = join(ROOT, 'dist', 'main.js');

// A Node stack frame, as an uncaught error would print it.
const STACK_FRAME = '    at ';
// Logged once the receivers run and the operator lists the cluster's resources.
const WATCHING = 'watch failed; resuming';

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

let dir = '';
let dataDir = '';
const children: ChildProcessWithoutNullStreams[] = [];

/** The environment without anything that would configure the operator from outside the test. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (name === 'KUBECONFIG' || name.startsWith('KUBE_AUDIT_')) delete env[name];
  }
  return { ...env, ...extra };
}

/** Starts `run` with `args`; `exited` resolves when it exits. */
function start(args: readonly string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [MAIN, 'run', '--data-dir', dataDir, ...args], {
    cwd: ROOT,
    env: cleanEnv(env),
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  const listeners: (() => void)[] = [];
  const changed = () => {
    for (const listener of listeners) listener();
  };
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    changed();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    changed();
  });
  child.stdin.end();
  const exited = new Promise<Run>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  /** Resolves with the output so far once either stream contains `text`, or the process exits. */
  const until = (text: string) =>
    new Promise<Run & { exited: boolean }>((resolve) => {
      const check = () => {
        if (stdout.includes(text) || stderr.includes(text)) {
          resolve({ code: null, stdout, stderr, exited: false });
        }
      };
      listeners.push(check);
      check();
      void exited.then((run) => resolve({ ...run, exited: true }));
    });
  return { child, exited, until };
}

/** Runs `run` with `args` to its exit. */
function runToExit(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return start(args, env).exited;
}

/** A kubeconfig for an apiserver at `server`. */
async function kubeconfigFor(name: string, server: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(
    path,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '  - name: test',
      `    cluster: { server: "${server}" }`,
      'users:',
      '  - name: test',
      '    user: { token: test-token }',
      'contexts:',
      '  - name: test',
      '    context: { cluster: test, user: test }',
      'current-context: test',
      '',
    ].join('\n'),
  );
  return path;
}

/** A local port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

beforeAll(async () => {
  if (!existsSync(MAIN)) {
    await promisify(execFile)('npm', ['run', 'build'], { cwd: ROOT });
  }
  dir = await mkdtemp(join(tmpdir(), 'run-cli-test-'));
  dataDir = join(dir, 'data');
}, 120_000);

afterEach(() => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

afterAll(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

/** Plain HTTP on loopback: gets past the receiver's TLS requirements. */
const INSECURE = ['--insecure', '--listen', '127.0.0.1:0'];

describe('invalid settings', () => {
  it.each([
    {
      name: '--advertise-url ftp://x',
      args: ['--advertise-url', 'ftp://x'],
      problem:
        'advertiseUrl: expected an http(s) URL without path, query or credentials, got "ftp://x"',
    },
    {
      name: '--advertise-url https://10.96.0.50/audit',
      args: ['--advertise-url', 'https://10.96.0.50/audit'],
      problem: 'advertiseUrl: expected an http(s) URL without path',
    },
    {
      name: '--advertise-url https://user:secret@10.96.0.50',
      args: ['--advertise-url', 'https://user:secret@10.96.0.50'],
      problem: 'advertiseUrl: expected an http(s) URL without path, query or credentials',
    },
    {
      name: '--native-audit-sinks maybe',
      args: ['--native-audit-sinks', 'maybe'],
      problem: 'nativeAuditSinks: expected auto or off, got "maybe"',
    },
    {
      name: '--status-interval-seconds 0',
      args: ['--status-interval-seconds', '0'],
      problem: 'statusIntervalSeconds: expected an integer from 1 to 3600, got "0"',
    },
    {
      name: '--status-interval-seconds 5s',
      args: ['--status-interval-seconds', '5s'],
      problem: 'statusIntervalSeconds: expected an integer from 1 to 3600, got "5s"',
    },
    {
      name: '--status-interval-seconds 3601',
      args: ['--status-interval-seconds', '3601'],
      problem: 'statusIntervalSeconds: expected an integer from 1 to 3600, got "3601"',
    },
    {
      name: "--lease-name ''",
      args: ['--lease-name', ''],
      problem: 'leaseName: expected a non-empty string',
    },
    {
      name: "--native-key-file ''",
      args: ['--native-key-file', ''],
      problem: 'nativeKeyFile: expected a file path',
    },
  ])('exits 2 naming the field for $name', async ({ args, problem }) => {
    const run = await runToExit([...INSECURE, ...args]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^error: invalid settings:\n/);
    expect(run.stderr).toContain(`  ${problem}`);
    expect(run.stderr).not.toContain(STACK_FRAME);
  });

  it('names every bad field at once', async () => {
    const run = await runToExit([
      ...INSECURE,
      '--advertise-url',
      'ftp://x',
      '--native-audit-sinks',
      'maybe',
      '--status-interval-seconds',
      '0',
    ]);
    expect(run.code).toBe(2);
    const problems = run.stderr
      .split('\n')
      .filter((line) => line.startsWith('  '))
      .map((line) => line.trim().split(':')[0])
      .sort();
    expect(problems).toEqual(['advertiseUrl', 'nativeAuditSinks', 'statusIntervalSeconds']);
  });

  it('reads the operator settings from the environment as well', async () => {
    const run = await runToExit(INSECURE, {
      KUBE_AUDIT_NATIVE_AUDIT_SINKS: 'maybe',
      KUBE_AUDIT_STATUS_INTERVAL_SECONDS: '0',
    });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('  nativeAuditSinks: expected auto or off, got "maybe"');
    expect(run.stderr).toContain('  statusIntervalSeconds: expected an integer from 1 to 3600');
  });

  it('refuses to serve plain HTTP unless --insecure is given', async () => {
    const run = await runToExit(['--listen', '127.0.0.1:0', '--kubeconfig', '/nonexistent']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('  tlsCertFile: Required value');
    expect(run.stderr).toContain('  tokenFiles: Required value');
  });

  it('refuses --insecure on an address other than loopback', async () => {
    const run = await runToExit(['--insecure', '--listen', '0.0.0.0:0']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('  insecure: plain HTTP without authentication is refused');
  });
});

describe('start-up failures', () => {
  it('exits 1 with "cannot start", naming the file, when --kubeconfig does not exist', async () => {
    const run = await runToExit([...INSECURE, '--kubeconfig', '/nonexistent']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^error: cannot start: .*\/nonexistent/);
    expect(run.stderr).not.toContain(STACK_FRAME);
  });

  it('reads the kubeconfig from KUBECONFIG when --kubeconfig is not given', async () => {
    const run = await runToExit(INSECURE, { KUBECONFIG: '/nonexistent/kubeconfig' });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^error: cannot start: .*\/nonexistent\/kubeconfig/);
  });

  it('exits 1 with "cannot start" when the kubeconfig names no current cluster', async () => {
    const empty = join(dir, 'empty.kubeconfig');
    await writeFile(empty, 'apiVersion: v1\nkind: Config\n');
    const run = await runToExit([...INSECURE, '--kubeconfig', empty]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`error: cannot start: kubeconfig ${empty} names no current cluster\n`);
  });

  it('exits 1 with "cannot start" when the native key file cannot be read', async () => {
    const kubeconfig = await kubeconfigFor(
      'unreachable.kubeconfig',
      `https://127.0.0.1:${await closedPort()}`,
    );
    const missing = join(dir, 'no-such-native-key');
    const run = await runToExit([
      ...INSECURE,
      '--kubeconfig',
      kubeconfig,
      '--native-audit-sinks',
      'off',
      '--native-key-file',
      missing,
    ]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^error: cannot start: /);
    expect(run.stderr).toContain(missing);
  });

  it('keeps retrying, instead of exiting, while the apiserver cannot be reached', async () => {
    const kubeconfig = await kubeconfigFor(
      'unreachable.kubeconfig',
      `https://127.0.0.1:${await closedPort()}`,
    );
    const { until } = start([
      ...INSECURE,
      '--kubeconfig',
      kubeconfig,
      '--native-audit-sinks',
      'off',
    ]);
    const run = await until(WATCHING);
    expect(run.exited).toBe(false);
    expect(run.stderr).toBe('');
  });

  it('starts its receivers with a native key file and goes on to watch the cluster', async () => {
    const kubeconfig = await kubeconfigFor(
      'unreachable.kubeconfig',
      `https://127.0.0.1:${await closedPort()}`,
    );
    const keyFile = join(dir, 'native-key');
    await writeFile(keyFile, 'c2VjcmV0LW5hdGl2ZS1rZXktZm9yLXRlc3Rz\n');
    const { until } = start([
      ...INSECURE,
      '--kubeconfig',
      kubeconfig,
      '--native-audit-sinks',
      'off',
      '--native-key-file',
      keyFile,
    ]);
    const run = await until(WATCHING);
    expect(run.stderr).toBe('');
    expect(run.exited).toBe(false);
  });
});
