// The kind end-to-end setup (e2e/kind/), checked without Docker: every YAML file parses, the
// cluster config wires the audit flags to the mounted directory and the audit log to where
// test/e2e/node/on-kind.ts reads it, the placeholders load, and run.sh is valid bash that agrees
// with the config and runs the node test's install scenario against kind. Starts only `bash -n`,
// which parses the script without running it.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { loadPolicy } from '../../src/policy/load.ts';
import { KIND_AUDIT_LOG, KIND_AUDIT_MOUNT, KIND_SERVICE_IP } from '../e2e/node/on-kind.ts';

const dir = new URL('../../e2e/kind/', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, dir), 'utf8');
const runSh = read('run.sh');

/** Every document of a YAML file, failing on any parse error or warning. */
function documents(path: string): Record<string, unknown>[] {
  return parseAllDocuments(read(path)).map((doc) => {
    expect(doc.errors, `${path}: ${doc.errors.join('; ')}`).toEqual([]);
    expect(doc.warnings, `${path}: ${doc.warnings.join('; ')}`).toEqual([]);
    return doc.toJS() as Record<string, unknown>;
  });
}

interface KindNode {
  role: string;
  extraMounts: { hostPath: string; containerPath: string; readOnly?: boolean }[];
  kubeadmConfigPatches: string[];
}

const kindConfig = documents('kind-config.yaml')[0] as {
  kind: string;
  apiVersion: string;
  networking: { serviceSubnet: string };
  nodes: KindNode[];
};
const controlPlane = kindConfig.nodes[0] as KindNode;

/** The ClusterConfiguration patches, by kubeadm API version. */
const patches = new Map(
  controlPlane.kubeadmConfigPatches.map((text) => {
    const patch = parse(text) as { apiVersion: string; kind: string; apiServer: ApiServerPatch };
    expect(patch.kind).toBe('ClusterConfiguration');
    return [patch.apiVersion, patch.apiServer] as const;
  }),
);

interface ApiServerPatch {
  extraArgs: Record<string, string> | { name: string; value: string }[];
  extraVolumes: { name: string; hostPath: string; mountPath: string; readOnly?: boolean }[];
}

/** The apiserver flags a patch sets, whichever form its kubeadm version uses. */
function flags(patch: ApiServerPatch): Record<string, string> {
  return Array.isArray(patch.extraArgs)
    ? Object.fromEntries(patch.extraArgs.map((a) => [a.name, a.value]))
    : patch.extraArgs;
}

/** `a.b.c.d` as a number, for range checks. */
function ipv4(address: string): number {
  const parts = address.split('.').map(Number);
  expect(parts).toHaveLength(4);
  return parts.reduce((n, p) => n * 256 + p, 0);
}

/** The value run.sh assigns to a variable (`NAME="value"`). */
function shellValue(name: string): string {
  const match = new RegExp(`^${name}="([^"$]*)"$`, 'm').exec(runSh);
  if (match === null) throw new Error(`run.sh does not set ${name}`);
  return match[1] as string;
}

