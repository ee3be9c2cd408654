// The policy engine against the current kube-apiserver (etcd plus kube-apiserver 1.37, started by
// the harness): the apiserver runs a policy with the group wildcard "*" (1.36 and later) and logs
// what it decided for real kubectl work; for every event it logged, the engine decides the same
// level and keeps the same stages, and the requests a rule drops are not logged.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAuditLogLine } from '../../../src/audit/parse.ts';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { attributesFromEvent } from '../../../src/policy/attributes.ts';
import { compilePolicy, evaluatePolicy } from '../../../src/policy/checker.ts';
import { loadPolicy } from '../../../src/policy/load.ts';
import { type ControlPlane, startControlPlane } from '../../harness/controlplane.ts';
import { waitFor } from '../../support/wait.ts';
import { kubectlOk } from './kube.ts';

// Rules that only a 1.36+ apiserver accepts, mixed with named groups, first match wins.
const POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  # The scale subresource of any resource of any group.
  - level: RequestResponse
    resources: [{group: "*", resources: ["*/scale"]}]
  # Status writes of any group, the operator's own kinds included.
  - level: Request
    verbs: ["patch", "update"]
    resources: [{group: "*", resources: ["*/status"]}]
  # Reads in kube-system, of every group, are dropped.
  - level: None
    verbs: ["get", "list", "watch"]
    namespaces: ["kube-system"]
    resources: [{group: "*"}]
  # Named resources of every group, beside a named group.
  - level: Metadata
    resources: [{group: "*", resources: ["configmaps"]}, {group: "apps", resources: ["deployments"]}]
  # One ClusterRole by name.
  - level: RequestResponse
    resources: [{group: "*", resources: ["clusterroles"], resourceNames: ["audit-probe"]}]
  # Every other resource request.
  - level: Request
    resources: [{group: "*"}]
  # Non-resource requests.
  - level: Metadata
`;

const POLICY_OBJECT = loadPolicy(POLICY).policy;
const COMPILED = compilePolicy(POLICY_OBJECT);

let cp: ControlPlane;
let dir: string;
let auditLog: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kao-policy-semantics-'));
  auditLog = join(dir, 'audit.log');
  cp = await startControlPlane({
    auditPolicy: POLICY,
    extraApiserverArgs: [`--audit-log-path=${auditLog}`],
  });
});

afterAll(async () => {
  await cp?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

const must = (args: string[], input?: string) => kubectlOk(cp, args, input);

/** Every event the apiserver logged, parsed. */
async function logged(): Promise<AuditEvent[]> {
  return (await readFile(auditLog, 'utf8'))
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => parseAuditLogLine(line));
}

describe(`a policy with group "*" on the real kube-apiserver`, () => {
  it('is accepted by the apiserver, and every event it logs is the level and stage the engine decides', async () => {
    expect(cp.version).toMatch(/^1\.(3[6-9]|[4-9]\d)\./);
    await must(['apply', '-f', 'crds/']);
    await must(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
    await must(['create', 'namespace', 'semantics']);
    await must(['create', 'configmap', 'c1', '-n', 'semantics', '--from-literal=k=v']);
    await must(['create', 'deployment', 'web', '-n', 'semantics', '--image=nginx']);
    await must(['scale', 'deployment', 'web', '-n', 'semantics', '--replicas=2']);
    await must(['get', 'pods', '-n', 'kube-system']);
    await must(['get', 'configmaps', '-n', 'kube-system']);
    await must(['create', 'clusterrole', 'audit-probe', '--verb=get', '--resource=pods']);
    await must(['create', 'clusterrole', 'other-role', '--verb=get', '--resource=pods']);
    await must(['get', 'clusterrole', 'audit-probe']);
    await must(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'kube-audit.dev/v1alpha1',
        kind: 'AuditPipeline',
        metadata: { name: 'p', namespace: 'semantics' },
        spec: { policy: { rules: [{ level: 'Metadata' }] }, influxdb: INFLUX },
      }),
    );
    await must([
      'patch',
      'auditpipeline',
      'p',
      '-n',
      'semantics',
      '--subresource=status',
      '--type=merge',
      '-p',
      '{"status":{"observedGeneration":1}}',
    ]);
    await must(['get', '--raw', '/version']);

    // The log backend writes in batches; the last request is there once it is written.
    const events = await waitFor(
      'the /version request in the audit log',
      logged,
      (all) => all.some((e) => e.requestURI === '/version'),
      30_000,
    );
    let compared = 0;
    for (const event of events) {
      const decided = evaluatePolicy(COMPILED, attributesFromEvent(event));
      const what = `${event.verb} ${event.requestURI} (${event.stage})`;
      expect(decided.level, what).toBe(event.level);
      expect(decided.omitStages, what).not.toContain(event.stage);
      compared++;
    }
    expect(compared).toBeGreaterThan(20);

    const of = (match: (e: AuditEvent) => boolean) =>
      new Set(events.filter(match).map((e) => e.level));
    const ref = (e: AuditEvent) => e.objectRef ?? {};
    // Each rule decided what it should, in its own group and others'.
    expect(of((e) => ref(e).subresource === 'scale')).toEqual(new Set(['RequestResponse']));
    expect(
      of((e) => ref(e).resource === 'auditpipelines' && ref(e).subresource === 'status'),
    ).toEqual(new Set(['Request']));
    expect(of((e) => ref(e).resource === 'configmaps' && ref(e).namespace === 'semantics')).toEqual(
      new Set(['Metadata']),
    );
    // resourceNames: the get of that one role matches; its create does not, since the policy of a
    // create on the collection sees no name yet (ADR 0002).
    expect(of((e) => ref(e).name === 'audit-probe' && e.verb === 'get')).toEqual(
      new Set(['RequestResponse']),
    );
    expect(of((e) => ref(e).name === 'audit-probe' && e.verb === 'create')).toEqual(
      new Set(['Request']),
    );
    expect(of((e) => ref(e).name === 'other-role')).toEqual(new Set(['Request']));
    expect(of((e) => e.requestURI === '/version')).toEqual(new Set(['Metadata']));
    // Dropped by the None rule in every group: no read in kube-system was logged.
    expect(events.filter((e) => ref(e).namespace === 'kube-system' && e.verb === 'list')).toEqual(
      [],
    );
    // And no RequestReceived stage at all.
    expect(events.filter((e) => e.stage === 'RequestReceived')).toEqual([]);
  });
});

const INFLUX = {
  url: 'http://127.0.0.1:8086',
  org: 'o',
  bucket: 'b',
  tokenSecretRef: { name: 't', key: 'token' },
};
