/**
 * The data plane that `standalone` and `run` share: the sink registry with its queues and outputs,
 * the shared receiver, the dedicated listeners and the receiver's bearer tokens. What differs
 * between the two modes is only where sinks and Secrets come from (files or the cluster).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Settings } from '../config/settings.ts';
import { LineProtocolFileOutput, lineProtocolPath } from '../outputs/file/file-output.ts';
import { INFLUX_DEFAULTS, TAG_NAMES } from '../outputs/influxdb/index.ts';
import { createOutputs } from '../outputs/kinds.ts';
import { ServerSlots } from '../outputs/server-slots.ts';
import type { Output } from '../outputs/types.ts';
import { LINE_PROTOCOL_CATCH_UP, LINE_PROTOCOL_ENCODING } from '../outputs/turn-budget.ts';
import {
  type AccessDecision,
  type AccessReview,
  CachedAccessReview,
  type Receiver,
  startReceiver,
  validateReceiverOptions,
} from '../receiver/index.ts';
import { DeadLetterStore, deadLetterPath } from '../sinks/dead-letter.ts';
import { everyObserver, SinkRegistry } from '../sinks/registry.ts';
import type { Sink } from '../sinks/types.ts';
import { openQueue } from '../spool/index.ts';
import { openLogQueue } from '../spool/log/index.ts';
import type { Logger } from '../telemetry/logger.ts';
import { LogMetrics, registerServerSlotMetrics, SinkMetrics } from '../telemetry/metrics.ts';
import { SinkLog } from '../telemetry/sink-log.ts';
import { SinkTokens, tokenLines } from './credentials.ts';
import { connectionLimits, DedicatedListeners } from './listeners.ts';
import { secretNamespace, type SecretStore } from './secrets.ts';
import { AFTER_DRAIN, type ShutdownBudget, shutdownBudget, within } from './shutdown.ts';
import { watchPaths } from './watch.ts';

/** How often token files are checked for changes (mounted Secrets are replaced, not written). */
const TOKEN_RELOAD_INTERVAL_MS = 1_000;

/** How the data plane is fed. */
export interface DataPlaneOptions {
  readonly settings: Settings;
  /** The current Secrets, by `namespace/name`. */
  readonly secrets: () => SecretStore;
  readonly log: Logger;
  /**
   * Whether a sink without a destination writes the embedded line-protocol file (standalone) or
   * cannot exist (the operator requires a destination).
   */
  readonly embeddedDestination: boolean;
  /** The key signing native AuditSink endpoints of the shared listener (operator only). */
  readonly nativeKey?: string;
  /**
   * Who may read `/metrics` (operator: a TokenReview and SubjectAccessReview), cached here for
   * every listener; absent, the receivers' own credentials.
   */
  readonly metricsReview?: AccessReview;
}

/** A running data plane. */
export interface DataPlane {
  /** The shared listener's base URL. */
  readonly url: string;
  readonly registry: SinkRegistry;
  readonly metrics: Registry;
  /** Makes `sinks` the configured set, in the registry and the dedicated listeners. */
  apply(sinks: readonly Sink[]): Promise<void>;
  /** The dedicated listener URL of each sink that has one, by sink key. */
  dedicatedUrls(): Map<string, string>;
  /** Turns readiness on or off (`/readyz` answers 503 while off). */
  setReady(ready: boolean): void;
  /**
   * The first step of a shutdown, at the signal: every listener leaves its load balancers
   * ({@link Receiver.leave}) and keeps accepting, and sinks keep being applied, for
   * `--shutdown-delay-seconds` from the first call (no time at all if readiness was never on).
   * Resolves once that delay is over, or when `until` aborts (the drain's deadline).
   */
  leave(until: AbortSignal): Promise<void>;
  /**
   * Leaves (if not yet) and waits for the rest of the delay, then stops receiving, drains queues
   * until `budget.drain` (in-flight writes are then aborted, their batches stay spooled) and
   * releases everything. Without a budget, the grace period starts now and keeps only what
   * releasing the queues needs.
   */
  shutdown(budget?: ShutdownBudget): Promise<void>;
}

/**
 * Starts the registry with `initial` sinks, then the listeners. Readiness stays off until
 * {@link DataPlane.setReady}.
 */
