/**
 * Standalone mode: the whole data path without a cluster. Sinks and Secrets come from manifest
 * files (reloaded on change), events from the receiver, and a sink without a destination writes
 * line protocol under the data directory.
 */
import type { Settings } from '../config/settings.ts';
import { startDataPlane } from '../runtime/dataplane.ts';
import { missingTokenSecret } from '../runtime/credentials.ts';
import type { SecretStore } from '../runtime/secrets.ts';
import { AFTER_DRAIN, shutdownBudget } from '../runtime/shutdown.ts';
import { watchPaths } from '../runtime/watch.ts';
import type { SinkRegistry } from '../sinks/registry.ts';
import type { SinkSettings } from '../sinks/spec.ts';
import type { Logger } from '../telemetry/logger.ts';
import { type LoadedResources, loadResources } from './resources.ts';

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
  const load = async (): Promise<LoadedResources> => {
    const loaded = await loadResources(resourcesPath, sinkSettings, settings.namespace);
    for (const problem of loaded.problems) log.error({ problem }, 'manifest rejected');
    for (const warning of loaded.warnings)
      log.warn({ warning }, 'manifest accepted with a warning');
    secrets = loaded.secrets;
    for (const sink of loaded.sinks) {
      const missing = missingTokenSecret(sink, loaded.secrets, settings.namespace);
      if (missing !== undefined) {
        log.warn(
          { sink: sink.key, missing },
          "the sink's own tokens are missing: its endpoint accepts the receiver-wide credentials only",
        );
      }
    }
    return loaded;
  };
  const initial = await load();
  const plane = await startDataPlane(
    { settings, secrets: () => secrets, log, embeddedDestination: true },
    initial.sinks,
  );
  log.info({ sinks: initial.sinks.map((s) => s.key) }, 'sinks applied');
  const manifestWatch = watchPaths(
    () => [resourcesPath],
    RELOAD_INTERVAL_MS,
    async () => {
      const loaded = await load();
      await plane.apply(loaded.sinks);
      log.info({ sinks: loaded.sinks.map((s) => s.key) }, 'sinks applied');
    },
    (err) => log.error({ err }, 'manifests could not be reloaded; keeping the current sinks'),
  );
  plane.setReady(true);
  log.info({ url: plane.url, dataDir: settings.dataDir }, 'standalone receiver ready');

  return {
    url: plane.url,
    registry: plane.registry,
    async shutdown() {
      // The grace period runs from the signal, including the wait for a reload.
      const budget = shutdownBudget(settings.shutdownGraceSeconds * 1000, AFTER_DRAIN.release);
      // Manifests still reloaded while the listeners take batches (docs/adr/0026).
      await plane.leave(budget.drain);
      // A reload in progress finishes first, so that it cannot start listeners after they closed.
      await manifestWatch.stop();
      await plane.shutdown(budget);
      log.info({}, 'stopped');
    },
  };
}
