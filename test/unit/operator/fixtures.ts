/**
 * What the operator's unit tests share: resources as a user writes them, a data plane that
 * records what the controller applies, a sink registry whose counters the test sets, a captured
 * logger, and one replica of the operator wired as `run` wires it, on the fake API and a manual
 * clock. Starts no process and opens no socket.
 */
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { ClusterTally } from '../../../src/operator/tally.ts';
import { type ControlledPlane, SinkController } from '../../../src/operator/controller.ts';
import { type OwnerReference, SECRET_OPT_IN_LABEL } from '../../../src/operator/kube.ts';
import { StatusPublisher } from '../../../src/operator/publisher.ts';
import { ReplicaReporter } from '../../../src/operator/reporter.ts';
import type { SinkSettings } from '../../../src/sinks/spec.ts';
import type { DestinationState, SinkStatusSnapshot } from '../../../src/sinks/status.ts';
import type { Sink } from '../../../src/sinks/types.ts';
import { createLogger, type Logger } from '../../../src/telemetry/logger.ts';
import { ReconcileMetrics } from '../../../src/telemetry/metrics.ts';
import type { FakeKubeApi } from '../../support/fake-kube-api.ts';
import { flush, type ManualClock } from '../../support/manual-clock.ts';

/** The operator's namespace: AuditSink Secrets, the Lease and the reports live here. */
export const OPERATOR_NAMESPACE = 'kube-audit';
/** The Lease's name, prefix of the report ConfigMaps. */
export const LEASE = 'kube-audit-operator';
/** The operator's sink settings: a destination is required. */
export const SINK_SETTINGS: SinkSettings = {
  clusterWideNamespaces: [OPERATOR_NAMESPACE],
  requireDestination: true,
};
/** The shared receiver's URL as the apiserver reaches it. */
export const ENDPOINT_BASE = 'https://kube-audit-operator.kube-audit.svc:8443';
/** The status interval of these tests (the default is 5 s). */
export const INTERVAL_MS = 5_000;

const API_VERSION = 'kube-audit.dev/v1alpha1';
const INFLUX = { url: 'http://influxdb.monitoring:8086', org: 'platform', bucket: 'audit' };
const CATCH_ALL = { rules: [{ level: 'Metadata' }] };

/** What varies between the pipelines of these tests. */
export interface PipelineShape {
  readonly namespace?: string;
  /** The Secret holding the InfluxDB token, key `token`. */
  readonly tokenSecret?: string;
  /** Invalid in a way the CRD schema cannot see: a port above 65535 in the URL. */
  readonly invalid?: boolean;
  /** Any difference in the spec, to make a new generation. */
  readonly bucket?: string;
}

/** An AuditPipeline as a tenant applies it. */
export function pipeline(name: string, shape: PipelineShape = {}): object {
  return {
    apiVersion: API_VERSION,
    kind: 'AuditPipeline',
    metadata: { name, namespace: shape.namespace ?? 'shop' },
    spec: { policy: CATCH_ALL, influxdb: influx(shape) },
  };
}

/** A cluster-wide AuditSink as an administrator applies it. */
export function auditSink(name: string, shape: PipelineShape = {}): object {
  return {
    apiVersion: API_VERSION,
    kind: 'AuditSink',
    metadata: { name },
    spec: { policy: { level: 'Metadata', stages: ['ResponseComplete'] }, influxdb: influx(shape) },
  };
}

function influx(shape: PipelineShape): Record<string, unknown> {
  return {
    ...INFLUX,
    ...(shape.invalid === true ? { url: 'http://influxdb.monitoring:99999' } : {}),
    ...(shape.bucket === undefined ? {} : { bucket: shape.bucket }),
    ...(shape.tokenSecret === undefined
      ? {}
      : { tokenSecretRef: { name: shape.tokenSecret, key: 'token' } }),
  };
}

/** A Secret, offered to sinks (labelled) unless `optIn` is false. */
export function secret(
  namespace: string,
  name: string,
  stringData: Record<string, string>,
  optIn = true,
): object {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name,
      namespace,
      ...(optIn ? { labels: { [SECRET_OPT_IN_LABEL]: 'true' } } : {}),
    },
    stringData,
  };
}

/** Stands in for the data plane: records each set of sinks applied and each delivery retry. */
export class RecordingPlane implements ControlledPlane {
  /** Every set applied, in order. */
  readonly applied: (readonly Sink[])[] = [];
  /** Sink keys whose delivery back-off was ended, in order. */
  readonly retried: string[] = [];
  /** Dedicated listener URLs by sink key. */
  readonly dedicated = new Map<string, string>();
  readonly registry = {
    retryNow: (key: string) => {
      this.retried.push(key);
    },
  };
  #failures: Error[] = [];

  /** The sinks running now, by key. */
  get running(): Map<string, Sink> {
    return new Map((this.applied.at(-1) ?? []).map((s) => [s.key, s]));
  }

