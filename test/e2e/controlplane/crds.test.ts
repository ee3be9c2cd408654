// The CRDs of crds/ on a real control plane: etcd plus kube-apiserver 1.37, started by the harness,
// driven with the real kubectl. The apiserver accepts the CRDs (structural schemas, CEL within its
// cost budget), serves the samples and the valid edge cases, prints the columns, explains every
// field, applies the schema defaults the operator expects, and refuses at apply time each invalid
// manifest that the schema can catch, naming the field.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SinkSettings, sinkFromResource } from '../../../src/sinks/spec.ts';
import type { Sink } from '../../../src/sinks/types.ts';
import { type ControlPlane, startControlPlane } from '../../harness/controlplane.ts';
import { CRD_DIR, SAMPLES_DIR, samples } from '../../support/crd-schema.ts';
import {
  INVALID_NAMESPACE,
  INVALID_RESOURCES,
  namesField,
} from '../../support/invalid-resources.ts';
import { VALID_NAMESPACE, VALID_RESOURCES } from '../../support/valid-resources.ts';

const OPERATOR: SinkSettings = { clusterWideNamespaces: ['kube-audit'], requireDestination: true };

const CRD_NAMES = ['auditsinks.kube-audit.dev', 'auditpipelines.kube-audit.dev'];

let cp: ControlPlane;

/** Runs kubectl and fails the test, with kubectl's stderr, unless it succeeds. */
async function kubectl(args: string[], input?: string): Promise<string> {
  const result = await cp.kubectl(args, input === undefined ? {} : { input });
  if (result.code !== 0) {
    throw new Error(`kubectl ${args.join(' ')} exited ${result.code}:\n${result.stderr}`);
  }
  return result.stdout;
}

/** A sink without what differs between a manifest and its stored copy. */
function shape(sink: Sink): Omit<Sink, 'compiledPolicy' | 'generation'> {
  const { compiledPolicy: _compiled, generation: _generation, ...rest } = sink;
  return rest;
}

/** The header and rows of a `kubectl get` table, split on runs of spaces. */
function table(stdout: string): string[][] {
  return stdout
    .trim()
    .split('\n')
    .map((line) => line.trim().split(/\s{2,}/));
}

beforeAll(async () => {
  cp = await startControlPlane();
  await kubectl(['apply', '-f', fileURLToPath(CRD_DIR)]);
  await kubectl([
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    ...CRD_NAMES.map((name) => `crd/${name}`),
  ]);
  for (const namespace of ['kube-audit', 'team-payments', INVALID_NAMESPACE, VALID_NAMESPACE]) {
    await kubectl(['create', 'namespace', namespace]);
  }
});

afterAll(async () => {
  await cp?.stop();
});

