/**
 * Prometheus metrics of the data path, per sink (SPEC 5): received, dropped by reason, written,
 * failed, queue depth and write latency; and of the operator's reconciles, per kind.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ServerLoad, ServerSlots } from '../outputs/server-slots.ts';
import type { Output } from '../outputs/types.ts';
import type { DeadLetter } from '../sinks/dead-letter.ts';
import type { SinkObserver } from '../sinks/registry.ts';
import type { Sink, SinkKind } from '../sinks/types.ts';
import type { LogObserver, LogStats } from '../spool/log/index.ts';

/**
 * What one sink was routed since the last scrape, and its counters' children. Routing reports every
 * sink on every batch (a thousand calls per batch with a thousand sinks), so it adds to plain
 * numbers; the counters take them when they are read, which is all a counter's value is for.
 */
interface RoutingTally {
  readonly received: { inc(value: number): void };
  readonly policy: { inc(value: number): void };
  readonly namespace: { inc(value: number): void };
  pending: { received: number; policy: number; namespace: number };
}

/** Sink metrics, registered in the given registry; also the registry's observer. */
export class SinkMetrics implements SinkObserver {
  readonly #received: Counter<'sink'>;
  readonly #dropped: Counter<'sink' | 'reason'>;
  readonly #written: Counter<'sink' | 'output'>;
  readonly #deadLettered: Counter<'sink' | 'output' | 'reason'>;
  readonly #failed: Counter<'sink' | 'output' | 'code'>;
  readonly #latency: Histogram<'sink' | 'output'>;
  readonly #routing = new Map<string, RoutingTally>();

  constructor(registry: Registry, queueDepths: () => ReadonlyMap<string, number>) {
    const registers = [registry];
    const collectRouting = () => this.#collectRouting();
    this.#received = new Counter({
      name: 'kube_audit_sink_received_events_total',
      help: 'Events routed to a sink, before its scope and policy.',
      labelNames: ['sink'],
      registers,
      collect: collectRouting,
    });
    this.#dropped = new Counter({
      name: 'kube_audit_sink_dropped_events_total',
      help: 'Events a sink did not keep, by reason: namespace (tenant scope), policy, overflow (queue full), rejected (refused by the destination and not kept as a dead letter).',
      labelNames: ['sink', 'reason'],
      registers,
      collect: collectRouting,
    });
    this.#written = new Counter({
      name: 'kube_audit_sink_written_events_total',
      help: 'Events delivered to a destination.',
      labelNames: ['sink', 'output'],
      registers,
    });
    this.#deadLettered = new Counter({
      name: 'kube_audit_sink_dead_letter_events_total',
      help: "Events a destination refused one by one (refused) or its output could not encode (unencodable), kept in the sink's dead-letter store.",
      labelNames: ['sink', 'output', 'reason'],
      registers,
    });
    this.#failed = new Counter({
      name: 'kube_audit_sink_write_failures_total',
      help: 'Failed write attempts, by error code; the events stay queued.',
      labelNames: ['sink', 'output', 'code'],
      registers,
    });
    this.#latency = new Histogram({
      name: 'kube_audit_sink_write_duration_seconds',
      help: 'Time to deliver one batch to a destination.',
      labelNames: ['sink', 'output'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    new Gauge({
      name: 'kube_audit_sink_queue_events',
      help: 'Events queued (and spooled) for a sink, not yet delivered to every destination.',
      labelNames: ['sink'],
      registers,
      collect() {
        this.reset();
        for (const [sink, depth] of queueDepths()) this.set({ sink }, depth);
      },
    });
  }

  routed(
    sink: Sink,
    kept: number,
    dropped: Readonly<Record<'policy' | 'namespace', number>>,
  ): void {
    // Called for every sink on every batch: the labelled children are looked up once per sink.
    let tally = this.#routing.get(sink.key);
    if (tally === undefined) {
      tally = {
        received: this.#received.labels({ sink: sink.key }),
        policy: this.#dropped.labels({ sink: sink.key, reason: 'policy' }),
        namespace: this.#dropped.labels({ sink: sink.key, reason: 'namespace' }),
        pending: { received: 0, policy: 0, namespace: 0 },
      };
      // The sink's received series exists from its first batch on, at zero if nothing came.
      tally.received.inc(0);
      this.#routing.set(sink.key, tally);
    }
    tally.pending.received += kept + dropped.policy + dropped.namespace;
    tally.pending.policy += dropped.policy;
    tally.pending.namespace += dropped.namespace;
  }

  /** Moves what routing counted since the last read into the counters; before every read. */
  #collectRouting(): void {
    for (const tally of this.#routing.values()) {
      const { pending } = tally;
      if (pending.received > 0) tally.received.inc(pending.received);
      if (pending.policy > 0) tally.policy.inc(pending.policy);
      if (pending.namespace > 0) tally.namespace.inc(pending.namespace);
      pending.received = 0;
      pending.policy = 0;
      pending.namespace = 0;
    }
  }

  overflowed(sink: Sink, count: number): void {
    this.#dropped.inc({ sink: sink.key, reason: 'overflow' }, count);
  }

  rejected(sink: Sink, _output: Output, count: number): void {
    this.#dropped.inc({ sink: sink.key, reason: 'rejected' }, count);
  }

  deadLettered(sink: Sink, output: Output, kept: readonly DeadLetter[]): void {
    for (const letter of kept) {
      this.#deadLettered.inc({ sink: sink.key, output: output.kind, reason: letter.reason });
    }
  }

  delivered(sink: Sink, output: Output, count: number, seconds: number): void {
    this.#written.inc({ sink: sink.key, output: output.kind }, count);
    this.#latency.observe({ sink: sink.key, output: output.kind }, seconds);
  }

  failed(sink: Sink, output: Output, error: Error, _count: number): void {
    const code = 'code' in error && typeof error.code === 'string' ? error.code : 'UNKNOWN';
    this.#failed.inc({ sink: sink.key, output: output.kind, code });
  }
}