describe('e2e/kind', () => {
  it('has valid YAML in every file', () => {
    const files = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter(
      (f) => (f.endsWith('.yaml') || f.endsWith('.kubeconfig')) && !f.startsWith('.work'),
    );
    expect(files.sort()).toEqual([
      'kind-config.yaml',
      'placeholder/audit-policy.yaml',
      'placeholder/audit-webhook.kubeconfig',
    ]);
    for (const file of files) expect(documents(file).length).toBeGreaterThan(0);
  });

  describe('kind-config.yaml', () => {
    it('is a kind cluster of one control-plane node', () => {
      expect(kindConfig).toMatchObject({ kind: 'Cluster', apiVersion: 'kind.x-k8s.io/v1alpha4' });
      expect(kindConfig.nodes.map((n) => n.role)).toEqual(['control-plane']);
    });

    it('mounts the audit directory into the node, where the apiserver flags point', () => {
      expect(controlPlane.extraMounts).toEqual([
        { hostPath: '.work/audit', containerPath: KIND_AUDIT_MOUNT, readOnly: true },
      ]);
    });

    it.each(['kubeadm.k8s.io/v1beta3', 'kubeadm.k8s.io/v1beta4'])(
      "starts the apiserver with the notes' audit flags and a JSON audit log where on-kind.ts reads it, in kubeadm %s",
      (version) => {
        const patch = patches.get(version);
        expect(patch, `a patch for ${version}`).toBeDefined();
        expect(flags(patch as ApiServerPatch)).toEqual({
          'audit-webhook-config-file': `${KIND_AUDIT_MOUNT}/audit-webhook.kubeconfig`,
          'audit-policy-file': `${KIND_AUDIT_MOUNT}/audit-policy.yaml`,
          'audit-webhook-batch-max-wait': '5s',
          'audit-log-path': KIND_AUDIT_LOG,
          'audit-log-format': 'json',
        });
        expect((patch as ApiServerPatch).extraVolumes).toEqual([
          expect.objectContaining({
            hostPath: KIND_AUDIT_MOUNT,
            mountPath: KIND_AUDIT_MOUNT,
            readOnly: true,
          }),
          expect.objectContaining({
            hostPath: dirname(KIND_AUDIT_LOG),
            mountPath: dirname(KIND_AUDIT_LOG),
          }),
        ]);
      },
    );

    it('has a service range holding the ClusterIP on-kind.ts pins, the one run.sh names', () => {
      expect(shellValue('SERVICE_IP')).toBe(KIND_SERVICE_IP);
      const [network, bits] = kindConfig.networking.serviceSubnet.split('/');
      const size = 2 ** (32 - Number(bits));
      const ip = ipv4(KIND_SERVICE_IP);
      expect(ip).toBeGreaterThan(ipv4(network as string));
      expect(ip).toBeLessThan(ipv4(network as string) + size - 1);
    });
  });

  describe('placeholder/', () => {
    it('has a policy that records nothing', () => {
      const { policy } = loadPolicy(read('placeholder/audit-policy.yaml'), 'placeholder');
      expect(policy.rules).toEqual([{ level: 'None' }]);
    });

    it('has a webhook kubeconfig pointing at the pinned ClusterIP', () => {
      const config = documents('placeholder/audit-webhook.kubeconfig')[0] as {
        clusters: { cluster: { server: string } }[];
        'current-context': string;
      };
      expect(config.clusters[0]?.cluster.server).toBe(
        `https://${KIND_SERVICE_IP}:${shellValue('SERVICE_PORT')}/audit/v1/events`,
      );
      expect(config['current-context']).toBe('default');
    });

    it('has both files under the names the apiserver flags give', () => {
      const args = flags(patches.get('kubeadm.k8s.io/v1beta3') as ApiServerPatch);
      for (const flag of ['audit-webhook-config-file', 'audit-policy-file']) {
        const file = (args[flag] as string).replace(`${KIND_AUDIT_MOUNT}/`, 'placeholder/');
        expect(read(file).length).toBeGreaterThan(0);
      }
    });
  });

  describe('run.sh', () => {
    it('is valid bash', () => {
      execFileSync('bash', ['-n', fileURLToPath(new URL('run.sh', dir))]);
    });

    it('stops at the first failing command', () => {
      expect(runSh).toMatch(/^#!\/usr\/bin\/env bash\n/);
      expect(runSh).toMatch(/^set -euo pipefail$/m);
    });

    it('checks for the tools it needs', () => {
      expect(runSh).toMatch(/for tool in docker kind kubectl helm npx; do/);
    });

    it('rewrites exactly the audit hostPath of kind-config.yaml', () => {
      expect(runSh).toContain(`s|hostPath: \\"${controlPlane.extraMounts[0]?.hostPath}\\"|`);
    });

    it("runs the node test's install scenario on kind, with what on-kind.ts requires", () => {
      expect(runSh).toMatch(
        /KUBE_AUDIT_E2E_CLUSTER=kind KIND_CLUSTER_NAME="\$\{CLUSTER\}" KIND_AUDIT_DIR="\$\{audit_dir\}" \\\n\s+npx vitest run --project node test\/e2e\/node\/install\.test\.ts$/m,
      );
      expect(existsSync(new URL('../e2e/node/install.test.ts', import.meta.url))).toBe(true);
    });
  });
});
