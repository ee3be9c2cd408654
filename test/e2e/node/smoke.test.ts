/**
 * The single-node cluster works as the scenarios on it need: a Ready node, ServiceAccounts, a
 * Deployment from a locally built image, a ClusterIP pinned to a fixed address that answers from
 * the host, pods reaching the API through 10.96.0.1 with their tokens and resolving nothing,
 * container memory from the cgroups, and a kube-apiserver restarted with extra flags.
 *
 * Uses the run's cluster (the `node` build of test/harness/builds.ts): etcd, kube-apiserver,
 * kube-controller-manager, kube-scheduler, kubelet, kube-proxy and containerd, all real.
 */
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify as toYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtValue } from '../../harness/builds.ts';
import {
  API_SERVICE_IP,
  attachNode,
  NODE_IP,
  NODE_NAME,
  type NodeCluster,
} from '../../harness/node.ts';
import { goImage } from '../../harness/oci-image.ts';
import { eventually } from '../../support/wait.ts';

const run = promisify(execFile);

const NAMESPACE = 'node-smoke';
const PROBE_IMAGE = 'localhost/kube-audit-operator/nodeprobe:1';
/** A fixed ClusterIP, as the chart pins its receiver's. */
const SERVICE_IP = '10.96.0.80';

/** One GET over plain HTTP; resolves with the body of a 200. */
function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { timeout: 3_000, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        res.statusCode === 200
          ? resolve(Buffer.concat(chunks).toString('utf8'))
          : reject(new Error(`GET ${url}: HTTP ${res.statusCode}`)),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on('error', reject);
    req.end();
  });
}