describe('the CRDs on kube-apiserver 1.37', () => {
  it.each(CRD_NAMES)('accepts %s as structural and establishes it', async (name) => {
    const crd = JSON.parse(await kubectl(['get', 'crd', name, '-o', 'json'])) as {
      status: { conditions: { type: string; status: string }[] };
    };
    const conditions = Object.fromEntries(crd.status.conditions.map((c) => [c.type, c.status]));
    expect(conditions).toMatchObject({ NamesAccepted: 'True', Established: 'True' });
    expect(conditions.NonStructuralSchema).toBeUndefined();
  });

  it('applies every sample', async () => {
    const out = await kubectl(['apply', '-f', fileURLToPath(SAMPLES_DIR)]);
    expect(out).toContain('auditpipeline.kube-audit.dev/trail created');
    expect(out).toContain('auditsink.kube-audit.dev/mysink created');
  });

  it('stores each sample so that the operator builds the same sink from it, defaults applied', async () => {
    for (const { resource } of samples()) {
      if (resource.kind === 'Secret') continue;
      const metadata = resource.metadata as { name: string; namespace?: string };
      const stored = JSON.parse(
        await kubectl([
          'get',
          String(resource.kind),
          metadata.name,
          ...(metadata.namespace === undefined ? [] : ['-n', metadata.namespace]),
          '-o',
          'json',
        ]),
      ) as Record<string, unknown>;
      const fromStored = sinkFromResource(stored, OPERATOR);
      expect(fromStored.generation).toBe(1);
      expect(shape(fromStored)).toEqual(shape(sinkFromResource(resource, OPERATOR)));
    }
  });

  it('fills in the removed API’s defaults and the InfluxDB defaults', async () => {
    const legacy = JSON.parse(await kubectl(['get', 'auditsink', 'mysink', '-o', 'json'])) as {
      spec: { webhook: { throttle: unknown } };
    };
    expect(legacy.spec.webhook.throttle).toEqual({ qps: 10, burst: 15 });
    const sink = JSON.parse(
      await kubectl(['get', 'auditsink', 'cluster-metadata', '-o', 'json']),
    ) as { spec: { influxdb: Record<string, unknown> } };
    expect(sink.spec.influxdb).toMatchObject({
      measurement: 'kubernetes_audit',
      batchSize: 2500,
      flushInterval: '1s',
    });
  });

  it('lists pipelines with Ready, Bucket, Received, Written and Age, from the status', async () => {
    await kubectl([
      'patch',
      'auditpipeline',
      'trail',
      '-n',
      'team-payments',
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({
        status: {
          observedGeneration: 1,
          conditions: [
            {
              type: 'Ready',
              status: 'True',
              reason: 'Delivered',
              message: 'receiving and writing',
              lastTransitionTime: '2026-01-20T10:00:00Z',
              observedGeneration: 1,
            },
            {
              type: 'CaptureSufficient',
              status: 'False',
              reason: 'MetadataOnly',
              message: 'the kube-apiserver sends Metadata; rule 2 asks for RequestResponse',
              lastTransitionTime: '2026-01-20T10:00:00Z',
            },
          ],
          received: 12,
          written: 9,
          failed: 0,
          dropped: { policy: 3, namespace: 40, overflow: 0, rejected: 0 },
          lastEventTime: '2026-01-20T10:00:05Z',
          endpoint: 'https://10.0.0.10:8443/audit/v1/pipelines/team-payments/trail',
        },
      }),
    ]);
    const [header, row] = table(await kubectl(['get', 'auditpipelines', '-A']));
    expect(header).toEqual(['NAMESPACE', 'NAME', 'READY', 'BUCKET', 'RECEIVED', 'WRITTEN', 'AGE']);
    expect(row?.slice(0, 6)).toEqual(['team-payments', 'trail', 'True', 'audit', '12', '9']);
    const [wide] = table(await kubectl(['get', 'apl', '-A', '-o', 'wide']));
    expect(wide).toEqual([
      'NAMESPACE',
      'NAME',
      'READY',
      'BUCKET',
      'RECEIVED',
      'WRITTEN',
      'FAILED',
      'ENDPOINT',
      'AGE',
    ]);
  });

  it('refuses a status the schema does not describe', async () => {
    const result = await cp.kubectl([
      'patch',
      'auditpipeline',
      'trail',
      '-n',
      'team-payments',
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status: { received: -1 } }),
    ]);
    expect(result.code).not.toBe(0);
    expect(namesField(result.stderr, 'status.received')).toBe(true);
  });

  it('lists AuditSinks with their level, by short name and by the audit category', async () => {
    const [header] = table(await kubectl(['get', 'aus']));
    expect(header).toEqual(['NAME', 'READY', 'LEVEL', 'BUCKET', 'RECEIVED', 'WRITTEN', 'AGE']);
    const all = await kubectl(['get', 'audit', '-A', '-o', 'name']);
    expect(all.trim().split('\n').sort()).toEqual(
      expect.arrayContaining([
        'auditpipeline.kube-audit.dev/trail',
        'auditsink.kube-audit.dev/cluster-metadata',
        'auditsink.kube-audit.dev/mysink',
      ]),
    );
  });

  it('explains every field with its description', async () => {
    const level = await kubectl(['explain', 'auditsinks.spec.policy.level']);
    expect(level).toContain('How much of each request to keep');
    const rule = await kubectl(['explain', 'auditpipelines.spec.policy.rules']);
    expect(rule).toContain('nonResourceURLs');
    expect(rule).toContain('first that matches');
    const recursive = await kubectl(['explain', 'auditpipelines', '--recursive']);
    expect(recursive).toContain('tokenSecretRef');
  });
});

describe('valid manifests at the edges, on kube-apiserver 1.37', () => {
  it.each(VALID_RESOURCES.map((c) => [c.name, c] as const))('%s: applies', async (_name, c) => {
    const result = await cp.kubectl(['apply', '-f', '-'], { input: JSON.stringify(c.manifest) });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });
});

describe('invalid manifests, on kube-apiserver 1.37', () => {
  const atApply = INVALID_RESOURCES.filter((c) => c.caughtBy !== 'operator');
  const operatorOnly = INVALID_RESOURCES.filter((c) => c.caughtBy === 'operator');

  it.each(atApply.map((c) => [c.name, c] as const))(
    '%s: refused at apply time, naming the field',
    async (_name, c) => {
      const result = await cp.kubectl(['apply', '-f', '-'], { input: JSON.stringify(c.manifest) });
      expect(result.code).not.toBe(0);
      const path = c.apiserverPath ?? c.path;
      expect(namesField(result.stderr, path), `${path} in ${result.stderr}`).toBe(true);
    },
  );

  it.each(operatorOnly.map((c) => [c.name, c] as const))(
    '%s: applies, and is left to the operator’s status',
    async (_name, c) => {
      const result = await cp.kubectl(['apply', '-f', '-'], { input: JSON.stringify(c.manifest) });
      expect(result.code).toBe(0);
    },
  );
});
