/**
 * `kube-audit-operator run`: the data plane fed by the cluster. Every replica watches the
 * resources, serves every sink and publishes its counts; the replica holding the Lease sums them
 * into status, writes Events, and registers native AuditSinks where the apiserver still serves
 * them.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import type { Settings } from '../config/settings.ts';
import { type DataPlane, startDataPlane } from '../runtime/dataplane.ts';
import { AFTER_DRAIN, shutdownBudget, within } from '../runtime/shutdown.ts';
import type { SecretStore } from '../runtime/secrets.ts';
import type { SinkSettings } from '../sinks/spec.ts';
import type { Logger } from '../telemetry/logger.ts';
import { ReconcileMetrics } from '../telemetry/metrics.ts';
import { metricsAccessReview } from './access-review.ts';
import { SinkController } from './controller.ts';
import type { KubeApi } from './kube.ts';
import { ClientNodeKubeApi, loadKubeConfig } from './kube-client.ts';
import { LeaderElector } from './leader.ts';
import { NativeSinks } from './native.ts';
import { StatusPublisher } from './publisher.ts';
import { ReplicaReporter } from './reporter.ts';
import { ClusterTally } from './tally.ts';

/**
 * A replica writes its report at least every this many status intervals, changed or not (20 s
 * at the default 5 s), and the leader takes a report not renewed for three heartbeats (60 s)
 * for a replica that is gone: one late write or a slow apiserver is not a death (ADR 0013).
 */
export const REPORT_HEARTBEAT_INTERVALS = 4;
/** Heartbeats without a write after which the leader takes a replica for gone. */
export const REPORT_EXPIRY_HEARTBEATS = 3;

/** A running operator. */
export interface Operator {
  /** The shared listener's URL. */
  readonly url: string;
  readonly plane: DataPlane;
  /** Whether native AuditSinks are registered (the apiserver serves auditregistration). */
  readonly native: boolean;
  /**
   * Readiness off, stop watching, drain queues, write the final status and release the Lease,
   * all within the grace period.
   */
  shutdown(): Promise<void>;
}

