/**
 * What the control-plane end-to-end tests ask of the cluster and the receiver: kubectl that must
 * succeed, a sink's status as the operator published it, an HTTPS POST of an EventList and an
 * HTTPS GET with a bearer token. Starts nothing.
 */
import { type Agent, request as httpsRequest } from 'node:https';
import type { ControlPlane } from '../../harness/controlplane.ts';

/** Runs kubectl as admin; resolves with its stdout, rejects with its stderr on failure. */
export async function kubectlOk(cp: ControlPlane, args: string[], input?: string): Promise<string> {
  const r = await cp.kubectl(args, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** One condition of a sink's status. */
export interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}

/** The status of an AuditSink or AuditPipeline (SPEC 2.4), as far as the tests read it. */
export interface SinkStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  received?: number;
  written?: number;
  endpoint?: string;
  lastEventTime?: string;
  dropped?: Record<string, number>;
}

/** The condition of `type`, if the status has it. */
export function conditionOf(status: SinkStatus, type: string): Condition | undefined {
  return status.conditions?.find((c) => c.type === type);
}

/** A sink's status; empty while the operator has published none. */
export async function sinkStatus(
  cp: ControlPlane,
  kind: 'auditsink' | 'auditpipeline',
  name: string,
  namespace?: string,
): Promise<SinkStatus> {
  const ns = namespace === undefined ? [] : ['-n', namespace];
  const out = await kubectlOk(cp, ['get', kind, name, ...ns, '-o', 'json']);
  return (JSON.parse(out) as { status?: SinkStatus }).status ?? {};
}

/** POSTs `body` as JSON to `url` over HTTPS, trusting `ca`; resolves with the HTTP status. */
export function postJson(
  url: string,
  body: string,
  options: { readonly ca: string; readonly token?: string },
): Promise<number> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: 'POST', ca: options.ca, headers }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** An answer to {@link httpsGet}. */
export interface GetAnswer {
  readonly status: number;
  readonly wwwAuthenticate: string | undefined;
  readonly body: string;
}

/**
 * GETs `url` over HTTPS, trusting `ca`, with a bearer token when given. A fresh connection unless
 * an `agent` keeps one.
 */
export function httpsGet(
  url: string,
  options: { readonly ca: string; readonly token?: string; readonly agent?: Agent },
): Promise<GetAnswer> {
  const headers: Record<string, string> = {};
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      { ca: options.ca, headers, agent: options.agent ?? false, timeout: 15_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            wwwAuthenticate: res.headers['www-authenticate'],
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}
