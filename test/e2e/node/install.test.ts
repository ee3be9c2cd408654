// The operator installed the way users install it, end to end, on a real cluster: the image built
// from the Dockerfile and loaded into the node, the chart installed by helm with the README's
// command, the kube-apiserver restarted with the webhook kubeconfig and policy that the chart's
// notes have `apiserver-config` print in an operator pod, posting through the chart's Service at
// its pinned ClusterIP over HTTPS with the chart's token and CA, and a real influxd on this
// machine that the pods write to. Every bucket must hold exactly what its sink's policy and tenant
// scope allow of what the apiserver recorded (the oracle of the control-plane tests), through a
// rolling update, a pod deleted under new connections to the Service, a killed container, a
// deleted pod with a persistent spool, an uninstall and a reinstall.
//
// Real processes: the run's single-node cluster (etcd, kube-apiserver, controller-manager,
// scheduler, kubelet, kube-proxy, containerd; test/harness/node.ts), the operator's image in
// its pods, influxd, kubectl, helm, bash for the commands users copy. The same file runs on kind
// (KUBE_AUDIT_E2E_CLUSTER=kind, e2e/kind/run.sh); cluster.ts is all that differs.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import type { InfluxServer } from '../../harness/influxd.ts';
import { startInfluxd } from '../../harness/influxd.ts';
import { REPORT_KEY, STATUS_PART_LABEL } from '../../../src/operator/reporter.ts';
import { eventually, waitFor } from '../../support/wait.ts';
import { AuditOracle, type WrittenBy } from '../controlplane/oracle.ts';
import { capabilityCount, type ClusterUnderTest, clusterUnderTest } from './cluster.ts';
import { apiserverFlags, noteBlock, notesOf, shellBlock } from './notes.ts';
import { operatorContainers, PodWatch, type ReplicaCounters } from './observe.ts';
import { ConfigMapStream, type StreamResult } from './traffic.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const RELEASE = 'kube-audit-operator';
const NS = 'kube-audit';
const SELECTOR = `app.kubernetes.io/instance=${RELEASE}`;
/** The chart's default memory limit (values.yaml `resources.limits.memory`). */
const MEMORY_LIMIT = 1024 ** 3;
/** The Service's DNS name, which the serving certificate carries (pod IPs it does not). */
const SERVICE_NAME = `${RELEASE}.${NS}.svc`;
/** A replica's receiver port (values.yaml `containerPort`). */
const CONTAINER_PORT = 8443;

/**
 * Values the scenario adds to the README's command. Receivers close the apiserver's connection
 * after 5 s instead of 60 s, so that a stream of half a minute sees six connections, each one
 * balanced anew by kube-proxy: with the default, the spread shows over minutes.
 */
const TEST_VALUES = { operator: { extraArgs: ['--max-connection-age-seconds=5'] } };

/**
 * The spread scenario streams for half a minute at least, and until both replicas have answered
 * batches, for 90 s at most: about 18 connections of 5 s, which all land on one replica by
 * chance once in 130,000 runs.
 */
const SPREAD_MIN_MS = 30_000;
const SPREAD_MAX_MS = 90_000;

/** The resources' buckets and `sink` tags. */
const SINKS: Record<
  string,
  WrittenBy & { kind: 'auditsink' | 'auditpipeline'; namespace?: string }
> = {
  'cluster-metadata': { kind: 'auditsink', bucket: 'kubernetes-audit', sink: 'cluster-metadata' },
  trail: {
    kind: 'auditpipeline',
    namespace: 'team-payments',
    bucket: 'audit',
    sink: 'team-payments/trail',
  },
  'a-trail': {
    kind: 'auditpipeline',
    namespace: 'team-a',
    bucket: 'team-a',
    sink: 'team-a/a-trail',
  },
};

let cluster: ClusterUnderTest;
let influx: InfluxServer;
let watch: PodWatch;
let oracle: AuditOracle;
let work: string;
let notes = '';
/** The resources applied, by name, as the oracle needs them. */
const resources: Record<string, Record<string, unknown>> = {};
/** Figures for the summary printed at the end. */
const figures: Record<string, unknown> = {};
/** Whether a scenario stopped influxd and has not started it again. */
let influxAway = false;
/** The stream of the running test, stopped if it fails. */
let stream: ConfigMapStream | undefined;

// ---- helpers ----------------------------------------------------------------------------------

