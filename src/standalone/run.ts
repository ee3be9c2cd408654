/**
 * Standalone mode: the whole data path without a cluster. Sinks and Secrets come from manifest
 * files (reloaded on change), events from the receiver, and a sink without a destination writes
 * line protocol under the data directory.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import type { Settings } from '../config/settings.ts';
import { LineProtocolFileOutput, lineProtocolPath } from '../outputs/file/file-output.ts';
import { BucketCreatingOutput, InfluxOutput } from '../outputs/influxdb/index.ts';
import type { Output } from '../outputs/types.ts';
import { WebhookOutput } from '../outputs/webhook/webhook-output.ts';
import { type Receiver, startReceiver, validateReceiverOptions } from '../receiver/index.ts';
import { SinkRegistry } from '../sinks/registry.ts';
import { INFLUX_DEFAULTS, type SinkSettings } from '../sinks/spec.ts';
import { type Sink, TAG_NAMES } from '../sinks/types.ts';
import { openQueue } from '../spool/index.ts';
import type { Logger } from '../telemetry/logger.ts';
import { SinkMetrics } from '../telemetry/metrics.ts';
import { DedicatedListeners } from './listeners.ts';
import { type LoadedResources, loadResources, type SecretStore } from './resources.ts';
import { watchPaths } from './watch.ts';

/** A running standalone process. */
export interface Standalone {
  readonly url: string;
  readonly registry: SinkRegistry;
  /** Readiness off, stop receiving, drain queues within the grace period, release everything. */
  shutdown(): Promise<void>;
}

/** How often manifest and token files are checked for changes. */
const RELOAD_INTERVAL_MS = 1_000;

/** Starts standalone mode with manifests under `resourcesPath`. */
export async function startStandalone(
  settings: Settings,
  resourcesPath: string,
  log: Logger,
): Promise<Standalone> {
  const sinkSettings: SinkSettings = {
    clusterWideNamespaces: settings.clusterWideNamespaces,
    requireDestination: false,
  };
  let secrets: SecretStore = new Map();
  let ready = false;

  const metrics = new Registry();
  const registry = createRegistry(settings, () => secrets, metrics, true);

  const tokens = new TokenFiles(settings.tokenFiles);
  await tokens.reload();
  const listeners = new DedicatedListeners({
    settings,
    registry,
    metrics,
    tokens: () => tokens.current,
    readiness: () => ready,
    secrets: () => secrets,
    log,
  });
  const apply = async (loaded: LoadedResources) => {
    for (const problem of loaded.problems) log.error({ problem }, 'manifest rejected');
    for (const warning of loaded.warnings)
      log.warn({ warning }, 'manifest accepted with a warning');
    secrets = loaded.secrets;
    await registry.apply(loaded.sinks);
    await listeners.apply(loaded.sinks);
    log.info({ sinks: loaded.sinks.map((s) => s.key) }, 'sinks applied');
  };
  let receiver: Receiver;
  try {
    await apply(await loadResources(resourcesPath, sinkSettings, settings.namespace));
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
        readiness: () => ready,
        log: (level: 'info' | 'warn' | 'error', bindings: object, message: string) => {
          log[level](bindings, message);
        },
      }),
      registry,
      metrics,
    );
  } catch (err) {
    // Sinks and listeners already run: stop them, or the process would never exit.
    await listeners.close();
    await registry.close(0);
    throw err;
  }

  const manifestWatch = watchPaths(
    () => [resourcesPath],
    RELOAD_INTERVAL_MS,
    async () => apply(await loadResources(resourcesPath, sinkSettings, settings.namespace)),
    (err) => log.error({ err }, 'manifests could not be reloaded; keeping the current sinks'),
  );
  const tokenWatch = watchPaths(
    () => settings.tokenFiles,
    RELOAD_INTERVAL_MS,
    async () => {
      await tokens.reload();
      log.info({ files: settings.tokenFiles.length }, 'receiver tokens reloaded');
    },
    (err) => log.error({ err }, 'token files could not be reloaded; keeping the current tokens'),
  );
  ready = true;
  log.info({ url: receiver.url, dataDir: settings.dataDir }, 'standalone receiver ready');

  return {
    url: receiver.url,
    registry,
    async shutdown() {
      ready = false;
      // A reload in progress finishes first, so that it cannot start listeners after they closed.
      await Promise.all([manifestWatch.stop(), tokenWatch.stop()]);
      await Promise.all([receiver.close(), listeners.close()]);
      await registry.close(settings.shutdownGraceSeconds * 1000);
      log.info({}, 'stopped');
    },
  };
}

/**
 * The sink registry of standalone mode and `replay`: queues spooled under the data directory (or in
 * memory), outputs from each sink's destinations, or the line-protocol file when it names none.
 */
export function createRegistry(
  settings: Settings,
  secrets: () => SecretStore,
  metrics: Registry,
  durable: boolean,
): SinkRegistry {
  const registry: SinkRegistry = new SinkRegistry({
    routing: { allowSecretPayloads: settings.allowSecretPayloads },
    factory: {
      openQueue: (sink) =>
        openQueue({
          ...(durable ? { dir: spoolDir(settings.dataDir, sink) } : {}),
          maxBytes: settings.spoolMaxBytes,
        }),
      createOutputs: (sink) => Promise.resolve(outputsFor(sink, settings, secrets)),
    },
    observer: new SinkMetrics(metrics, () => registry.queueDepths()),
  });
  return registry;
}

/** Each sink's spool: `<dataDir>/spool/sinks/<name>` or `<dataDir>/spool/pipelines/<ns>/<name>`. */
export function spoolDir(dataDir: string, sink: Sink): string {
  return sink.ref.kind === 'AuditSink'
    ? join(dataDir, 'spool', 'sinks', sink.ref.name)
    : join(dataDir, 'spool', 'pipelines', sink.ref.namespace, sink.ref.name);
}

function outputsFor(sink: Sink, settings: Settings, secrets: () => SecretStore): Output[] {
  const outputs: Output[] = [];
  const influx = sink.influxdb;
  if (influx !== undefined) {
    // AuditSink Secrets live in the operator's namespace, a pipeline's in its own.
    const namespace = sink.ref.kind === 'AuditSink' ? settings.namespace : sink.ref.namespace;
    const ref = influx.tokenSecretRef;
    const token = () =>
      ref === undefined ? undefined : secrets().get(`${namespace}/${ref.name}`)?.[ref.key];
    const output = new InfluxOutput(influx, sink.label, token);
    outputs.push(influx.createBucket ? new BucketCreatingOutput(output, influx, token) : output);
  }
  if (sink.webhook !== undefined) outputs.push(new WebhookOutput(sink.webhook));
  if (outputs.length === 0) {
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

/** Bearer tokens from files, one per line; blank lines and `#` comments ignored. */
class TokenFiles {
  current: ReadonlySet<string> = new Set();
  readonly #files: readonly string[];

  constructor(files: readonly string[]) {
    this.#files = files;
  }

  async reload(): Promise<void> {
    const tokens = new Set<string>();
    for (const file of this.#files) {
      for (const line of (await readFile(file, 'utf8')).split('\n')) {
        const token = line.trim();
        if (token !== '' && !token.startsWith('#')) tokens.add(token);
      }
    }
    this.current = tokens;
  }
}
