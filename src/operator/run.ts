/**
 * `kube-audit-operator run`: the data plane fed by the cluster. Every replica watches the
 * resources and serves every sink; the replica holding the Lease writes status and Events, and
 * registers native AuditSinks where the apiserver still serves them.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import type { Settings } from '../config/settings.ts';
import { type DataPlane, startDataPlane } from '../runtime/dataplane.ts';
import type { SecretStore } from '../runtime/secrets.ts';
import type { SinkSettings } from '../sinks/spec.ts';
import type { Logger } from '../telemetry/logger.ts';
import { SinkController } from './controller.ts';
import { KubeApi, loadKubeConfig } from './kube.ts';
import { LeaderElector } from './leader.ts';
import { NativeSinks } from './native.ts';
import { StatusPublisher } from './publisher.ts';

/** A running operator. */
export interface Operator {
  /** The shared listener's URL. */
  readonly url: string;
  readonly plane: DataPlane;
  /** Whether native AuditSinks are registered (the apiserver serves auditregistration). */
  readonly native: boolean;
  /** Readiness off, stop watching, release the Lease, drain queues within the grace period. */
  shutdown(): Promise<void>;
}

/** Starts the operator; resolves once the resources are listed and applied and readiness is on. */
export async function startOperator(settings: Settings, log: Logger): Promise<Operator> {
  const api = new KubeApi(loadKubeConfig(settings.kubeconfig));
  const sinkSettings: SinkSettings = {
    clusterWideNamespaces: settings.clusterWideNamespaces,
    requireDestination: true,
  };
  const nativeKey =
    settings.nativeKeyFile === undefined
      ? undefined
      : (await readFile(settings.nativeKeyFile, 'utf8')).trim();
  const nativeServed =
    settings.nativeAuditSinks === 'auto' ? await api.servesNativeAuditSinks() : false;
  if (nativeServed && nativeKey === undefined) {
    log.warn(
      {},
      'the apiserver serves auditregistration.k8s.io/v1alpha1, but no native key file is set: native AuditSinks are not registered',
    );
  }
  const native = nativeServed && nativeKey !== undefined;

  let secrets: () => SecretStore = () => new Map();
  const plane = await startDataPlane(
    {
      settings,
      secrets: () => secrets(),
      log,
      embeddedDestination: false,
      ...(nativeKey === undefined ? {} : { nativeKey }),
    },
    [],
  );
  const endpointBase = settings.advertiseUrl?.replace(/\/$/, '') ?? plane.url;
  // Set by the elector below; read by everything that only the leader does.
  let leading = false;
  const nativeSinks =
    native && nativeKey !== undefined
      ? new NativeSinks({
          api,
          endpointBase,
          key: nativeKey,
          caBundle:
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
    ...(nativeSinks === undefined ? {} : { onSinksChanged: (s) => nativeSinks.sync(s) }),
  });
  secrets = () => controller.secrets();
  const publisher = new StatusPublisher({
    api,
    controller,
    registry: plane.registry,
    log,
    intervalMs: settings.statusIntervalSeconds * 1000,
    leading: () => leading,
  });
  const elector = new LeaderElector(api, {
    namespace: settings.namespace,
    name: settings.leaseName,
    identity: `${hostname()}_${randomBytes(4).toString('hex')}`,
    onChange: (now) => {
      leading = now;
      log.info({ leading }, leading ? 'leading: writing status' : 'following');
      publisher.reset();
      if (leading) {
        void publisher.publish();
        nativeSinks?.sync(plane.registry.sinks());
      }
    },
    onError: (err) => log.warn({ err }, 'leader election failed; retrying'),
  });

  try {
    await controller.start();
  } catch (err) {
    await plane.shutdown();
    throw err;
  }
  elector.start();
  publisher.start();
  plane.setReady(true);
  log.info(
    { url: plane.url, endpointBase, sinks: plane.registry.sinks().length, native },
    'operator ready',
  );

  return {
    url: plane.url,
    plane,
    native,
    async shutdown() {
      plane.setReady(false);
      await controller.stop();
      // The final counters, then another replica may lead.
      await publisher.publish();
      await publisher.stop();
      await nativeSinks?.stop();
      await elector.stop();
      await plane.shutdown();
      log.info({}, 'stopped');
    },
  };
}
