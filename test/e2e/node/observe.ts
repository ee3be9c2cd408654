/**
 * Watching the operator's pods through a whole scenario, across rolling updates, container
 * restarts and deletions: their logs (`kubectl logs -f`, started as each container appears,
 * since the kubelet deletes a pod's logs with the pod), each replica's own metrics (scraped from
 * its pod IP with a metrics-reader token) and each container's peak memory from its cgroup.
 * Starts `kubectl logs -f` processes, stopped by {@link PodWatch.stop}.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { metricSum } from '../../support/metrics.ts';
import type { ClusterUnderTest } from './cluster.ts';

/** One container of an operator pod as listed. */
export interface OperatorContainer {
  readonly pod: string;
  readonly podUid: string;
  readonly podIP: string | undefined;
  /** containerd's id, without `containerd://`. */
  readonly id: string;
  readonly restartCount: number;
  /** When it started (seconds precision). */
  readonly startedAt: string;
  readonly ready: boolean;
  readonly terminating: boolean;
  /** When its pod's deletion was asked for (ms since the epoch), if it was. */
  readonly deletionRequestedAt: number | undefined;
  /** `reason` of the container's last termination (`OOMKilled`, `Error`, ...). */
  readonly lastTermination: string | undefined;
}

/** What one replica's metrics said when last scraped. */
export interface ReplicaCounters {
  /** Webhook batches (POST /audit/v1/events) answered 200, and otherwise. */
  readonly batchesOk: number;
  readonly batchesOther: number;
  /** Events in those batches. */
  readonly events: number;
  /** Connections it closed on reaching a connection limit (either). */
  readonly connectionsClosed: number;
  /** Per sink (the metrics' `sink` label): received, written, queued now. */
  readonly received: Readonly<Record<string, number>>;
  readonly written: Readonly<Record<string, number>>;
  readonly queued: Readonly<Record<string, number>>;
}

interface PodJson {
  metadata: {
    name: string;
    uid: string;
    deletionTimestamp?: string;
    deletionGracePeriodSeconds?: number;
  };
  status?: {
    podIP?: string;
    containerStatuses?: {
      name: string;
      containerID?: string;
      restartCount: number;
      ready: boolean;
      state?: { running?: { startedAt?: string } };
      lastState?: { terminated?: { reason?: string } };
    }[];
  };
}

/** The operator's containers, as the apiserver lists them now. */
export async function operatorContainers(
  cluster: ClusterUnderTest,
  namespace: string,
  selector: string,
): Promise<OperatorContainer[]> {
  const r = await cluster.kubectl(['get', 'pods', '-n', namespace, '-l', selector, '-o', 'json']);
  if (r.code !== 0) throw new Error(`kubectl get pods: ${r.stderr}`);
  const pods = (JSON.parse(r.stdout) as { items: PodJson[] }).items;
  return pods.flatMap((pod) =>
    (pod.status?.containerStatuses ?? [])
      .filter((c) => c.name === 'operator' && c.containerID !== undefined && c.state?.running)
      .map((c) => ({
        pod: pod.metadata.name,
        podUid: pod.metadata.uid,
        podIP: pod.status?.podIP,
        id: (c.containerID as string).replace(/^[a-z]+:\/\//, ''),
        restartCount: c.restartCount,
        startedAt: c.state?.running?.startedAt ?? '',
        ready: c.ready,
        terminating: pod.metadata.deletionTimestamp !== undefined,
        // deletionTimestamp is the end of the grace period the deletion gave.
        deletionRequestedAt:
          pod.metadata.deletionTimestamp === undefined
            ? undefined
            : Date.parse(pod.metadata.deletionTimestamp) -
              (pod.metadata.deletionGracePeriodSeconds ?? 0) * 1000,
        lastTermination: c.lastState?.terminated?.reason,
      })),
  );
}

/** A sink label's values in one metric, summed per sink. */
function bySink(text: string, name: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, 'gm'))) {
    const sink = /sink="([^"]*)"/.exec(m[1] as string)?.[1];
    if (sink !== undefined) out[sink] = (out[sink] ?? 0) + Number(m[2]);
  }
  return out;
}

