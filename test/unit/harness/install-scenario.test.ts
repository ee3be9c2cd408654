// What the install scenario (test/e2e/node/install.test.ts) reads out of the documents users
// follow and out of the kernel, checked without a cluster: the README's install command, the
// blocks and flags of the chart's notes, a container process's facts from /proc. Pure functions
// on text; starts nothing.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { capabilityCount, processFacts } from '../../e2e/node/cluster.ts';
import {
  apiserverFlags,
  noteBlock,
  noteBlocks,
  notesOf,
  shellBlock,
} from '../../e2e/node/notes.ts';

const README = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');

/** Notes as `helm install` prints them, in the shape of the chart's NOTES.txt. */
const HELM_OUTPUT = `NAME: kube-audit-operator
STATUS: deployed

NOTES:
kube-audit-operator 0.1.0 is installed in the namespace kube-audit.

1. Write the webhook kubeconfig:

  kubectl -n kube-audit exec deployment/kube-audit-operator -c operator -- \\
    /nodejs/bin/node /app/dist/main.js apiserver-config --namespace kube-audit \\
    > apiserver-config.yaml

   Split them:

  (umask 077; awk '/^# audit-/ { f = $2; next } { print > f }' apiserver-config.yaml)

2. Start every kube-apiserver with:

  --audit-webhook-config-file=/etc/kubernetes/audit/audit-webhook.kubeconfig
  --audit-policy-file=/etc/kubernetes/audit/audit-policy.yaml

   The last one is optional.
`;

describe("the README's install command", () => {
  it('is the one helm install of the section, without its list indentation', () => {
    expect(shellBlock(README, 'Install on a cluster', 'helm install')).toBe(
      'helm install kube-audit-operator charts/kube-audit-operator --namespace kube-audit \\\n' +
        '  --create-namespace --set service.clusterIP=10.96.0.50',
    );
  });

  it('fails on a missing section or a marker that no block has', () => {
    expect(() => shellBlock(README, 'Install on the moon', 'helm')).toThrow('no section');
    expect(() => shellBlock(README, 'Install on a cluster', 'rm -rf')).toThrow('0 sh blocks');
  });
});

describe("the chart's notes", () => {
  const notes = notesOf(HELM_OUTPUT);

  it('start after the NOTES line', () => {
    expect(notes.startsWith('kube-audit-operator 0.1.0 is installed')).toBe(true);
    expect(() => notesOf('NAME: x\n')).toThrow('no NOTES');
  });

  it('have blocks of two-space lines, continuation lines kept', () => {
    expect(noteBlocks(notes)).toEqual([
      'kubectl -n kube-audit exec deployment/kube-audit-operator -c operator -- \\\n' +
        '  /nodejs/bin/node /app/dist/main.js apiserver-config --namespace kube-audit \\\n' +
        '  > apiserver-config.yaml',
      "(umask 077; awk '/^# audit-/ { f = $2; next } { print > f }' apiserver-config.yaml)",
      '--audit-webhook-config-file=/etc/kubernetes/audit/audit-webhook.kubeconfig\n' +
        '--audit-policy-file=/etc/kubernetes/audit/audit-policy.yaml',
    ]);
    expect(noteBlock(notes, '(umask 077')).toContain('awk');
    expect(() => noteBlock(notes, 'helm upgrade')).toThrow('0 blocks');
  });

  it('print the kube-apiserver flags as one block', () => {
    expect(apiserverFlags(notes)).toEqual([
      '--audit-webhook-config-file=/etc/kubernetes/audit/audit-webhook.kubeconfig',
      '--audit-policy-file=/etc/kubernetes/audit/audit-policy.yaml',
    ]);
  });
});

describe("a container process's facts", () => {
  const status = [
    'Name:\tnode',
    'Uid:\t65532\t65532\t65532\t65532',
    'Gid:\t65532\t65532\t65532\t65532',
    'CapEff:\t0000000000000000',
    'NoNewPrivs:\t1',
  ].join('\n');
  const mount = (root: string) =>
    [
      `2049 1980 0:123 / / ${root},relatime master:1 - overlay overlay rw,lowerdir=/l`,
      '2050 2049 0:125 / /proc rw,nosuid - proc proc rw',
      '2060 2049 0:44 / /var/lib/kube-audit rw,relatime - tmpfs tmpfs rw',
    ].join('\n');

  it('read user, group, capabilities, no-new-privileges and a read-only root', () => {
    expect(processFacts(status, mount('ro'))).toEqual({
      uid: 65532,
      gid: 65532,
      capEff: '0000000000000000',
      noNewPrivs: true,
      readOnlyRoot: true,
    });
    expect(processFacts(status, mount('rw')).readOnlyRoot).toBe(false);
  });

  it('fail on a status without a field or mounts without a root', () => {
    expect(() => processFacts('Name:\tnode', mount('ro'))).toThrow('no Uid');
    expect(() => processFacts(status, '2050 2049 0:125 / /proc rw - proc proc rw')).toThrow(
      'no root mount',
    );
  });

  it('count the capabilities of a CapEff mask', () => {
    expect(capabilityCount('0000000000000000')).toBe(0);
    // Docker's default set: 14 capabilities.
    expect(capabilityCount('00000000a80425fb')).toBe(14);
    expect(capabilityCount('000001ffffffffff')).toBe(41);
  });
});