/**
 * What a reconcile came to: `success` (applied, or removed), `error` (failed, retried with
 * backoff), `terminal` (an invalid spec: reported in status, not retried until it changes).
 */
export const RECONCILE_RESULTS = ['success', 'error', 'terminal'] as const;

/** One of {@link RECONCILE_RESULTS}. */
export type ReconcileOutcome = (typeof RECONCILE_RESULTS)[number];

/** The operator's reconciles, counted by kind and result and timed by kind. */
export class ReconcileMetrics {
  readonly #total: Counter<'kind' | 'result'>;
  readonly #duration: Histogram<'kind'>;

  constructor(registry: Registry, kinds: readonly SinkKind[]) {
    const registers = [registry];
    this.#total = new Counter({
      name: 'kube_audit_reconcile_total',
      help: 'Reconciles of AuditSink and AuditPipeline resources, by kind and result: success, error (retried with backoff), terminal (an invalid spec, not retried).',
      labelNames: ['kind', 'result'],
      registers,
    });
    this.#duration = new Histogram({
      name: 'kube_audit_reconcile_duration_seconds',
      help: 'Time one reconcile took, from reading the cache to the sinks applied.',
      labelNames: ['kind'],
      // From a few milliseconds (an apply) to the 5 s a reconcile waits for a new Secret's list.
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    // Every series from the start, at zero: an alert on increase() sees the first error.
    for (const kind of kinds) {
      for (const result of RECONCILE_RESULTS) this.#total.inc({ kind, result }, 0);
      this.#duration.zero({ kind });
    }
  }

  /** Records one reconcile. */
  observe(kind: SinkKind, result: ReconcileOutcome, seconds: number): void {
    this.#total.inc({ kind, result });
    this.#duration.observe({ kind }, seconds);
  }
}

/**
 * Requests to each destination server against the process's limit
 * (`--influxdb-max-requests-per-server`), read from the slots at each scrape. Labelled by the
 * server's origin (scheme, host and port): one series per server, never per sink.
 */
