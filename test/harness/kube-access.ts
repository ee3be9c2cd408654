/**
 * How tests and the harness reach a kube-apiserver they started: static bearer-token users, the
 * token file and kubeconfigs that name them, one authenticated GET, and the real kubectl or helm
 * run as a child process. Shared by the control plane (controlplane.ts) and the single-node
 * cluster (node.ts). Starts no server.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { basename } from 'node:path';
import { stringify as toYaml } from 'yaml';

/** A user of the static token file. */
export interface KubeUser {
  name: string;
  token: string;
  groups: string[];
}

/** What a kubectl or helm run printed, and its exit code (128 when killed by a signal). */
export interface ClientResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** A user with a fresh random token. */
export function newUser(name: string, groups: string[]): KubeUser {
  return { name, token: randomBytes(24).toString('hex'), groups };
}

/** The static token file (`--token-auth-file`): token,user,uid[,"group1,group2"]. */
export function tokenFile(users: readonly KubeUser[]): string {
  return users
    .map((u, i) => {
      const base = `${u.token},${u.name},uid-${i}`;
      return u.groups.length === 0 ? base : `${base},"${u.groups.join(',')}"`;
    })
    .join('\n')
    .concat('\n');
}

/** A kubeconfig that reaches `server`, trusting `caFile`, as `user` with its bearer token. */
export function kubeconfigFor(server: string, caFile: string, user: KubeUser): string {
  return toYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'test', cluster: { server, 'certificate-authority': caFile } }],
    users: [{ name: user.name, user: { token: user.token } }],
    contexts: [{ name: 'test', context: { cluster: 'test', user: user.name } }],
    'current-context': 'test',
  });
}

/** An HTTP answer: status and body text. */
export interface Answer {
  readonly status: number;
  readonly body: string;
}

/** One GET over HTTPS that trusts `ca`, with a bearer token. */
export function getWithToken(url: string, token: string, ca: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      { ca, headers: { authorization: `Bearer ${token}` }, agent: false, timeout: 5_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** 60 s: a kubectl call against a local apiserver takes well under a second. */
const CLIENT_TIMEOUT_MS = 60_000;

/**
 * Runs a client binary (kubectl, helm) with `args`, `input` on its stdin; never throws on a
 * non-zero exit. Killed after `timeoutMs`.
 */
export function runClient(
  binary: string,
  args: string[],
  input: string | undefined,
  timeoutMs = CLIENT_TIMEOUT_MS,
): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
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
          (signal === null ? '' : `\n${basename(binary)} ended by ${signal}`),
        code: code ?? 128,
      });
    });
    child.stdin.end(input ?? '');
  });
}