/** The counters of one scrape. */
export function replicaCounters(text: string): ReplicaCounters {
  const all = metricSum(text, 'kube_audit_receiver_requests_total', { endpoint: 'events' });
  const ok = metricSum(text, 'kube_audit_receiver_requests_total', {
    endpoint: 'events',
    status: '200',
  });
  return {
    batchesOk: ok,
    batchesOther: all - ok,
    events: metricSum(text, 'kube_audit_receiver_events_received_total', { endpoint: 'events' }),
    connectionsClosed: metricSum(text, 'kube_audit_receiver_connections_closed_total', {}),
    received: bySink(text, 'kube_audit_sink_received_events_total'),
    written: bySink(text, 'kube_audit_sink_written_events_total'),
    queued: bySink(text, 'kube_audit_sink_queue_events'),
  };
}

/** How to reach the replicas' /metrics. */
export interface MetricsAccess {
  /** PEM of the CA that signed the serving certificate. */
  readonly ca: string;
  /** A name the serving certificate carries (pod IPs it does not). */
  readonly servername: string;
  readonly port: number;
  /** A token allowed to get /metrics. */
  readonly token: string;
}

/** Everything seen of one container. */
export interface ContainerRecord {
  readonly pod: string;
  readonly id: string;
  readonly startedAt: string;
  /** The last scrape, and the first. */
  last: ReplicaCounters | undefined;
  first: ReplicaCounters | undefined;
  /** When {@link last} was scraped (ms since the epoch). */
  scrapedAt: number | undefined;
  /** Why the latest scrape failed, if it did (cleared by the next one that succeeds). */
  scrapeError: string | undefined;
  /** The highest peak memory read from its cgroup, bytes. */
  peakMemory: number;
  lastTermination: string | undefined;
}

/** Follows the operator's pods: logs, metrics, memory. */
export class PodWatch {
  readonly #cluster: ClusterUnderTest;
  readonly #namespace: string;
  readonly #selector: string;
  readonly #logs = new Map<
    string,
    { pod: string; text: string; child: ChildProcess; exited: boolean }
  >();
  readonly #containers = new Map<string, ContainerRecord>();
  /** Per pod uid: since when it has been going away (deleted, or a container killed). */
  readonly #endings = new Map<string, number>();
  #metrics: MetricsAccess | undefined;
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> = Promise.resolve();
  #errors: string[] = [];

  constructor(cluster: ClusterUnderTest, namespace: string, selector: string) {
    this.#cluster = cluster;
    this.#namespace = namespace;
    this.#selector = selector;
  }