export function registerServerSlotMetrics(registry: Registry, slots: ServerSlots): void {
  const registers = [registry];
  const gauge = (name: string, help: string, read: (load: ServerLoad) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['server'],
      registers,
      collect() {
        this.reset();
        for (const load of slots.load()) this.set({ server: load.server }, read(load));
      },
    });
  gauge(
    'kube_audit_output_server_requests_in_flight',
    'Requests in flight to a destination server (InfluxDB), all sinks together.',
    (load) => load.inFlight,
  );
  gauge(
    'kube_audit_output_server_requests_waiting',
    'Requests waiting for a slot of a destination server, its limit of requests in flight reached.',
    (load) => load.waiting,
  );
  const counted = new Map<string, number>();
  new Counter({
    name: 'kube_audit_output_server_wait_seconds_total',
    help: 'Seconds requests spent waiting for a slot of a destination server, summed; its rate is the average number of requests waiting.',
    labelNames: ['server'],
    registers,
    collect() {
      // A counter only adds: it takes what the slots counted since the last read.
      for (const load of slots.load()) {
        this.inc({ server: load.server }, load.waitedSeconds - (counted.get(load.server) ?? 0));
        counted.set(load.server, load.waitedSeconds);
      }
    },
  });
}

/** Counters of {@link LogStats} that {@link LogMetrics} carries over to Prometheus. */
type LogCount = 'segmentReads' | 'relocations';

/**
 * The process's durable log (ADR 0019): its size on disk, which the data volume must hold, and its
 * syncs, which every acknowledgement waits for. Counters go on across a log closed with its last
 * sink and opened again.
 */
export class LogMetrics implements LogObserver {
  readonly #sync: Histogram;
  readonly #written: Counter;
  readonly #counters = new Map<LogCount, Counter>();
  #log: { stats(): LogStats } | undefined;
  // What the open log had counted when last carried over: a log's counters start at 0.
  #counted: Record<LogCount, number> = { segmentReads: 0, relocations: 0 };

  constructor(registry: Registry) {
    const registers = [registry];
    this.#sync = new Histogram({
      name: 'kube_audit_log_sync_duration_seconds',
      help: "Time the durable log's fdatasync of one record took; every acknowledgement waits for its record's.",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.#written = new Counter({
      name: 'kube_audit_log_written_bytes_total',
      help: 'Bytes of records written to the durable log: each received batch once, whatever the number of sinks, and the copies relocations make.',
      registers,
    });
    const gauge = (name: string, help: string, read: (stats: LogStats) => number) => {
      const log = () => this.#log;
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const open = log();
          if (open !== undefined) this.set(read(open.stats()));
        },
      });
    };
    gauge(
      'kube_audit_log_bytes',
      'Bytes of the durable log on disk: the segments some sink still needs. The data volume must hold it.',
      (stats) => stats.bytes,
    );
    gauge(
      'kube_audit_log_segments',
      'Segment files of the durable log on disk.',
      (stats) => stats.segments,
    );
    const counter = (count: LogCount, name: string, help: string) => {
      const carryOver = () => this.#carryOver();
      this.#counters.set(count, new Counter({ name, help, registers, collect: carryOver }));
    };
    counter(
      'segmentReads',
      'kube_audit_log_segment_reads_total',
      "Records read back from disk for a sink, having left the log's memory: sinks behind the others or their destination.",
    );
    counter(
      'relocations',
      'kube_audit_log_relocations_total',
      "Relocations of a sink far behind: its retained events copied forward so that the log's oldest segments can go.",
    );
  }

  opened(log: { stats(): LogStats }): void {
    // What the previous log counted since the last scrape is kept before its counts are left.
    this.#carryOver();
    this.#log = log;
    this.#counted = { segmentReads: 0, relocations: 0 };
  }

  wrote(bytes: number, syncSeconds: number | undefined): void {
    this.#written.inc(bytes);
    if (syncSeconds !== undefined) this.#sync.observe(syncSeconds);
  }

  /** Adds to each counter what the open log counted since the last time. */
  #carryOver(): void {
    const stats = this.#log?.stats();
    if (stats === undefined) return;
    for (const [count, counter] of this.#counters) {
      counter.inc(stats[count] - this.#counted[count]);
      this.#counted[count] = stats[count];
    }
  }
}
