/**
 * `apiserver-config`: what the kube-apiserver needs to send audit events to the operator's fan-in
 * endpoint: the webhook kubeconfig (`--audit-webhook-config-file`) and a superset of every
 * current sink's policy (`--audit-policy-file`), so that each sink gets at least what it asks for.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import { stringify } from 'yaml';
import type { KubeApi } from '../operator/kube.ts';
import { defaultOperatorUser, ownTrafficRules } from '../operator/own-traffic.ts';
import { GROUP_WILDCARD_SINCE, supersetPolicy, usesGroupWildcard } from '../policy/index.ts';
import type { Policy } from '../policy/types.ts';
import { RECEIVER_ROUTES } from '../receiver/index.ts';
import { sinkFromResource, SinkSpecError } from '../sinks/spec.ts';
import type { Sink } from '../sinks/types.ts';
import { loadResources } from '../standalone/resources.ts';
import { CliError } from './errors.ts';
import type { CommandIO } from './policy.ts';

interface ApiserverConfigFlags {
  server: string;
  caFile?: string;
  tokenFile?: string;
  clientCertFile?: string;
  clientKeyFile?: string;
  filename?: string;
  kubeconfig?: string;
  namespace: string;
  tlsServerName?: string;
  outputDir?: string;
  apiserverVersion?: string;
  operatorUser?: string;
}

/** File names written by `--output-dir`. */
export const APISERVER_CONFIG_FILES = Object.freeze({
  webhook: 'audit-webhook.kubeconfig',
  policy: 'audit-policy.yaml',
});

/** Adds the `apiserver-config` command. */
export function registerApiserverConfigCommand(program: Command, io: CommandIO): void {
  program
    .command('apiserver-config')
    .description(
      'print the audit webhook kubeconfig and the superset audit policy of the current sinks, for --audit-webhook-config-file and --audit-policy-file',
    )
    .requiredOption(
      '--server <url>',
      "the operator's receivers as the apiserver reaches them, e.g. https://10.96.0.50 (the Service's ClusterIP)",
    )
    .option('--ca-file <file>', "CA that signed the receivers' serving certificate (PEM)")
    .option(
      '--token-file <file>',
      'bearer token the apiserver presents (one of the accepted tokens)',
    )
    .option('--client-cert-file <file>', 'client certificate the apiserver presents (mTLS)')
    .option('--client-key-file <file>', 'key of --client-cert-file')
    .option('-f, --filename <file|dir>', 'read sinks from manifests instead of the cluster')
    .addOption(
      new Option('--kubeconfig <file>', 'read sinks from this cluster (default: in-cluster)').env(
        'KUBECONFIG',
      ),
    )
    .option('--namespace <ns>', "the operator's namespace", 'kube-audit')
    .option(
      '--tls-server-name <name>',
      'name the serving certificate is checked against, e.g. the Service DNS name, when --server is an IP the certificate does not name',
    )
    .option(
      '--apiserver-version <version>',
      `the kube-apiserver release that reads the policy, e.g. 1.36 or v1.36.2: from ${GROUP_WILDCARD_SINCE.join('.')} the policy keeps group "*" (default: a policy every release accepts)`,
    )
    .option(
      '--operator-user <user>',
      'the operator\'s identity, whose Lease renewals, replica reports and status patches the policy leaves out (default: system:serviceaccount:<namespace>:kube-audit-operator; "" keeps them)',
    )
    .option(
      '-o, --output-dir <dir>',
      `write ${APISERVER_CONFIG_FILES.webhook} and ${APISERVER_CONFIG_FILES.policy} here`,
    )
    .action(async (flags: ApiserverConfigFlags) => {
      const groupWildcard = acceptsGroupWildcard(flags.apiserverVersion);
      const kubeconfig = await webhookKubeconfig(flags);
      const sinks = await currentSinks(flags, io);
      const policies = sinks.map((s) => s.policy);
      const operatorUser = flags.operatorUser ?? defaultOperatorUser(flags.namespace);
      const exclude = operatorUser === '' ? [] : ownTrafficRules(operatorUser, flags.namespace);
      const policy = policyDocument(supersetPolicy(policies, { groupWildcard, exclude }));
      const webhookText = stringify(kubeconfig);
      // Say why the policy captures more than the sinks' rules suggest, and how to avoid it.
      const widened =
        !groupWildcard && policies.some(usesGroupWildcard)
          ? `# Rules with group "*" are widened to every API group: releases before ${GROUP_WILDCARD_SINCE.join('.')} refuse it (--apiserver-version ${GROUP_WILDCARD_SINCE.join('.')} or later keeps it).\n`
          : '';
      const own =
        exclude.length === 0
          ? ''
          : `# The first rules leave out the Lease renewals, replica reports and status patches of ${operatorUser} (--operator-user).\n`;
      const policyText = `# Superset of the policies of: ${sinks.map((s) => s.key).join(', ') || '(no sinks)'}\n${own}${widened}${stringify(policy)}`;
      if (flags.outputDir === undefined) {
        io.stdout.write(
          `# ${APISERVER_CONFIG_FILES.webhook}\n${webhookText}---\n# ${APISERVER_CONFIG_FILES.policy}\n${policyText}`,
        );
        return;
      }
      await mkdir(flags.outputDir, { recursive: true });
      const webhookPath = join(flags.outputDir, APISERVER_CONFIG_FILES.webhook);
      const policyPath = join(flags.outputDir, APISERVER_CONFIG_FILES.policy);
      // The kubeconfig may hold a token: readable by its owner only.
      await writeFile(webhookPath, webhookText, { mode: 0o600 });
      await writeFile(policyPath, policyText);
      io.stdout.write(
        `wrote ${webhookPath} and ${policyPath}; start the kube-apiserver with\n` +
          `  --audit-webhook-config-file=${webhookPath}\n  --audit-policy-file=${policyPath}\n`,
      );
    });
}

