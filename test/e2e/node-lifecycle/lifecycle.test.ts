/**
 * Stopping the single-node cluster, and reaping one whose owner was killed, put the machine back
 * as it was: no process, mount, network namespace, iptables chain or rule, cgroup, bridge, route,
 * file outside the state directory or changed sysctl is left.
 *
 * Starts real clusters (test/harness/node.ts): it stops the run's cluster (the `node` project's
 * files ran before this one), or one of its own when run alone; then one owned by a child
 * process that it kills with SIGKILL, and the `node` global setup's next run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { stringify as toYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { SERVER_BUILDS } from '../../harness/builds.ts';
import type { HostSnapshot } from '../../harness/node-host.ts';
import {
  attachNode,
  NODE_RECORD,
  NODE_STATE_DIR,
  type NodeCluster,
  nodeRunning,
  snapshotNodeHost,
  startNode,
} from '../../harness/node.ts';
import { goImage } from '../../harness/oci-image.ts';
import { alive } from '../../harness/processes.ts';

const START_NODE = fileURLToPath(new URL('./start-node.ts', import.meta.url));
const PROBE_IMAGE = 'localhost/kube-audit-operator/nodeprobe:1';

/** Runs one pod and waits until it is Ready: a stop then has a sandbox, mounts and a netns to remove. */
async function runPod(node: NodeCluster): Promise<void> {
  await node.importImage((await goImage('nodeprobe', PROBE_IMAGE)).path);
  const pod = toYaml({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'probe', namespace: 'default' },
    spec: {
      containers: [
        { name: 'probe', image: PROBE_IMAGE, imagePullPolicy: 'Never', args: ['serve'] },
      ],
    },
  });
  for (const args of [
    ['apply', '-f', '-'],
    ['wait', '--for=condition=Ready', 'pod/probe', '--timeout=150s'],
  ]) {
    const r = await node.kubectl(args, { input: pod, timeoutMs: 170_000 });
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  }
}

/** Asserts that `after` shows nothing of a cluster that `before` did not. */
function expectNothingLeft(before: HostSnapshot, after: HostSnapshot): void {
  expect(after.processes).toEqual(before.processes);
  expect(after.mounts).toEqual([]);
  expect(after.links).toEqual(before.links);
  expect(after.routes).toEqual(before.routes);
  expect(after.iptables).toEqual(before.iptables);
  expect(after.cgroups).toEqual(before.cgroups);
  expect(after.hostDirectories).toEqual(before.hostDirectories);
  // Keys a loaded module adds (nf_conntrack's, br_netfilter's) were not there to compare.
  const changed = Object.entries(before.sysctls)
    .filter(([key, value]) => key in after.sysctls && after.sysctls[key] !== value)
    .map(([key, value]) => `${key}: ${value} -> ${after.sysctls[key]}`);
  expect(changed).toEqual([]);
  expect(existsSync(NODE_STATE_DIR)).toBe(false);
  expect(existsSync(NODE_RECORD)).toBe(false);
}

/** Resolves when the child prints `ready`; rejects with its output if it exits first. */
function ready(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes('ready\n')) resolve();
    });
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.once('exit', (code, signal) =>
      reject(new Error(`start-node.ts exited (${code ?? signal}) before ready:\n${output}`)),
    );
  });
}

describe('the single-node cluster', () => {
  it('leaves nothing behind when stopped', async () => {
    const node = nodeRunning() ? attachNode() : await startNode();
    await runPod(node);
    const began = performance.now();
    await node.stop();
    console.log(`node: stopped in ${Math.round(performance.now() - began)} ms`);
    expectNothingLeft(node.hostBefore, await snapshotNodeHost());
  });

  it('is reaped completely by the next global setup after its owner was killed', async () => {
    const before = await snapshotNodeHost();
    const owner = spawn(process.execPath, [START_NODE], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise((resolve) => owner.once('exit', resolve));
    try {
      await ready(owner);
      await runPod(attachNode());
      // `<pid> <command line>` of each: a new cluster's have the same commands but other pids.
      const running = (await snapshotNodeHost()).processes;
      owner.kill('SIGKILL');
      await exited;
      // The cluster outlives its owner, as after a crash.
      expect(running.filter((p) => alive(Number(p.split(' ')[0]))).length).toBeGreaterThan(5);
      expect(nodeRunning()).toBe(false);

      // What the next run's global setup does: start its cluster, reaping the crashed one first.
      const started = await SERVER_BUILDS.node.ensure();
      try {
        const now = (await snapshotNodeHost()).processes;
        expect(now.filter((p) => running.includes(p))).toEqual([]);
        expect(nodeRunning()).toBe(true);
      } finally {
        await SERVER_BUILDS.node.release?.(started);
      }
      expectNothingLeft(before, await snapshotNodeHost());
    } finally {
      owner.kill('SIGKILL');
    }
  });
});