export async function startDataPlane(
  options: DataPlaneOptions,
  initial: readonly Sink[],
): Promise<DataPlane> {
  const { settings, log } = options;
  let ready = false;
  const metrics = new Registry();
  // Memory, CPU and event-loop lag of the process: what "memory stays bounded" is alerted on.
  collectDefaultMetrics({ register: metrics });
  const registry = createRegistry(settings, options.secrets, metrics, log, {
    durable: true,
    embeddedDestination: options.embeddedDestination,
  });
  const tokens = new TokenFiles(settings.tokenFiles);
  await tokens.reload();
  const sinkTokens = new SinkTokens(options.secrets, settings.namespace);
  const metricsAccess = metricsAccessOf(settings, options.metricsReview);
  const listeners = new DedicatedListeners({
    settings,
    registry,
    metrics,
    tokens: () => tokens.current,
    sinkTokens: () => sinkTokens.current(),
    readiness: () => ready,
    secrets: options.secrets,
    log,
    ...(metricsAccess === undefined ? {} : { metricsAccess }),
  });
  const apply = async (sinks: readonly Sink[]) => {
    // Before the registry: a sink's endpoint never exists without its credentials.
    sinkTokens.setSinks(sinks);
    try {
      await registry.apply(sinks);
    } finally {
      // Listeners for every sink that runs, even when another could not start.
      await listeners.apply(sinks.filter((s) => registry.hasSink(s.key)));
    }
  };
  let receiver: Receiver;
  try {
    await apply(initial);
    receiver = await startReceiver(
      validateReceiverOptions({
        host: settings.listen.host,
        port: settings.listen.port,
        insecure: settings.insecure,
        ...(settings.tlsCertFile === undefined || settings.tlsKeyFile === undefined
          ? {}
          : {
              tls: {
                certFile: settings.tlsCertFile,
                keyFile: settings.tlsKeyFile,
                ...(settings.clientCAFile === undefined
                  ? {}
                  : { clientCAFile: settings.clientCAFile }),
              },
            }),
        tokens: () => tokens.current,
        sinkTokens: () => sinkTokens.current(),
        readiness: () => ready,
        ...(metricsAccess === undefined ? {} : { metricsAccess }),
        ...connectionLimits(settings),
        log: (level: 'info' | 'warn' | 'error', bindings: object, message: string) => {
          log[level](bindings, message);
        },
        ...(options.nativeKey === undefined ? {} : { nativeKey: options.nativeKey }),
      }),
      registry,
      metrics,
    );
  } catch (err) {
    // Sinks and listeners already run: stop them, or the process would never exit.
    await listeners.close();
    await registry.close();
    throw err;
  }
  const tokenWatch = watchPaths(
    () => settings.tokenFiles,
    TOKEN_RELOAD_INTERVAL_MS,
    async () => {
      await tokens.reload();
      log.info({ files: settings.tokenFiles.length }, 'receiver tokens reloaded');
    },
    (err) => log.error({ err }, 'token files could not be reloaded; keeping the current tokens'),
  );

  // A replica that never was ready never was an endpoint: nothing to wait for (a failed start).
  let served = false;
  let leftAt: number | undefined;
  let delayMs = 0;
  const leave = async (until: AbortSignal) => {
    if (leftAt === undefined) {
      leftAt = performance.now();
      delayMs = served ? settings.shutdownDelaySeconds * 1000 : 0;
      receiver.leave();
      listeners.leave();
      if (delayMs > 0) {
        log.info(
          { delaySeconds: settings.shutdownDelaySeconds },
          'leaving: readiness off, listeners still accept and close each connection after its answer',
        );
      }
    }
    const left = leftAt + delayMs - performance.now();
    if (left > 0) await sleep(left, undefined, { signal: until }).catch(() => undefined);
  };

  return {
    url: receiver.url,
    registry,
    metrics,
    apply,
    dedicatedUrls: () => listeners.urls(),
    setReady(value) {
      ready = value;
      if (value) served = true;
    },
    leave,
    async shutdown(
      budget = shutdownBudget(settings.shutdownGraceSeconds * 1000, AFTER_DRAIN.release),
    ) {
      await leave(budget.drain);
      ready = false;
      await tokenWatch.stop();
      // Requests in flight are answered and queued first. One still open at the deadline (a
      // client trickling its body) gets a 500 from the registry, and its sender posts it again.
      await within(Promise.all([receiver.close(), listeners.close()]), budget.drain);
      const report = await registry.drain(budget.drain);
      if (report.undelivered.length > 0) {
        log.warn(
          {
            graceSeconds: budget.graceMs / 1000,
            undelivered: report.undelivered,
          },
          report.cutOff
            ? 'shutdown deadline reached: writes in flight aborted; undelivered events stay spooled for the next start'
            : 'shutdown: undelivered events stay spooled for the next start',
        );
      }
      await registry.close();
    },
  };
}

/** One cache of `/metrics` decisions for every listener of the process. */
function metricsAccessOf(
  settings: Settings,
  review: AccessReview | undefined,
): ((token: string) => Promise<AccessDecision>) | undefined {
  if (review === undefined) return undefined;
  const cache = new CachedAccessReview(review, {
    allowTtlMs: settings.metricsAuthAllowTtlSeconds * 1000,
    denyTtlMs: settings.metricsAuthDenyTtlSeconds * 1000,
  });
  return (token) => cache.decide(token);
}