describe('the single-node cluster', () => {
  const connection = builtValue('node');
  let node: NodeCluster;

  async function kubectl(args: string[], input?: string): Promise<string> {
    const r = await node.kubectl(args, input === undefined ? {} : { input });
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }

  beforeAll(async () => {
    node = attachNode();
    await kubectl(['create', 'namespace', NAMESPACE]);
  });

  afterAll(async () => {
    console.log(
      `node: started in ${JSON.stringify(connection.timings)} ms; memory (MiB): ${JSON.stringify(
        Object.fromEntries(
          Object.entries(node.memory()).map(([k, v]) => [k, Math.round(v / 2 ** 20)]),
        ),
      )}`,
    );
    await node.kubectl(['delete', 'namespace', NAMESPACE, '--wait=false']);
  });

  it('registers a Ready node whose InternalIP is the node address', async () => {
    expect(connection.url).toBe(`https://${NODE_IP}:6443`);
    const out = JSON.parse(await kubectl(['get', 'node', NODE_NAME, '-o', 'json'])) as {
      status: {
        conditions: { type: string; status: string }[];
        addresses: { type: string; address: string }[];
        nodeInfo: { kubeletVersion: string };
      };
    };
    expect(out.status.conditions).toContainEqual(
      expect.objectContaining({ type: 'Ready', status: 'True' }),
    );
    expect(out.status.addresses).toContainEqual({ type: 'InternalIP', address: NODE_IP });
    expect(out.status.nodeInfo.kubeletVersion).toBe(`v${connection.version}`);
  });

  it('gives every namespace its default ServiceAccount', async () => {
    await eventually('the default ServiceAccount in the new namespace', async () => {
      const r = await node.kubectl(['get', 'serviceaccount', 'default', '-n', NAMESPACE]);
      return r.code === 0;
    });
  });

  it('runs a Deployment of 2 replicas from an imported image, reachable at a pinned ClusterIP from the host', async () => {
    const began = performance.now();
    const image = await goImage('nodeprobe', PROBE_IMAGE);
    await node.importImage(image.path);
    const labels = { app: 'nodeprobe' };
    const manifests = [
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'nodeprobe', namespace: NAMESPACE },
        spec: {
          replicas: 2,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              terminationGracePeriodSeconds: 1,
              containers: [
                {
                  name: 'nodeprobe',
                  image: PROBE_IMAGE,
                  imagePullPolicy: 'Never',
                  args: ['serve'],
                  ports: [{ containerPort: 8080 }],
                  readinessProbe: { httpGet: { path: '/', port: 8080 }, periodSeconds: 1 },
                },
              ],
            },
          },
        },
      },
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'nodeprobe', namespace: NAMESPACE },
        spec: { clusterIP: SERVICE_IP, selector: labels, ports: [{ port: 80, targetPort: 8080 }] },
      },
    ];
    await kubectl(['apply', '-f', '-'], manifests.map((m) => toYaml(m)).join('---\n'));
    await kubectl(['rollout', 'status', 'deployment/nodeprobe', '-n', NAMESPACE, '--timeout=150s']);
    console.log(
      `node: Deployment of 2 available ${Math.round(performance.now() - began)} ms after the image import began`,
    );

    const list = JSON.parse(
      await kubectl(['get', 'pods', '-n', NAMESPACE, '-l', 'app=nodeprobe', '-o', 'json']),
    ) as { items: { metadata: { name: string } }[] };
    const pods = list.items.map((p) => p.metadata.name);
    expect(pods).toHaveLength(2);
    // kube-proxy spreads connections over both endpoints: each pod answers sooner or later.
    const answered = new Set<string>();
    await eventually(
      'both pods answering at the pinned ClusterIP',
      async () => {
        answered.add((await get(`http://${SERVICE_IP}/`)).trim());
        return pods.every((p) => answered.has(`nodeprobe ${p}`));
      },
      60_000,
      50,
    );
  });

  it('lets a pod reach the API through 10.96.0.1 with its ServiceAccount token, resolving nothing', async () => {
    await goImage('nodeprobe', PROBE_IMAGE).then((image) => node.importImage(image.path));
    await kubectl(
      ['apply', '-f', '-'],
      toYaml({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'whoami', namespace: NAMESPACE },
        spec: {
          restartPolicy: 'Never',
          containers: [
            { name: 'whoami', image: PROBE_IMAGE, imagePullPolicy: 'Never', args: ['whoami'] },
          ],
        },
      }),
    );
    const phase = await eventually(
      'the whoami pod finished',
      async () => {
        const p = (
          await kubectl(['get', 'pod', 'whoami', '-n', NAMESPACE, '-o', 'jsonpath={.status.phase}'])
        ).trim();
        return p === 'Succeeded' || p === 'Failed' ? p : false;
      },
      120_000,
    );
    const logs = await kubectl(['logs', 'whoami', '-n', NAMESPACE]);
    expect(phase, logs).toBe('Succeeded');
    const answer = JSON.parse(logs.trim());
    expect(answer.server).toBe(`https://${API_SERVICE_IP}:443`);
    expect(answer.username).toBe(`system:serviceaccount:${NAMESPACE}:default`);
    // No resolver of the host's: at most the pod's own loopback, where nothing answers, so a
    // query never leaves the pod.
    const nameservers = [...(answer.resolvConf as string).matchAll(/^nameserver\s+(\S+)/gm)];
    expect(nameservers.map((m) => m[1]).filter((ip) => !ip?.startsWith('127.'))).toEqual([]);
  });

  it('routes the service, pod and node ranges to its own bridge and drops pod traffic bound elsewhere', async () => {
    // `ip route get` asks the kernel which way a packet would go, and sends none.
    for (const address of ['10.96.200.1', '10.244.9.9', '10.250.3.3']) {
      const { stdout } = await run('ip', ['route', 'get', address]);
      expect(stdout, address).toMatch(/ dev kao-node /);
    }
    const { stdout } = await run('iptables-save', ['-t', 'mangle']);
    expect(stdout).toMatch(
      /-A FORWARD -s 10\.244\.0\.0\/16 ! -o kao-pods -m comment --comment "kube-audit-operator node guard" -j DROP/,
    );
  });

  it("reads a container's peak memory from its cgroup", async () => {
    const pod = (
      await kubectl([
        'get',
        'pods',
        '-n',
        NAMESPACE,
        '-l',
        'app=nodeprobe',
        '-o',
        'jsonpath={.items[0].metadata.name}',
      ])
    ).trim();
    const peak = await node.containerPeakMemory(NAMESPACE, pod, 'nodeprobe');
    // A Go HTTP server: a few MiB.
    expect(peak).toBeGreaterThan(256 * 1024);
    expect(peak).toBeLessThan(128 * 2 ** 20);
  });

  it('restarts the kube-apiserver with extra flags, and again without them', async () => {
    const base = join(tmpdir(), `node-smoke-audit-${process.pid}`);
    const policy = `${base}-policy.yaml`;
    const log = `${base}.log`;
    writeFileSync(
      policy,
      toYaml({ apiVersion: 'audit.k8s.io/v1', kind: 'Policy', rules: [{ level: 'Metadata' }] }),
    );
    try {
      const began = performance.now();
      await node.restartApiserver([`--audit-policy-file=${policy}`, `--audit-log-path=${log}`]);
      console.log(`node: kube-apiserver restarted in ${Math.round(performance.now() - began)} ms`);
      await kubectl(['get', 'configmap', '-n', NAMESPACE, '--ignore-not-found']);
      await eventually('the audit log naming a configmap list', () =>
        readFileSync(log, 'utf8').includes('"resource":"configmaps"'),
      );
      await node.restartApiserver();
      expect((await node.kubectl(['get', 'node', NODE_NAME])).code).toBe(0);
    } finally {
      rmSync(policy, { force: true });
      rmSync(log, { force: true });
    }
  });
});