/** Starts the operator; resolves once the resources are listed and applied and readiness is on. */
export async function startOperator(settings: Settings, log: Logger): Promise<Operator> {
  // It also labels the replicas' reports (ADR 0013), and a label value has at most 63 characters.
  if (!/^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$/.test(settings.leaseName)) {
    throw new Error(
      `--lease-name ${JSON.stringify(settings.leaseName)}: must be at most 63 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit`,
    );
  }
  // The parts take the process logger and bind their own module; these lines are the wiring's.
  const own = log.child({ module: 'operator' });
  const api = new ClientNodeKubeApi(loadKubeConfig(settings.kubeconfig));
  const sinkSettings: SinkSettings = {
    clusterWideNamespaces: settings.clusterWideNamespaces,
    requireDestination: true,
  };
  const nativeKey = await readNativeKey(settings.nativeKeyFile);
  const native = await nativeModeWanted(api, settings, nativeKey !== undefined, own);

  let secrets: () => SecretStore = () => new Map();
  const plane = await startDataPlane(
    {
      settings,
      secrets: () => secrets(),
      log,
      embeddedDestination: false,
      // /metrics: bearer tokens reviewed by the apiserver, as this process's own identity.
      metricsReview: metricsAccessReview(api),
      // Signed endpoints exist only where native AuditSinks use them: nowhere else does a
      // path alone admit events.
      ...(native && nativeKey !== undefined ? { nativeKey } : {}),
    },
    [],
  );
  const endpointBase = settings.advertiseUrl?.replace(/\/$/, '') ?? plane.url;
  // Set by the elector below; read by everything that only the leader does.
  let leading = false;
  const nativeSinks = native
    ? new NativeSinks({
        api,
        endpointBase,
        key: nativeKey as string,
        // Read at every sync: a renewed serving certificate reaches the native sinks.
        caBundle: async () =>
          settings.tlsCertFile === undefined
            ? undefined
            : await readFile(settings.tlsCertFile, 'utf8'),
        log,
        leading: () => leading,
      })
    : undefined;
  const controller = new SinkController({
    api,
    plane,
    sinkSettings,
    namespace: settings.namespace,
    endpointBase,
    log,
    metrics: new ReconcileMetrics(plane.metrics, ['AuditSink', 'AuditPipeline']),
    ...(nativeSinks === undefined ? {} : { onSinksChanged: (s) => nativeSinks.sync(s) }),
  });
  secrets = () => controller.secrets();
  const intervalMs = settings.statusIntervalSeconds * 1000;
  const heartbeatMs = intervalMs * REPORT_HEARTBEAT_INTERVALS;
  const reporter = new ReplicaReporter({
    api,
    namespace: settings.namespace,
    lease: settings.leaseName,
    replica: hostname(),
    states: () => controller.states(),
    registry: plane.registry,
    log,
    intervalMs,
    heartbeatMs,
    // The reports go with the Lease: the chart's Lease is deleted by `helm uninstall`.
    owner: () => elector.owner,
  });
  const publisher = new StatusPublisher({
    api,
    controller,
    tally: new ClusterTally({
      api,
      namespace: settings.namespace,
      lease: settings.leaseName,
      log,
      expiryMs: heartbeatMs * REPORT_EXPIRY_HEARTBEATS,
      own: () => reporter.current(),
      owner: () => elector.owner,
    }),
    log,
    intervalMs,
    leading: () => leading,
  });
  const leaderLog = log.child({ module: 'leader' });
  const elector = new LeaderElector(api, {
    namespace: settings.namespace,
    name: settings.leaseName,
    identity: `${hostname()}_${randomBytes(4).toString('hex')}`,
    onChange: (now) => {
      leading = now;
      leaderLog.info({ leading }, leading ? 'leading: writing status' : 'following');
      publisher.reset();
      if (leading) {
        void publisher.publish();
        nativeSinks?.sync(plane.registry.sinks());
      }
    },
    onError: (err) => leaderLog.warn({ err }, 'leader election failed; retrying'),
  });

  try {
    await controller.start();
  } catch (err) {
    await plane.shutdown();
    throw err;
  }
  // The elector first: its first read of the Lease names the owner of the report slots. A slot
  // claimed before it would have no owner until its next write, and outlive an uninstall then.
  elector.start();
  await elector.attempted();
  reporter.start();
  publisher.start();
  plane.setReady(true);
  // Says whether it leads: the elector's first attempt, logged before this line, decided it.
  own.info(
    {
      url: plane.url,
      endpointBase,
      sinks: plane.registry.sinks().length,
      native,
      leading: elector.leading,
    },
    'operator ready',
  );

  return {
    url: plane.url,
    plane,
    native,
    async shutdown() {
      // The grace period runs from now; the drain leaves a fifth of it (at most 5 s) for the
      // final status and the Lease release, and what has not finished by its end is abandoned.
      const budget = shutdownBudget(settings.shutdownGraceSeconds * 1000, AFTER_DRAIN.operator);
      // Readiness off; batches still accepted, and resources still applied, for the shutdown
      // delay (docs/adr/0026). Then acknowledged events first: stop watching and drain the
      // queues; only then the final report and status, and the Lease last.
      await plane.leave(budget.drain);
      await within(controller.stop(), budget.drain);
      await plane.shutdown(budget);
      reporter.stop();
      publisher.stop();
      // Each step starts even once the grace period is over: stopping also ends the renewals.
      let finished = await within(reporter.publishFinal(), budget.end);
      finished = (await within(publisher.flush(), budget.end)) && finished;
      finished = (await within(nativeSinks?.stop() ?? Promise.resolve(), budget.end)) && finished;
      finished = (await within(elector.stop(), budget.end)) && finished;
      if (finished) own.info({}, 'stopped');
      else own.warn({}, 'grace period over before the final status and the Lease release');
    },
  };
}

async function readNativeKey(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return undefined;
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (err) {
    throw new Error(`--native-key-file ${file}: ${(err as Error).message}`, { cause: err });
  }
}

// Native AuditSinks only where the apiserver serves them and can reach the operator by a URL
// that is not the listener's own bind address.
async function nativeModeWanted(
  api: Pick<KubeApi, 'servesNativeAuditSinks'>,
  settings: Settings,
  haveKey: boolean,
  log: Logger,
): Promise<boolean> {
  if (settings.nativeAuditSinks === 'off') return false;
  let served: boolean;
  try {
    served = await api.servesNativeAuditSinks();
  } catch (err) {
    log.warn({ err }, 'discovery failed: native AuditSinks are not registered');
    return false;
  }
  if (!served) return false;
  if (!haveKey) {
    log.warn(
      {},
      'the apiserver serves auditregistration.k8s.io/v1alpha1, but --native-key-file is not set: native AuditSinks are not registered',
    );
    return false;
  }
  if (settings.advertiseUrl === undefined) {
    log.warn(
      {},
      'the apiserver serves auditregistration.k8s.io/v1alpha1, but --advertise-url is not set: native AuditSinks are not registered',
    );
    return false;
  }
  return true;
}