/**
 * Whether the apiserver that reads the policy accepts `group: "*"`. Without `--apiserver-version`
 * the answer is no: every apiserver of a control plane reads the file, and they run two releases
 * during an upgrade; and the file may be for another cluster than the one the sinks are read from.
 */
function acceptsGroupWildcard(version: string | undefined): boolean {
  if (version === undefined) return false;
  const match = /^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+][0-9A-Za-z.+-]*)?$/.exec(version);
  if (match === null) {
    throw new CliError(
      `--apiserver-version: expected a Kubernetes release such as 1.36 or v1.36.2, got ${JSON.stringify(version)}`,
      2,
    );
  }
  const [major, minor] = [Number(match[1]), Number(match[2])];
  const [sinceMajor, sinceMinor] = GROUP_WILDCARD_SINCE;
  return major > sinceMajor || (major === sinceMajor && minor >= sinceMinor);
}

async function webhookKubeconfig(flags: ApiserverConfigFlags): Promise<object> {
  let server: URL;
  try {
    server = new URL(flags.server);
  } catch {
    throw new CliError(`--server: expected a URL, got ${JSON.stringify(flags.server)}`, 2);
  }
  if (
    (server.protocol !== 'https:' && server.protocol !== 'http:') ||
    (server.pathname !== '/' && server.pathname !== '') ||
    server.search !== '' ||
    server.username !== ''
  ) {
    throw new CliError(
      `--server: expected the receivers' base URL (https://host[:port], no path), got ${JSON.stringify(flags.server)}`,
      2,
    );
  }
  if ((flags.clientCertFile === undefined) !== (flags.clientKeyFile === undefined)) {
    throw new CliError('--client-cert-file and --client-key-file go together', 2);
  }
  if (flags.tokenFile === undefined && flags.clientCertFile === undefined) {
    throw new CliError(
      'the receivers authenticate: give --token-file or --client-cert-file and --client-key-file',
      2,
    );
  }
  const read = async (file: string, what: string) => {
    try {
      return await readFile(file);
    } catch (err) {
      throw new CliError(`${what}: cannot read ${file}: ${(err as Error).message}`, 1, {
        cause: err,
      });
    }
  };
  const b64 = (data: Buffer) => data.toString('base64');
  const user: Record<string, string> = {};
  if (flags.tokenFile !== undefined) {
    // The format of the receivers' --token-file: the first token, skipping blanks and comments.
    user.token =
      (await read(flags.tokenFile, '--token-file'))
        .toString('utf8')
        .split('\n')
        .map((line) => line.trim())
        .find((line) => line !== '' && !line.startsWith('#')) ?? '';
    if (user.token === '') throw new CliError(`--token-file: ${flags.tokenFile} holds no token`, 1);
  }
  if (flags.clientCertFile !== undefined && flags.clientKeyFile !== undefined) {
    user['client-certificate-data'] = b64(await read(flags.clientCertFile, '--client-cert-file'));
    user['client-key-data'] = b64(await read(flags.clientKeyFile, '--client-key-file'));
  }
  const cluster: Record<string, string> = {
    // As written, not `server.origin`, which drops a port that is the scheme's default (443):
    // the same address, but not the one the user gave and looks for.
    server: `${flags.server.replace(/\/$/, '')}${RECEIVER_ROUTES.events}`,
  };
  if (flags.tlsServerName !== undefined) cluster['tls-server-name'] = flags.tlsServerName;
  if (flags.caFile !== undefined) {
    cluster['certificate-authority-data'] = b64(await read(flags.caFile, '--ca-file'));
  }
  return {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'kube-audit-operator', cluster }],
    users: [{ name: 'kube-apiserver', user }],
    contexts: [
      { name: 'default', context: { cluster: 'kube-audit-operator', user: 'kube-apiserver' } },
    ],
    'current-context': 'default',
  };
}

async function currentSinks(flags: ApiserverConfigFlags, io: CommandIO): Promise<Sink[]> {
  // Scope does not change what the apiserver must capture: the superset is of policies alone.
  const settings = { clusterWideNamespaces: [flags.namespace], requireDestination: false };
  if (flags.filename !== undefined) {
    const loaded = await loadResources(flags.filename, settings, flags.namespace);
    for (const problem of loaded.problems) io.stderr.write(`warning: skipped: ${problem}\n`);
    return loaded.sinks;
  }
  // Loaded only when reading a cluster, as `run` does.
  const { ClientNodeKubeApi, loadKubeConfig } = await import('../operator/kube-client.ts');
  let api: KubeApi;
  try {
    api = new ClientNodeKubeApi(loadKubeConfig(flags.kubeconfig));
  } catch (err) {
    throw new CliError(`cannot read the cluster: ${(err as Error).message}`, 1, { cause: err });
  }
  const sinks: Sink[] = [];
  for (const kind of ['AuditSink', 'AuditPipeline'] as const) {
    const objects = await api.listSinkResources(kind).catch((err: unknown) => {
      throw new CliError(`cannot list ${kind} resources: ${(err as Error).message}`, 1, {
        cause: err,
      });
    });
    for (const obj of objects) {
      try {
        sinks.push(sinkFromResource(obj, settings));
      } catch (err) {
        if (!(err instanceof SinkSpecError)) throw err;
        io.stderr.write(`warning: skipped: ${err.message}\n`);
      }
    }
  }
  return sinks;
}

function policyDocument(policy: Policy): object {
  return { apiVersion: 'audit.k8s.io/v1', kind: 'Policy', ...policy };
}