async function kubectl(args: string[], input?: string): Promise<string> {
  const r = await cluster.kubectl(args, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function helm(args: string[]): Promise<string> {
  const r = await cluster.helm(args, { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`helm ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Runs a user's command with bash, kubectl and helm first on PATH, as admin; stdout. */
function shell(script: string, cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-euo', 'pipefail', '-c', script], {
      cwd,
      env: {
        ...process.env,
        KUBECONFIG: cluster.kubeconfig,
        PATH: [...cluster.binDirs, process.env.PATH ?? ''].join(':'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      const stdout = Buffer.concat(out).toString('utf8');
      if (code === 0) resolve(stdout);
      else reject(new Error(`${script}\nexited ${code}:\n${Buffer.concat(err).toString('utf8')}`));
    });
  });
}

/** The README's install command for this cluster's service range, plus the test's values. */
async function installCommand(): Promise<string> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const command = shellBlock(readme, 'Install on a cluster', 'helm install');
  expect(command).toMatch(/^helm install kube-audit-operator charts\/kube-audit-operator /);
  const values = join(work, 'test-values.yaml');
  await writeFile(values, stringify(TEST_VALUES));
  return `${command.replace('10.96.0.50', cluster.serviceIP)} -f ${values}`;
}

/** Installs with the README's command; returns its output (the notes). */
async function install(): Promise<string> {
  const out = await shell(await installCommand(), ROOT);
  await kubectl(['rollout', 'status', `deployment/${RELEASE}`, '-n', NS, '--timeout=240s']);
  return out;
}

type Status = {
  conditions?: { type: string; status: string; reason: string; message: string }[];
  received?: number;
  written?: number;
  failed?: number;
  dropped?: Record<string, number>;
};

async function status(name: string): Promise<Status> {
  const s = SINKS[name] ?? { kind: 'auditpipeline', namespace: 'team-a' };
  const ns = s.namespace === undefined ? [] : ['-n', s.namespace];
  const out = await kubectl(['get', s.kind, name, ...ns, '-o', 'json']);
  return (JSON.parse(out) as { status?: Status }).status ?? {};
}

function condition(s: Status, type: string) {
  return s.conditions?.find((c) => c.type === type);
}

async function waitReady(name: string, timeoutMs = 120_000): Promise<void> {
  let last: Status = {};
  await eventually(
    `${name} Ready`,
    async () => {
      last = await status(name);
      return condition(last, 'Ready')?.status === 'True';
    },
    timeoutMs,
    1_000,
  ).catch((err: unknown) => {
    throw new Error(`${String(err)}\nstatus: ${JSON.stringify(last)}`);
  });
}

/**
 * Waits until every running replica has written its report (ADR 0013) since `since`: each one
 * reaches the apiserver again, through the `kubernetes` Service, after the apiserver was away.
 * Its reports go out every status interval while its counters move, at least every heartbeat.
 */
async function everyReplicaReportedSince(since: Date, timeoutMs = 150_000): Promise<void> {
  await waitFor(
    `a report from every replica published after ${since.toISOString()}`,
    async () => {
      const pods = (await operatorContainers(cluster, NS, SELECTOR)).map((c) => c.pod);
      const slots = JSON.parse(
        await kubectl([
          'get',
          'configmaps',
          '-n',
          NS,
          '-l',
          `${STATUS_PART_LABEL}=replica`,
          '-o',
          'json',
        ]),
      ) as { items: { data?: Record<string, string> }[] };
      const published = new Map<string, string>();
      for (const slot of slots.items) {
        const text = slot.data?.[REPORT_KEY];
        if (text === undefined) continue;
        const report = JSON.parse(text) as { replica: string; publishedAt: string };
        published.set(report.replica, report.publishedAt);
      }
      const behind = pods.filter((pod) => {
        const at = published.get(pod);
        return at === undefined || Date.parse(at) <= since.getTime();
      });
      return { pods, behind, published: Object.fromEntries(published) };
    },
    (r) => r.pods.length === 2 && r.behind.length === 0,
    { timeoutMs, intervalMs: 1_000 },
  );
}

/** Every sink of the scenario holds exactly what the oracle expects. */
async function everyBucketExact(timeoutMs = 120_000, logSince?: number): Promise<void> {
  try {
    for (const name of Object.keys(SINKS)) {
      await oracle.expectExactly(
        SINKS[name] as WrittenBy,
        async () => oracle.expectedFor(resources[name], await oracle.loggedEvents()),
        timeoutMs,
      );
    }
  } catch (error) {
    // Events missing from a bucket were either lost here or never sent: the apiserver's webhook
    // backend says which (it logs each batch it gave up on), so a failure carries its words.
    if (logSince !== undefined && error instanceof Error) {
      const errors = await webhookErrors(logSince);
      error.message += `\napiserver webhook errors since the scenario began (${errors.length}): ${JSON.stringify(errors.slice(0, 10))}`;
    }
    throw error;
  }
}

/** The apiserver's log from `offset` on: what its webhook backend says it could not deliver. */
async function webhookErrors(offset: number): Promise<string[]> {
  const log = (await cluster.apiserverLog()).slice(offset);
  return log.split('\n').filter((l) => /audit plugin 'webhook'|x509:/i.test(l));
}

/** Where the apiserver's log ends now. */
async function apiserverLogEnd(): Promise<number> {
  return (await cluster.apiserverLog()).length;
}

/** Sent, recorded by the apiserver and written of a stream's ConfigMap creates. */
async function streamLedger(result: StreamResult): Promise<Record<string, number>> {
  const names = new Set(result.created);
  const events = (await oracle.loggedEvents()).filter(
    (e) =>
      e.verb === 'create' && names.has(e.objectRef?.name ?? '') && e.stage === 'ResponseComplete',
  );
  const ids = new Set(events.map((e) => e.auditID));
  const written = async (by: WrittenBy) =>
    [...(await oracle.written(by))].filter((k) => ids.has(k.split('/')[0] as string)).length;
  return {
    sent: result.created.length,
    failed: result.failed.length,
    recorded: ids.size,
    writtenCluster: await written(SINKS['cluster-metadata'] as WrittenBy),
    writtenTenant: await written(SINKS.trail as WrittenBy),
  };
}

/** Per replica: batches answered 200 and otherwise, events. */
function shares(
  deltas: { pod: string; id: string; delta: ReplicaCounters }[],
): Record<string, { ok: number; other: number; events: number; closed: number }> {
  return Object.fromEntries(
    deltas.map((d) => [
      `${d.pod}/${d.id.slice(0, 8)}`,
      {
        ok: d.delta.batchesOk,
        other: d.delta.batchesOther,
        events: d.delta.events,
        closed: d.delta.connectionsClosed,
      },
    ]),
  );
}

/**
 * The spool scenarios stop InfluxDB, replace containers or pods and wait for every bucket: about
 * a minute on 2 idle cores, three beside a cold build.
 */
const SPOOL_SCENARIO_TIMEOUT_MS = 360_000;

/** The chart's startup probe delay (values.yaml `probes.startupDelaySeconds`). */
const STARTUP_DELAY_SECONDS = 5;

/** A failed probe of an operator pod, as the kubelet recorded it (an `Unhealthy` Warning). */
interface ProbeFailure {
  readonly pod: string;
  readonly probe: string;
  readonly count: number;
  /** From the start of the container it probed to its first failure. */
  readonly secondsAfterStart: number | undefined;
  /** Whether it came once the pod was going away (deleted, or its container killed). */
  readonly whileEnding: boolean;
  readonly message: string;
}

interface EventJson {
  reason: string;
  message: string;
  count?: number;
  firstTimestamp?: string;
  eventTime?: string;
  involvedObject: { name: string; uid: string };
}

/** The release namespace's Events of one reason. */
async function eventsOf(reason: string): Promise<EventJson[]> {
  const out = await kubectl([
    'get',
    'events',
    '-n',
    NS,
    '--field-selector',
    `reason=${reason}`,
    '-o',
    'json',
  ]);
  return (JSON.parse(out) as { items: EventJson[] }).items.filter((e) =>
    e.involvedObject.name.startsWith(RELEASE),
  );
}

/** When an Event first happened (seconds precision). */
function firstTime(e: EventJson): number {
  return Date.parse(e.firstTimestamp ?? e.eventTime ?? '');
}

/** Every failed probe of the release's pods, with when it came after its container started. */
async function probeFailures(): Promise<ProbeFailure[]> {
  const unhealthy = await eventsOf('Unhealthy');
  // The kubelet's "Stopping container": the pod is going away (deleted, or rolled).
  const stopping = new Map<string, number>();
  for (const e of await eventsOf('Killing')) {
    const uid = e.involvedObject.uid;
    stopping.set(uid, Math.min(firstTime(e), stopping.get(uid) ?? Infinity));
  }
  await watch.poll();
  return unhealthy.map((e) => {
    const pod = e.involvedObject.name;
    const first = firstTime(e);
    // The container it probed: the pod's last one started before the failure (timestamps
    // have seconds only).
    const start = Math.max(
      ...watch
        .containers()
        .filter((c) => c.pod === pod)
        .map((c) => Date.parse(c.startedAt))
        .filter((t) => t <= first + 1_000),
    );
    const uid = e.involvedObject.uid;
    const ending = Math.min(watch.endingSince(uid) ?? Infinity, stopping.get(uid) ?? Infinity);
    return {
      pod,
      probe: /^(\w+) probe/.exec(e.message)?.[1] ?? e.message,
      count: e.count ?? 1,
      secondsAfterStart: Number.isFinite(start) ? (first - start) / 1000 : undefined,
      whileEnding: first >= ending - 1_000,
      message: e.message,
    };
  });
}

/**
 * Readiness and liveness probes never fail in a running replica's life (they wait for the startup
 * probe); only once its pod goes away, since readiness turns off first on SIGTERM and nothing
 * listens while a killed container restarts. The startup probe waits for the delay: a failure
 * before it is the kubelet probing a process that is still loading, as every new pod once
 * recorded. One after it means that start took longer than the delay (a loaded node): true, and
 * reported.
 */
async function expectNoEarlyProbe(): Promise<void> {
  const failures = await probeFailures();
  figures.probeFailures = failures.map(
    (f) =>
      `${f.pod}: ${f.probe} x${f.count} at ${f.secondsAfterStart} s${f.whileEnding ? ' (going away)' : ''}`,
  );
  expect(failures.filter((f) => f.probe !== 'Startup' && !f.whileEnding)).toEqual([]);
  expect(
    failures.filter(
      (f) =>
        !f.whileEnding &&
        (f.secondsAfterStart === undefined || f.secondsAfterStart < STARTUP_DELAY_SECONDS - 1),
    ),
  ).toEqual([]);
}

/** The CA of the operator's serving certificate (PEM). */
async function serviceCA(): Promise<string> {
  const data = await kubectl([
    'get',
    'secret',
    `${RELEASE}-tls`,
    '-n',
    NS,
    '-o',
    'jsonpath={.data.ca\\.crt}',
  ]);
  return Buffer.from(data.trim(), 'base64').toString('utf8');
}

/** The operator's containers now, by pod name. */
async function containersByPod() {
  return new Map((await operatorContainers(cluster, NS, SELECTOR)).map((c) => [c.pod, c]));
}

/** Waits until some live replica has events of the cluster sink queued; returns that container. */
async function replicaWithQueue() {
  return eventually(
    'a replica with queued events',
    async () => {
      await watch.poll();
      const live = await operatorContainers(cluster, NS, SELECTOR);
      const records = watch.containers();
      return live.find((c) => {
        const r = records.find((x) => x.id === c.id);
        return c.ready && (r?.last?.queued['AuditSink/cluster-metadata'] ?? 0) > 10;
      });
    },
    60_000,
    1_000,
  );
}

// ---- set-up -----------------------------------------------------------------------------------

beforeAll(async () => {
  const began = performance.now();
  cluster = await clusterUnderTest();
  work = await mkdtemp(join(tmpdir(), 'kao-install-test-'));
  influx = await startInfluxd({ host: cluster.hostAddress });
  const image = await cluster.loadImage();
  figures.image = {
    built: image.built,
    seconds: Math.round(image.seconds),
    sizeMB: Math.round(image.sizeBytes / 1e6),
  };
  watch = new PodWatch(cluster, NS, SELECTOR);
  watch.start();
  figures.setupSeconds = Math.round((performance.now() - began) / 1000);
}, 900_000);

afterEach(async (context) => {
  if (context.task.result?.state !== 'fail') return;
  await stream?.stop();
  stream = undefined;
  // A scenario that failed while InfluxDB was away must not fail the ones after it.
  if (influxAway) {
    await influx.restart();
    influxAway = false;
  }
  const pods = await cluster.kubectl(['get', 'pods,events', '-n', NS, '-o', 'wide']);
  console.log(
    `the operator's logs:\n${watch.logs()}\n\npods and events:\n${pods.stdout}\nwatch errors: ${watch.errors.join('; ')}`,
  );
});

afterAll(async () => {
  await stream?.stop();
  await watch?.stop();
  if (cluster !== undefined) {
    await cluster.helm(['uninstall', RELEASE, '-n', NS, '--wait', '--timeout=120s']);
    await cluster.kubectl(['delete', 'auditsinks.kube-audit.dev', '--all']);
    await cluster.kubectl(['delete', 'namespace', 'team-payments', 'team-a', '--wait=false']);
    // The spool claims go with the namespace, and only then their volumes.
    await cluster.kubectl(['delete', 'namespace', NS, '--timeout=120s']);
    await cluster.kubectl(['delete', 'pv,storageclass', '-l', 'kube-audit.dev/e2e=spool']);
    await cluster.dispose();
  }
  await influx?.dispose();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
  console.log(`install scenario on ${cluster?.name}: ${JSON.stringify(figures, null, 2)}`);
}, 300_000);

// ---- the scenario -----------------------------------------------------------------------------

describe(`the chart installed with the README's command`, () => {
  it('brings up two Ready replicas from the loaded image without a failed probe', async () => {
    const began = performance.now();
    const out = await install();
    figures.installSeconds = Math.round((performance.now() - began) / 1000);
    notes = notesOf(out);
    const containers = await operatorContainers(cluster, NS, SELECTOR);
    expect(containers.map((c) => c.ready)).toEqual([true, true]);
    // Every failed probe is a Warning Event: a normal start records none.
    await expectNoEarlyProbe();
    // The notes' paragraphs stay apart (a pinned ClusterIP once glued "1." to the one before).
    expect(notes).toContain(`(service.clusterIP).\n\n1. Write the webhook kubeconfig`);
    const pods = JSON.parse(
      await kubectl(['get', 'pods', '-n', NS, '-l', SELECTOR, '-o', 'json']),
    ) as {
      items: {
        status: {
          conditions: { type: string; lastTransitionTime: string }[];
          containerStatuses: { state: { running: { startedAt: string } } }[];
        };
      }[];
    };
    figures.secondsToReady = pods.items.map((p) => {
      const started = Date.parse(p.status.containerStatuses[0]?.state.running.startedAt ?? '');
      const ready = Date.parse(
        p.status.conditions.find((c) => c.type === 'Ready')?.lastTransitionTime ?? '',
      );
      return (ready - started) / 1000;
    });
  });

  it('runs its pods as user 65532 with a read-only root file system and no capabilities', async () => {
    for (const c of await operatorContainers(cluster, NS, SELECTOR)) {
      const p = await cluster.containerProcess(c.id);
      expect({ pod: c.pod, ...p, capabilities: capabilityCount(p.capEff) }).toEqual({
        pod: c.pod,
        ...p,
        uid: 65532,
        gid: 65532,
        noNewPrivs: true,
        readOnlyRoot: true,
        capabilities: 0,
      });
    }
  });

  it("delivers to the Service's pinned ClusterIP once the apiserver runs with the notes' configuration", async () => {
    // Sinks first, as the notes say: the policy apiserver-config prints covers the current ones.
    for (const ns of ['team-payments', 'team-a']) await kubectl(['create', 'namespace', ns]);
    await influx.createBucket('team-a');
    const writeToken = (bucket: string) =>
      influx.createToken([
        { action: 'write', bucket },
        { action: 'read', bucket },
      ]);
    // The samples, as a user adapts them: real tokens, and their InfluxDB (this one, by IP).
    const url = influx.url;
    const samples = join(ROOT, 'crds', 'samples');
    const tokens = [
      influx.token, // the AuditSink creates its bucket: an org-wide token
      await writeToken('audit'),
    ];
    const secrets = parseAllDocuments(
      await readFile(join(samples, 'influxdb-token-secrets.yaml'), 'utf8'),
    ).map((d, i) => {
      const secret = d.toJS() as { stringData: { token: string } };
      secret.stringData.token = tokens[i] as string;
      return secret;
    });
    // The payments pipeline names its own writers' tokens: the sample Secret, with a real token.
    const writers = parse(await readFile(join(samples, 'audit-writers-secret.yaml'), 'utf8')) as {
      stringData: { tokens: string };
    };
    writers.stringData.tokens = `${randomBytes(24).toString('base64url')}\n`;
    secrets.push(writers as never);
    secrets.push({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name: 'influxdb',
        namespace: 'team-a',
        labels: { 'kube-audit.dev/usable-by-sinks': 'true' },
      },
      stringData: { token: await writeToken('team-a') },
    } as never);
    await kubectl(['apply', '-f', '-'], secrets.map((s) => stringify(s)).join('---\n'));
    for (const [name, file] of [
      ['cluster-metadata', 'auditsink-cluster-metadata.yaml'],
      ['trail', 'auditpipeline-team-payments.yaml'],
    ] as const) {
      const sample = parse(await readFile(join(samples, file), 'utf8')) as {
        spec: { influxdb: Record<string, unknown> };
      };
      sample.spec.influxdb.url = url;
      sample.spec.influxdb.org = influx.org;
      resources[name] = sample;
    }
    resources['a-trail'] = {
      apiVersion: 'kube-audit.dev/v1alpha1',
      kind: 'AuditPipeline',
      metadata: { name: 'a-trail', namespace: 'team-a' },
      spec: {
        // team-a's trail: no reads, Secrets as metadata, configmaps in full, deployment writes
        // with their request bodies.
        policy: {
          omitStages: ['RequestReceived'],
          rules: [
            { level: 'None', verbs: ['get', 'list', 'watch'] },
            { level: 'Metadata', resources: [{ group: '', resources: ['secrets'] }] },
            { level: 'RequestResponse', resources: [{ group: '', resources: ['configmaps'] }] },
            {
              level: 'Request',
              resources: [{ group: 'apps', resources: ['deployments', 'deployments/scale'] }],
            },
          ],
        },
        influxdb: {
          url,
          org: influx.org,
          bucket: 'team-a',
          tokenSecretRef: { name: 'influxdb', key: 'token' },
          flushInterval: '200ms',
        },
      },
    };
    await kubectl(
      ['apply', '-f', '-'],
      Object.values(resources)
        .map((r) => stringify(r))
        .join('---\n'),
    );
    for (const name of Object.keys(SINKS)) await waitReady(name);

    // Step 1 of the notes, as printed: apiserver-config in an operator pod, then the split.
    const dir = join(work, 'apiserver');
    await shell(`mkdir -p ${dir}`, work);
    await shell(
      `${noteBlock(notes, 'apiserver-config --namespace')}\n${noteBlock(notes, '(umask 077; awk')}`,
      dir,
    );
    const webhook = await readFile(join(dir, 'audit-webhook.kubeconfig'), 'utf8');
    expect(webhook).toContain(`server: https://${cluster.serviceIP}:443/audit/v1/events`);
    expect(await readFile(join(dir, 'audit-policy.yaml'), 'utf8')).toContain('kind: Policy');
    // Step 2: the flags as printed.
    const flags = apiserverFlags(notes);
    expect(flags).toContain(
      '--audit-webhook-config-file=/etc/kubernetes/audit/audit-webhook.kubeconfig',
    );
    const began = performance.now();
    const auditLog = await cluster.configureAudit(dir, flags);
    const restarted = new Date();
    figures.apiserverRestartSeconds = Math.round((performance.now() - began) / 1000);
    oracle = new AuditOracle([cluster.adminUser], influx, auditLog, [NS]);
    // The operators outlive the restart: each replica writes to the apiserver again, whose
    // `kubernetes` Service had no endpoint while it was away, and the sinks stay Ready.
    await everyReplicaReportedSince(restarted);
    figures.replicasReportingSeconds = Math.round((Date.now() - restarted.getTime()) / 1000);
    for (const name of Object.keys(SINKS)) await waitReady(name);
    oracle.since = new Date();
  });

  it('writes to every bucket exactly what its policy and tenant scope allow of kubectl work in several namespaces', async () => {
    for (const ns of ['team-payments', 'team-a']) {
      await kubectl(['create', 'configmap', 'settings', '-n', ns, '--from-literal=mode=blue']);
      await kubectl([
        'patch',
        'configmap',
        'settings',
        '-n',
        ns,
        '-p',
        '{"data":{"mode":"green"}}',
      ]);
      await kubectl(['get', 'configmap', 'settings', '-n', ns]);
      await kubectl([
        'create',
        'secret',
        'generic',
        'db',
        '-n',
        ns,
        '--from-literal=password=hunter2',
      ]);
      await kubectl(['get', 'secret', 'db', '-n', ns, '-o', 'name']);
      await kubectl([
        'create',
        'deployment',
        'web',
        '-n',
        ns,
        '--image=localhost/none:1',
        '--replicas=0',
      ]);
      await kubectl(['scale', 'deployment', 'web', '-n', ns, '--replicas=0']);
      await kubectl(['delete', 'configmap', 'settings', '-n', ns]);
    }
    await kubectl(['create', 'configmap', 'elsewhere', '-n', 'default']);
    await kubectl(['delete', 'configmap', 'elsewhere', '-n', 'default']);
    await kubectl(['get', '--raw', '/version']);
    await everyBucketExact();
    // Secret payloads never reach a bucket, whatever the policy asks.
    const bodies = await influx.query(`
      from(bucket: "team-a") |> range(start: 0)
        |> filter(fn: (r) => r.resource == "secrets" and (r._field == "request_object" or r._field == "response_object"))`);
    expect(bodies).toEqual([]);
  });

  it('serves /metrics through the Service: 401 without a token, 403 without the role, 200 with a token bound to the metrics-reader ClusterRole', async () => {
    const ca = await serviceCA();
    const url = `https://${cluster.serviceIP}:443/metrics`;
    expect((await cluster.request({ method: 'GET', url, ca })).status).toBe(401);
    await kubectl(['create', 'serviceaccount', 'scraper', '-n', 'team-a']);
    await kubectl(['create', 'serviceaccount', 'stranger', '-n', 'team-a']);
    const token = async (sa: string) =>
      (await kubectl(['create', 'token', sa, '-n', 'team-a', '--duration=1h'])).trim();
    expect(
      (await cluster.request({ method: 'GET', url, ca, token: await token('stranger') })).status,
    ).toBe(403);
    // The binding the notes print, for this scraper.
    const bind = noteBlock(notes, 'kubectl create clusterrolebinding').replace(
      'monitoring:prometheus-k8s',
      'team-a:scraper',
    );
    await shell(bind, work);
    const scraper = await token('scraper');
    const answer = await eventually('200 with the scraper token', async () => {
      const a = await cluster.request({ method: 'GET', url, ca, token: scraper });
      return a.status === 200 ? a : undefined;
    });
    expect(answer.body).toContain('kube_audit_receiver_requests_total');
    watch.scrapeMetrics({ ca, servername: SERVICE_NAME, port: CONTAINER_PORT, token: scraper });
  });

  it('shows every sink Ready in kubectl get, with counters that add up across both replicas', async () => {
    const table = await kubectl(['get', 'auditpipelines', '-A']);
    expect(table).toMatch(/team-payments\s+trail\s+True\s+audit\s+\d+\s+\d+/);
    expect(table).toMatch(/team-a\s+a-trail\s+True\s+team-a\s+\d+\s+\d+/);
    expect(await kubectl(['get', 'aus'])).toMatch(/cluster-metadata\s+True/);
    // Status is the leader's sum of every replica's report (ADR 0013), each written at most once
    // per status interval: with the cluster's own components audited all the time, it trails the
    // replicas' live counters by up to two intervals. So it must lie between the replicas' sums
    // read before those two intervals and the sums read after it: never a count twice, never
    // more than two intervals behind. And what it says was written or dropped was received.
    const metricsKey = (name: string) => {
      const s = SINKS[name] as { kind: string; namespace?: string };
      return s.kind === 'auditsink' ? `AuditSink/${name}` : `AuditPipeline/${s.namespace}/${name}`;
    };
    const sums = async () => {
      await watch.poll();
      const live = (await operatorContainers(cluster, NS, SELECTOR)).map((c) => c.id);
      const records = watch.containers().filter((r) => live.includes(r.id) && r.last !== undefined);
      if (records.length !== 2) return undefined;
      const sum = (name: string, key: 'received' | 'written') =>
        records.reduce((n, r) => n + ((r.last as ReplicaCounters)[key][metricsKey(name)] ?? 0), 0);
      return Object.fromEntries(
        Object.keys(SINKS).map((name) => [
          name,
          { received: sum(name, 'received'), written: sum(name, 'written') },
        ]),
      );
    };
    /** Two status intervals (the chart's default, 5 s) and a little. */
    const TRAIL_MS = 12_000;
    let last: unknown;
    await eventually(
      'status between the replicas’ sums two intervals before and now',
      async () => {
        const before = await sums();
        await new Promise((resolve) => setTimeout(resolve, TRAIL_MS));
        const rows = await Promise.all(
          Object.keys(SINKS).map(async (name) => {
            const s = await status(name);
            const dropped = Object.values(s.dropped ?? {}).reduce((a, b) => a + b, 0);
            return {
              name,
              status: { received: s.received ?? 0, written: s.written ?? 0, dropped },
              failed: s.failed ?? 0,
            };
          }),
        );
        const after = await sums();
        last = { before, rows, after };
        if (before === undefined || after === undefined) return false;
        return rows.every((r) => {
          const [b, a] = [before[r.name], after[r.name]];
          return (
            b !== undefined &&
            a !== undefined &&
            r.failed === 0 &&
            r.status.received > 0 &&
            b.received <= r.status.received &&
            r.status.received <= a.received &&
            b.written <= r.status.written &&
            r.status.written <= a.written &&
            r.status.written + r.status.dropped <= r.status.received
          );
        })
          ? rows
          : false;
      },
      90_000,
      0,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${JSON.stringify(last, null, 1)}`);
    });
    figures.status = last;
  });

  it('refuses a bad AuditPipeline by the CRD schema, reports a missing token Secret in status, and neither disturbs the other sinks', async () => {
    const bad = await cluster.kubectl(['apply', '-f', '-'], {
      input: stringify({
        apiVersion: 'kube-audit.dev/v1alpha1',
        kind: 'AuditPipeline',
        metadata: { name: 'loud', namespace: 'team-a' },
        spec: {
          policy: { rules: [{ level: 'Loud' }] },
          influxdb: {
            url: influx.url,
            org: 'x',
            bucket: 'x',
            tokenSecretRef: { name: 'influxdb', key: 'token' },
          },
        },
      }),
    });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('spec.policy.rules[0].level');
    await kubectl(
      ['apply', '-f', '-'],
      stringify({
        apiVersion: 'kube-audit.dev/v1alpha1',
        kind: 'AuditPipeline',
        metadata: { name: 'no-token', namespace: 'team-a' },
        spec: {
          policy: { rules: [{ level: 'Metadata' }] },
          influxdb: {
            url: influx.url,
            org: influx.org,
            bucket: 'team-a',
            tokenSecretRef: { name: 'absent', key: 'token' },
          },
        },
      }),
    );
    const missing = await eventually('DestinationReady=False', async () => {
      const c = condition(await status('no-token'), 'DestinationReady');
      return c?.status === 'False' ? c : undefined;
    });
    expect(missing.reason).toBe('SecretNotFound');
    expect(missing.message).toContain('team-a/absent');
    // And a Warning Event on the pipeline, as `kubectl describe` shows it.
    const warning = await eventually('a SecretNotFound Warning Event', async () => {
      const events = JSON.parse(
        await kubectl([
          'get',
          'events',
          '-n',
          'team-a',
          '--field-selector',
          'involvedObject.name=no-token,type=Warning',
          '-o',
          'json',
        ]),
      ) as { items: { reason: string; message: string; involvedObject: { kind: string } }[] };
      return events.items.find((e) => e.reason === 'SecretNotFound');
    });
    expect(warning.involvedObject.kind).toBe('AuditPipeline');
    expect(warning.message).toContain('team-a/absent');
    // The others: still Ready, still writing exactly what they should.
    for (const name of Object.keys(SINKS))
      expect(condition(await status(name), 'Ready')?.status).toBe('True');
    await kubectl(['create', 'configmap', 'beside-no-token', '-n', 'team-a']);
    await everyBucketExact();
    await kubectl(['delete', 'auditpipeline', 'no-token', '-n', 'team-a']);
  });

  it('spreads a steady stream over both replicas through the Service, with no lost or refused batch', async () => {
    const logEnd = await apiserverLogEnd();
    await watch.poll();
    const mark = watch.mark();
    stream = new ConfigMapStream(cluster.kubeconfig, 'team-payments', 'spread', 250).start();
    // Half a minute, and on until both replicas have answered batches: kube-proxy picks a replica
    // at random for each connection, so a few 5 s connections can all land on one.
    const began = performance.now();
    await new Promise((resolve) => setTimeout(resolve, SPREAD_MIN_MS));
    const bothAnswered = () =>
      Object.values(shares(watch.since(mark))).filter((c) => c.ok > 0).length >= 2;
    while (performance.now() - began < SPREAD_MAX_MS) {
      await watch.poll();
      if (bothAnswered()) break;
      await new Promise((resolve) => setTimeout(resolve, 2_000));
    }
    const result = await stream.stop();
    stream = undefined;
    const stoppedAt = Date.now();
    expect(result.failed).toEqual([]);
    await everyBucketExact(undefined, logEnd);
    await watch.poll();
    // Counters scraped after the stream from every running replica: one whose /metrics did not
    // answer would look idle.
    const running = new Set((await operatorContainers(cluster, NS, SELECTOR)).map((c) => c.id));
    const stale = watch
      .containers()
      .filter((r) => running.has(r.id) && (r.scrapedAt ?? 0) < stoppedAt)
      .map((r) => `${r.pod}: ${r.scrapeError ?? 'not scraped since the stream'}`);
    expect(stale).toEqual([]);
    const replicas = shares(watch.since(mark));
    figures.spread = {
      ...(await streamLedger(result)),
      seconds: Math.round((performance.now() - began) / 1000),
      replicas,
    };
    const counts = Object.values(replicas);
    expect(counts).toHaveLength(2);
    // The apiserver's connection was closed at its age again and again, each time balanced anew.
    expect(counts.reduce((sum, c) => sum + c.closed, 0)).toBeGreaterThanOrEqual(3);
    for (const c of counts) {
      expect(c.other).toBe(0);
      expect(c.ok).toBeGreaterThan(0);
    }
    expect(await webhookErrors(logEnd)).toEqual([]);
  }, 240_000);

  it('rolls both pods on a helm upgrade that changes a value during steady traffic, keeps the serving certificate, and loses nothing', async () => {
    const tls = async () =>
      (
        await kubectl(['get', 'secret', `${RELEASE}-tls`, '-n', NS, '-o', 'jsonpath={.data}'])
      ).trim();
    const certBefore = await tls();
    const podsBefore = (await operatorContainers(cluster, NS, SELECTOR)).map((c) => c.pod);
    const logEnd = await apiserverLogEnd();
    await watch.poll();
    const mark = watch.mark();
    stream = new ConfigMapStream(cluster.kubeconfig, 'team-payments', 'upgrade', 250).start();
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const began = performance.now();
    await helm([
      'upgrade',
      RELEASE,
      join(ROOT, 'charts', 'kube-audit-operator'),
      '-n',
      NS,
      '--reuse-values',
      '--set',
      'operator.statusIntervalSeconds=3',
    ]);
    await kubectl(['rollout', 'status', `deployment/${RELEASE}`, '-n', NS, '--timeout=240s']);
    // The old pods drain for up to 25 s after the new ones are Ready.
    await eventually(
      'the old pods gone',
      async () => {
        const pods = (await operatorContainers(cluster, NS, SELECTOR)).map((c) => c.pod);
        return pods.length === 2 && pods.every((p) => !podsBefore.includes(p));
      },
      120_000,
      1_000,
    );
    figures.rollingUpdateSeconds = Math.round((performance.now() - began) / 1000);
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const result = await stream.stop();
    stream = undefined;
    expect(result.failed).toEqual([]);
    await everyBucketExact(undefined, logEnd);
    await watch.poll();
    figures.rollingUpdate = {
      ...(await streamLedger(result)),
      replicas: shares(watch.since(mark)),
    };
    expect(await tls()).toBe(certBefore);
    expect(await webhookErrors(logEnd)).toEqual([]);
    await expectNoEarlyProbe();
  });

  it('leaves the Service before closing when a pod is deleted: connections opened anew by four clients every 25 ms are all answered, the going pod still answering while kube-proxy catches up', async () => {
    const ca = await serviceCA();
    const url = `https://${cluster.serviceIP}:443/readyz`;
    const victim = (await operatorContainers(cluster, NS, SELECTOR))[0];
    if (victim === undefined) throw new Error('no operator container');
    watch.ending(victim.podUid);
    // Each request on a connection of its own, balanced anew by kube-proxy, as the apiserver's
    // next connection is: 200 from a replica that stays, 503 from the one leaving. Four clients
    // at once, since the window before kube-proxy knows may be a tenth of a second.
    const answers: { at: number; status: number | string }[] = [];
    let probing = true;
    const began = performance.now();
    const probe = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (probing) {
          const at = performance.now() - began;
          try {
            const { status } = await cluster.request({ method: 'GET', url, ca });
            answers.push({ at, status });
          } catch (err) {
            answers.push({ at, status: (err as NodeJS.ErrnoException).code ?? String(err) });
          }
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const deletedAt = performance.now() - began;
    await kubectl(['delete', 'pod', victim.pod, '-n', NS, '--wait=false']);
    await eventually(
      'the deleted pod gone and two replicas Ready',
      async () => {
        const live = await operatorContainers(cluster, NS, SELECTOR);
        return live.length === 2 && live.every((c) => c.ready && c.podUid !== victim.podUid);
      },
      120_000,
      500,
    );
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    probing = false;
    await probe;
    answers.sort((a, b) => a.at - b.at);
    const after = answers.filter((a) => a.at >= deletedAt);
    const leaving = after.filter((a) => a.status === 503);
    const lastLeaving = leaving.at(-1);
    figures.podDeletion = {
      requests: after.length,
      answeredByTheLeavingPod: leaving.length,
      lastAnswerOfTheLeavingPodMsAfterDeletion:
        lastLeaving === undefined ? undefined : Math.round(lastLeaving.at - deletedAt),
      others: after.filter((a) => a.status !== 200 && a.status !== 503),
    };
    expect(answers.filter((a) => a.at < deletedAt).every((a) => a.status === 200)).toBe(true);
    // Never refused, reset or timed out: the listener closed only after kube-proxy had caught up.
    expect(after.filter((a) => a.status !== 200 && a.status !== 503)).toEqual([]);
    // About 150 a second on the node; kind's go through `docker exec`, a few a second each.
    expect(after.length).toBeGreaterThanOrEqual(50);
  }, 180_000);

  it(
    'restarts a killed operator container in the same pod, which replays its spool: nothing acknowledged is lost',
    async () => {
      const logEnd = await apiserverLogEnd();
      // InfluxDB away: every replica acknowledges into its spool and writes nothing.
      await influx.stop();
      influxAway = true;
      stream = new ConfigMapStream(cluster.kubeconfig, 'team-payments', 'kill', 200).start();
      const victim = await replicaWithQueue();
      const queued = watch.containers().find((r) => r.id === victim.id)?.last?.queued;
      watch.ending(victim.podUid);
      await cluster.killContainer(victim.id);
      const restarted = await eventually(
        'the container started again in the same pod, and Ready',
        async () => {
          const c = (await containersByPod()).get(victim.pod);
          return c !== undefined && c.id !== victim.id && c.ready ? c : undefined;
        },
        120_000,
        1_000,
      );
      expect(restarted.podUid).toBe(victim.podUid);
      expect(restarted.restartCount).toBe(victim.restartCount + 1);
      expect(restarted.lastTermination).toBe('Error');
      await new Promise((resolve) => setTimeout(resolve, 5_000));
      const result = await stream.stop();
      stream = undefined;
      expect(result.failed).toEqual([]);
      await influx.restart();
      influxAway = false;
      // What the killed container had acknowledged and not written is only in its spool.
      await everyBucketExact(180_000, logEnd);
      await watch.poll();
      const written = watch.containers().find((r) => r.id === restarted.id)?.last?.written;
      figures.containerKill = {
        ...(await streamLedger(result)),
        queuedInKilledContainer: queued,
        writtenByItsSuccessor: written,
      };
      expect(written?.['AuditSink/cluster-metadata'] ?? 0).toBeGreaterThan(0);
      expect(await webhookErrors(logEnd)).toEqual([]);
      await expectNoEarlyProbe();
    },
    SPOOL_SCENARIO_TIMEOUT_MS,
  );

  it(
    'with spool.persistence on pre-created local PersistentVolumes, a deleted pod comes back with its spool',
    async () => {
      // The recipe for local volumes: a class without a provisioner, a volume per replica.
      await kubectl(
        ['apply', '-f', '-'],
        stringify({
          apiVersion: 'storage.k8s.io/v1',
          kind: 'StorageClass',
          metadata: { name: 'kao-local', labels: { 'kube-audit.dev/e2e': 'spool' } },
          provisioner: 'kubernetes.io/no-provisioner',
          volumeBindingMode: 'WaitForFirstConsumer',
        }),
      );
      const dirs = [await cluster.nodeDirectory('spool-0'), await cluster.nodeDirectory('spool-1')];
      for (const [i, dir] of dirs.entries()) {
        await kubectl(
          ['apply', '-f', '-'],
          stringify({
            apiVersion: 'v1',
            kind: 'PersistentVolume',
            metadata: { name: `kao-spool-${i}`, labels: { 'kube-audit.dev/e2e': 'spool' } },
            spec: {
              capacity: { storage: '1Gi' },
              accessModes: ['ReadWriteOnce'],
              persistentVolumeReclaimPolicy: 'Retain',
              storageClassName: 'kao-local',
              local: { path: dir.path },
              nodeAffinity: {
                required: {
                  nodeSelectorTerms: [
                    {
                      matchExpressions: [
                        {
                          key: 'kubernetes.io/hostname',
                          operator: 'In',
                          values: [cluster.nodeName],
                        },
                      ],
                    },
                  ],
                },
              },
            },
          }),
        );
      }
      await helm([
        'upgrade',
        RELEASE,
        join(ROOT, 'charts', 'kube-audit-operator'),
        '-n',
        NS,
        '--reuse-values',
        '--set',
        'spool.persistence.enabled=true',
        '--set',
        'spool.persistence.storageClassName=kao-local',
        '--set',
        'spool.persistence.size=1Gi',
      ]);
      await kubectl(['rollout', 'status', `statefulset/${RELEASE}`, '-n', NS, '--timeout=240s']);
      await eventually(
        'only the StatefulSet’s pods',
        async () => {
          const pods = [...(await containersByPod()).keys()].sort();
          return pods.join() === `${RELEASE}-0,${RELEASE}-1`;
        },
        120_000,
        1_000,
      );
      const claims = JSON.parse(await kubectl(['get', 'pvc', '-n', NS, '-o', 'json'])) as {
        items: { metadata: { name: string }; spec: { volumeName: string } }[];
      };
      expect(claims.items.map((c) => c.spec.volumeName).sort()).toEqual([
        'kao-spool-0',
        'kao-spool-1',
      ]);

      const logEnd = await apiserverLogEnd();
      await influx.stop();
      influxAway = true;
      stream = new ConfigMapStream(cluster.kubeconfig, 'team-payments', 'persist', 200).start();
      // The pod to delete must hold acknowledged events that only its spool has.
      const pod = `${RELEASE}-0`;
      await eventually(
        `${pod} holding queued events`,
        async () => {
          await watch.poll();
          const c = (await containersByPod()).get(pod);
          const r = watch.containers().find((x) => x.id === c?.id);
          return (r?.last?.queued['AuditSink/cluster-metadata'] ?? 0) > 10;
        },
        60_000,
        1_000,
      );
      const before = (await containersByPod()).get(pod);
      const claim = claims.items.find((c) => c.metadata.name === `spool-${pod}`)?.spec.volumeName;
      const volume = dirs[claim === 'kao-spool-0' ? 0 : 1];
      const spoolFiles = await volume?.files();
      expect(spoolFiles?.length).toBeGreaterThan(0);
      // Deleted while InfluxDB is away: its drain cannot finish, its events stay spooled.
      if (before !== undefined) watch.ending(before.podUid);
      await kubectl(['delete', 'pod', pod, '-n', NS, '--wait=true', '--timeout=120s']);
      const after = await eventually(
        `${pod} back and Ready`,
        async () => {
          const c = (await containersByPod()).get(pod);
          return c !== undefined && c.podUid !== before?.podUid && c.ready ? c : undefined;
        },
        180_000,
        1_000,
      );
      const result = await stream.stop();
      stream = undefined;
      expect(result.failed).toEqual([]);
      await influx.restart();
      influxAway = false;
      await everyBucketExact(180_000, logEnd);
      await watch.poll();
      const written = watch.containers().find((r) => r.id === after.id)?.last?.written;
      figures.persistentSpool = {
        ...(await streamLedger(result)),
        spoolFilesBeforeDeletion: spoolFiles,
        writtenByTheNewPod: written,
      };
      expect(written?.['AuditSink/cluster-metadata'] ?? 0).toBeGreaterThan(0);
      expect(await webhookErrors(logEnd)).toEqual([]);
      await expectNoEarlyProbe();
    },
    SPOOL_SCENARIO_TIMEOUT_MS,
  );

  it("keeps every operator container under the chart's memory limit throughout", async () => {
    await watch.poll();
    const records = watch.containers();
    expect(records.length).toBeGreaterThanOrEqual(6);
    figures.peakMemoryMiB = Object.fromEntries(
      records.map((r) => [`${r.pod}/${r.id.slice(0, 8)}`, Math.round(r.peakMemory / 2 ** 20)]),
    );
    for (const r of records) {
      expect(r.peakMemory, r.pod).toBeGreaterThan(0);
      expect(r.peakMemory, r.pod).toBeLessThan(MEMORY_LIMIT);
      expect(r.lastTermination, r.pod).not.toBe('OOMKilled');
    }
  });

  it('has enough RBAC from inside its pods: no API call of any replica was forbidden', async () => {
    await watch.poll();
    const containers = watch.containers();
    expect(containers.length).toBeGreaterThanOrEqual(6);
    for (const c of containers) {
      const lines = watch
        .log(c.id)
        .split('\n')
        .filter((l) => /forbidden|\b403\b/i.test(l));
      expect(lines, `${c.pod}/${c.id.slice(0, 12)}`).toEqual([]);
      // Each followed log is the container's whole life: it names the operator ready.
      expect(watch.log(c.id), c.pod).toContain('"msg":"operator ready"');
    }
  });

  it('leaves nothing of the release behind on helm uninstall but the CA, the token and the spool claims, and a reinstall delivers with the apiserver as configured', async () => {
    await watch.poll();
    const began = performance.now();
    // --wait waits for the release's objects, not for their pods.
    await helm(['uninstall', RELEASE, '-n', NS, '--wait', '--timeout=120s']);
    // The pod objects, not only their containers: the kubelet deletes them last.
    await eventually(
      'the pods gone',
      async () =>
        (await kubectl(['get', 'pods', '-n', NS, '-l', SELECTOR, '-o', 'name'])).trim() === '',
      120_000,
      1_000,
    );
    await eventually(
      'the Lease and the status reports gone',
      async () =>
        (await kubectl(['get', 'lease,configmap', '-n', NS, '-o', 'name'])).trim() ===
        'configmap/kube-root-ca.crt',
      60_000,
      1_000,
    );
    figures.uninstallSeconds = Math.round((performance.now() - began) / 1000);
    const kinds = (await kubectl(['api-resources', '--verbs=list', '--namespaced', '-o', 'name']))
      .trim()
      .split('\n')
      .filter((k) => k !== 'events' && k !== 'events.events.k8s.io');
    const left = (await kubectl(['get', kinds.join(','), '-n', NS, '-o', 'name']))
      .trim()
      .split('\n')
      .filter(
        (o) => o !== '' && o !== 'configmap/kube-root-ca.crt' && o !== 'serviceaccount/default',
      )
      .sort();
    expect(left).toEqual(
      [
        // The sample's token Secret for the AuditSink: the user's, not the release's.
        'secret/influxdb-token',
        `persistentvolumeclaim/spool-${RELEASE}-0`,
        `persistentvolumeclaim/spool-${RELEASE}-1`,
        `secret/${RELEASE}-ca`,
        `secret/${RELEASE}-token`,
      ].sort(),
    );
    // The binding the notes had us create for the scraper is ours, not the release's.
    await kubectl(['delete', 'clusterrolebinding', `${RELEASE}-metrics-reader`]);
    const clusterWide = (await kubectl(['get', 'clusterrole,clusterrolebinding', '-o', 'name']))
      .split('\n')
      .filter((o) => o.includes(RELEASE));
    expect(clusterWide).toEqual([]);
    // The CRDs stay, as Helm never deletes them.
    await kubectl(['get', 'crd', 'auditsinks.kube-audit.dev', 'auditpipelines.kube-audit.dev']);

    // A reinstall under the same name: the same CA and token, so the apiserver, configured once,
    // delivers again; and a Lease nobody holds, so status is written at once.
    const logEnd = await apiserverLogEnd();
    await install();
    const ready = performance.now();
    // While no receiver ran, the apiserver retried its batches for a few seconds and then dropped
    // them, as it does for any webhook that is down: from here on, nothing may be lost.
    oracle.since = new Date();
    const holder = await eventually(
      'a replica holding the Lease',
      async () =>
        (
          await kubectl([
            'get',
            'lease',
            RELEASE,
            '-n',
            NS,
            '-o',
            'jsonpath={.spec.holderIdentity}',
          ])
        ).trim() || undefined,
      30_000,
      250,
    );
    figures.reinstallLeaseSeconds = Math.round((performance.now() - ready) / 100) / 10;
    expect(holder).toMatch(new RegExp(`^${RELEASE}-`));
    expect(figures.reinstallLeaseSeconds as number).toBeLessThan(10);
    // Work in both tenants' namespaces: every sink has something to write.
    for (const ns of ['team-payments', 'team-a']) {
      await kubectl(['create', 'configmap', 'after-reinstall', '-n', ns]);
    }
    await everyBucketExact(undefined, logEnd);
    // Batches the apiserver began while no replica ran end in "connection refused" once their
    // retries run out, which can be after the new replicas are ready; what was sent since is
    // checked above. Any other webhook error (a certificate the apiserver no longer trusts) fails.
    const errors = await webhookErrors(logEnd);
    expect(errors.filter((l) => !/connect: connection refused/.test(l))).toEqual([]);
    // The reports again name the chart's Lease as their owner, each from its first write (a
    // replica reports only once it has read the Lease); the totals come with the first fold.
    await eventually(
      'every status report owned by the Lease',
      async () => {
        const reports = JSON.parse(
          await kubectl([
            'get',
            'configmap',
            '-n',
            NS,
            '-l',
            `kube-audit.dev/status-of=${RELEASE}`,
            '-o',
            'json',
          ]),
        ) as { items: { metadata: { ownerReferences?: { kind: string; name: string }[] } }[] };
        return (
          reports.items.length >= 2 &&
          reports.items.every(
            (r) =>
              r.metadata.ownerReferences?.length === 1 &&
              r.metadata.ownerReferences[0]?.kind === 'Lease' &&
              r.metadata.ownerReferences[0]?.name === RELEASE,
          )
        );
      },
      15_000,
      1_000,
    );
  });
});