  /** Polls every `intervalMs` until stopped. */
  start(intervalMs = 2_000): void {
    const tick = () => {
      this.#polling = this.poll()
        .catch((err: unknown) => {
          this.#errors = [...this.#errors, String(err)].slice(-5);
        })
        .finally(() => {
          if (this.#timer !== undefined) this.#timer = setTimeout(tick, intervalMs);
        });
    };
    this.#timer = setTimeout(tick, 0);
  }

  /** Scrapes metrics too from now on. */
  scrapeMetrics(access: MetricsAccess): void {
    this.#metrics = access;
  }

  /** One round: new containers get a log follower; every running one is scraped and measured. */
  async poll(): Promise<void> {
    const containers = await operatorContainers(this.#cluster, this.#namespace, this.#selector);
    await Promise.all(
      containers.map(async (c) => {
        let record = this.#containers.get(c.id);
        if (record === undefined) {
          record = {
            pod: c.pod,
            id: c.id,
            startedAt: c.startedAt,
            last: undefined,
            first: undefined,
            scrapedAt: undefined,
            scrapeError: undefined,
            peakMemory: 0,
            lastTermination: undefined,
          };
          this.#containers.set(c.id, record);
        }
        record.lastTermination = c.lastTermination ?? record.lastTermination;
        if (c.deletionRequestedAt !== undefined) this.ending(c.podUid, c.deletionRequestedAt);
        // A follower ends with the apiserver's connection (a restart sends GOAWAY): follow again
        // from the start, which the kubelet still has while the container lives.
        if (!this.#logs.has(c.id) || this.#logs.get(c.id)?.exited === true) this.#follow(c);
        const peak = await this.#cluster.containerPeakMemory(c.id).catch(() => 0);
        record.peakMemory = Math.max(record.peakMemory, peak);
        const began = Date.now();
        try {
          const counters = await this.scrape(c);
          if (counters !== undefined) {
            record.last = counters;
            record.first ??= counters;
            record.scrapedAt = began;
            record.scrapeError = undefined;
          }
        } catch (err) {
          record.scrapeError = err instanceof Error ? err.message : String(err);
        }
      }),
    );
  }

  /**
   * One replica's counters now; undefined before {@link scrapeMetrics} or while the pod has no
   * IP; throws when the replica does not answer 200.
   */
  async scrape(c: OperatorContainer): Promise<ReplicaCounters | undefined> {
    const access = this.#metrics;
    if (access === undefined || c.podIP === undefined) return undefined;
    const answer = await this.#cluster.request({
      method: 'GET',
      url: `https://${c.podIP}:${access.port}/metrics`,
      ca: access.ca,
      servername: access.servername,
      token: access.token,
    });
    if (answer.status !== 200)
      throw new Error(`GET ${c.pod} /metrics: ${answer.status} ${answer.body.slice(0, 200)}`);
    return replicaCounters(answer.body);
  }

  /**
   * Records that a pod (by uid: a StatefulSet's new pod has the old one's name) started going
   * away at `at` (ms since the epoch): deleted, or its container killed. From then on its probes
   * fail by design (readiness off first on SIGTERM; nothing listens while it stops or restarts).
   */
  ending(podUid: string, at: number = Date.now()): void {
    this.#endings.set(podUid, Math.min(at, this.#endings.get(podUid) ?? Infinity));
  }

  /** Since when a pod (by uid) has been going away, if it has. */
  endingSince(podUid: string): number | undefined {
    return this.#endings.get(podUid);
  }

  /** Every container seen, by containerd id. */
  containers(): ContainerRecord[] {
    return [...this.#containers.values()];
  }

  /** The last counters of every container seen, for a later {@link since}. */
  mark(): Map<string, ReplicaCounters | undefined> {
    return new Map([...this.#containers].map(([id, r]) => [id, r.last]));
  }

  /**
   * Per container: what its counters grew by since `mark` (a container that appeared later:
   * since it started).
   */
  since(
    mark: Map<string, ReplicaCounters | undefined>,
  ): { pod: string; id: string; delta: ReplicaCounters }[] {
    return this.containers()
      .filter((r) => r.last !== undefined)
      .map((r) => ({
        pod: r.pod,
        id: r.id,
        delta: minus(r.last as ReplicaCounters, mark.get(r.id)),
      }));
  }

  /** Every container's log so far, each under a header, the last `chars` characters of each. */
  logs(chars = 6_000): string {
    return [...this.#logs.entries()]
      .map(([id, l]) => `---- ${l.pod} (${id.slice(0, 12)}) ----\n${l.text.slice(-chars)}`)
      .join('\n');
  }

  /** The log of one container (containerd id). */
  log(id: string): string {
    return this.#logs.get(id)?.text ?? '';
  }

  /** Errors of the last polls, for failure messages. */
  get errors(): readonly string[] {
    return this.#errors;
  }

  /** Stops polling and every log follower. */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#polling;
    for (const l of this.#logs.values()) l.child.kill('SIGTERM');
  }

  #follow(c: OperatorContainer): void {
    const child = spawn(
      this.#cluster.kubectlBinary,
      [
        `--kubeconfig=${this.#cluster.kubeconfig}`,
        'logs',
        '-f',
        '-n',
        this.#namespace,
        c.pod,
        '-c',
        'operator',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const entry = { pod: c.pod, text: '', child, exited: false };
    const keep = (chunk: Buffer) => {
      // The last MiB is plenty for a failure message and the checks.
      entry.text = (entry.text + chunk.toString('utf8')).slice(-1024 * 1024);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', () => undefined);
    child.on('exit', () => {
      entry.exited = true;
    });
    this.#logs.set(c.id, entry);
  }
}

function minus(a: ReplicaCounters, b: ReplicaCounters | undefined): ReplicaCounters {
  const sub = (x: Readonly<Record<string, number>>, y: Readonly<Record<string, number>> = {}) =>
    Object.fromEntries(Object.entries(x).map(([k, v]) => [k, v - (y[k] ?? 0)]));
  return {
    batchesOk: a.batchesOk - (b?.batchesOk ?? 0),
    batchesOther: a.batchesOther - (b?.batchesOther ?? 0),
    events: a.events - (b?.events ?? 0),
    connectionsClosed: a.connectionsClosed - (b?.connectionsClosed ?? 0),
    received: sub(a.received, b?.received),
    written: sub(a.written, b?.written),
    // A gauge: the value now.
    queued: a.queued,
  };
}