/** How {@link createRegistry} builds queues and outputs. */
export interface RegistryMode {
  /** Spool under the data directory (true) or keep queues in memory (`replay`). */
  readonly durable: boolean;
  /** A sink without a destination writes the embedded line-protocol file. */
  readonly embeddedDestination: boolean;
}

/**
 * The sink registry: queues as streams of the durable log under the data directory (or in
 * memory), outputs from each sink's destinations, or the line-protocol file when it names none,
 * and dead letters under the data directory in both cases.
 */
export function createRegistry(
  settings: Settings,
  secrets: () => SecretStore,
  metrics: Registry,
  log: Logger,
  mode: RegistryMode,
): SinkRegistry {
  const serverSlots = new ServerSlots(settings.influxdbMaxRequestsPerServer);
  registerServerSlotMetrics(metrics, serverSlots);
  const logMetrics = new LogMetrics(metrics);
  const registry: SinkRegistry = new SinkRegistry({
    routing: { allowSecretPayloads: settings.allowSecretPayloads },
    factory: {
      openQueue: (sink) =>
        mode.durable
          ? openLogQueue({
              logDir: logDir(settings.dataDir),
              key: streamKey(sink),
              maxBytes: settings.spoolMaxBytes,
              legacyDir: spoolDir(settings.dataDir, sink),
              // Sinks so far behind that the log keeps more of their records in memory: delivery
              // gets more of each turn until they caught up (ADR 0022).
              onCacheGrowth: (grown) =>
                LINE_PROTOCOL_ENCODING.scale(grown ? LINE_PROTOCOL_CATCH_UP : 1),
              observer: logMetrics,
            })
          : openQueue({ maxBytes: settings.spoolMaxBytes }),
      createOutputs: (sink) =>
        Promise.resolve(outputsFor(sink, settings, secrets, serverSlots, mode.embeddedDestination)),
      openDeadLetters: (sink) =>
        new DeadLetterStore({
          path: deadLetterPath(settings.dataDir, sink.ref),
          sink: sink.label,
          maxBytes: settings.deadLetterMaxBytes,
        }),
    },
    observer: everyObserver(
      new SinkMetrics(metrics, () => registry.queueDepths()),
      new SinkLog(log.child({ component: 'delivery' })),
    ),
  });
  return registry;
}

/** The process's durable log, which every sink's queue is a stream of (ADR 0019). */
export function logDir(dataDir: string): string {
  return join(dataDir, 'log');
}

/** A sink's stream in the log: `sinks/<name>` or `pipelines/<ns>/<name>`. */
export function streamKey(sink: Sink): string {
  return sink.ref.kind === 'AuditSink'
    ? `sinks/${sink.ref.name}`
    : `pipelines/${sink.ref.namespace}/${sink.ref.name}`;
}

/**
 * Each sink's spool of versions before the shared log, moved into the log when the sink starts:
 * `<dataDir>/spool/sinks/<name>` or `<dataDir>/spool/pipelines/<ns>/<name>`.
 */
export function spoolDir(dataDir: string, sink: Sink): string {
  return sink.ref.kind === 'AuditSink'
    ? join(dataDir, 'spool', 'sinks', sink.ref.name)
    : join(dataDir, 'spool', 'pipelines', sink.ref.namespace, sink.ref.name);
}

function outputsFor(
  sink: Sink,
  settings: Settings,
  secrets: () => SecretStore,
  serverSlots: ServerSlots,
  embeddedDestination: boolean,
): Output[] {
  const namespace = secretNamespace(sink.ref, settings.namespace);
  const outputs = createOutputs(sink, {
    label: sink.label,
    secret: (ref) => secrets().get(`${namespace}/${ref.name}`)?.[ref.key],
    serverSlots,
  });
  if (outputs.length === 0 && embeddedDestination) {
    // The embedded default destination, so standalone mode works without an InfluxDB.
    outputs.push(
      new LineProtocolFileOutput(lineProtocolPath(settings.dataDir, sink.ref), {
        measurement: INFLUX_DEFAULTS.measurement,
        tags: TAG_NAMES,
        staticTags: {},
        sink: sink.label,
      }),
    );
  }
  return outputs;
}

/** Bearer tokens from files, one per line; blank lines and `#` comments ignored ({@link tokenLines}). */
class TokenFiles {
  current: ReadonlySet<string> = new Set();
  readonly #files: readonly string[];

  constructor(files: readonly string[]) {
    this.#files = files;
  }

  async reload(): Promise<void> {
    const tokens = new Set<string>();
    for (const file of this.#files) {
      for (const token of tokenLines(await readFile(file, 'utf8'))) tokens.add(token);
    }
    this.current = tokens;
  }
}