  /** Makes the next apply fail (a spool that cannot be opened, say). */
  failNext(err: Error): void {
    this.#failures.push(err);
  }

  apply(sinks: readonly Sink[]): Promise<void> {
    this.applied.push(sinks);
    const failure = this.#failures.shift();
    return failure === undefined ? Promise.resolve() : Promise.reject(failure);
  }

  dedicatedUrls(): Map<string, string> {
    return new Map(this.dedicated);
  }
}

/** One log line as pino wrote it. */
export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly module?: string;
  readonly key?: string;
  readonly err?: { readonly message: string; readonly type: string };
  readonly [field: string]: unknown;
}

/** A logger at debug level whose lines the test reads. */
export function capturedLogger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line !== '') lines.push(JSON.parse(line) as LogLine);
      }
      done();
    },
  });
  return { log: createLogger('debug', stream), lines };
}

/** pino's numeric levels. */
export const LEVELS = { debug: 20, info: 30, warn: 40, error: 50 } as const;

/** A sink's counters and destinations, as the registry reports them. */
export type SnapshotShape = Partial<Omit<SinkStatusSnapshot, 'destinations'>> & {
  readonly influxdb?: Pick<DestinationState, 'ready' | 'reason' | 'message'>;
};

/** Stands in for the sink registry's status: the test sets each sink's counters. */
export class CountingRegistry {
  readonly #snapshots = new Map<string, SinkStatusSnapshot>();
  readonly #clock: ManualClock;

  constructor(clock: ManualClock) {
    this.#clock = clock;
  }

  /** Sets what a sink has counted since the process started. */
  set(key: string, shape: SnapshotShape): void {
    const { influxdb, ...counts } = shape;
    this.#snapshots.set(key, {
      received: 0,
      dropped: { policy: 0, namespace: 0, overflow: 0, rejected: 0 },
      deadLettered: { refused: 0, unencodable: 0 },
      written: 0,
      failed: 0,
      captureInsufficient: 0,
      lastEventTime: undefined,
      ...counts,
      destinations:
        influxdb === undefined ? {} : { influxdb: { ...influxdb, since: this.#clock.date() } },
    });
  }

  status(key: string): SinkStatusSnapshot | undefined {
    return this.#snapshots.get(key);
  }
}

/** One replica of the operator on the fake API, wired as `run` wires it. */
export interface Replica {
  readonly name: string;
  readonly controller: SinkController;
  readonly plane: RecordingPlane;
  readonly registry: CountingRegistry;
  readonly reporter: ReplicaReporter;
  readonly publisher: StatusPublisher;
  readonly metrics: Registry;
  readonly lines: LogLine[];
  /** Whether it leads; the test decides. */
  leading: boolean;
  stop(): Promise<void>;
}

/** Starts a replica: the resources listed and applied, nothing published yet. */
export async function startReplica(
  api: FakeKubeApi,
  clock: ManualClock,
  options: {
    name?: string;
    leading?: boolean;
    intervalMs?: number;
    /** The Lease that owns the reports and totals, as the elector knows it. */
    owner?: () => OwnerReference | undefined;
  } = {},
): Promise<Replica> {
  const name = options.name ?? 'kao-a';
  const intervalMs = options.intervalMs ?? INTERVAL_MS;
  const { log, lines } = capturedLogger();
  const metrics = new Registry();
  const plane = new RecordingPlane();
  const registry = new CountingRegistry(clock);
  const controller = new SinkController({
    api,
    plane,
    sinkSettings: SINK_SETTINGS,
    namespace: OPERATOR_NAMESPACE,
    endpointBase: ENDPOINT_BASE,
    log,
    metrics: new ReconcileMetrics(metrics, ['AuditSink', 'AuditPipeline']),
    clock,
  });
  const reporter = new ReplicaReporter({
    api,
    namespace: OPERATOR_NAMESPACE,
    lease: LEASE,
    replica: name,
    states: () => controller.states(),
    registry,
    log,
    intervalMs,
    heartbeatMs: intervalMs * 4,
    ...(options.owner === undefined ? {} : { owner: options.owner }),
    clock,
  });
  const replica: Replica = {
    name,
    controller,
    plane,
    registry,
    reporter,
    metrics,
    lines,
    leading: options.leading ?? true,
    publisher: new StatusPublisher({
      api,
      controller,
      tally: new ClusterTally({
        api,
        namespace: OPERATOR_NAMESPACE,
        lease: LEASE,
        log,
        expiryMs: intervalMs * 4 * 3,
        own: () => reporter.current(),
        ...(options.owner === undefined ? {} : { owner: options.owner }),
        clock,
      }),
      log,
      intervalMs,
      leading: () => replica.leading,
      clock,
    }),
    async stop() {
      replica.reporter.stop();
      replica.publisher.stop();
      await controller.stop();
    },
  };
  await controller.start();
  await flush();
  return replica;
}
