/**
 * The operator's view of the Kubernetes API: the few calls it makes, on `@kubernetes/client-node`
 * (the only module that imports it). Everything else in `operator/` talks to {@link KubeApi}.
 */
import {
  ApiException,
  ApisApi,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type KubernetesObject,
  ListWatch,
  PatchStrategy,
  setHeaderOptions,
  Watch,
} from '@kubernetes/client-node';
import type { SinkKind } from '../sinks/types.ts';

/** The API group and version of AuditSink and AuditPipeline. */
export const GROUP = 'kube-audit.dev';
export const VERSION = 'v1alpha1';

/** The removed dynamic audit API, still served by 1.13–1.18 with `--audit-dynamic-configuration`. */
export const NATIVE_GROUP = 'auditregistration.k8s.io';
export const NATIVE_VERSION = 'v1alpha1';

const LEASES = { group: 'coordination.k8s.io', version: 'v1', plural: 'leases' } as const;

/**
 * The label a Secret must carry (value `true`) before a sink may use it. Without it, whoever may
 * create an AuditPipeline could have any Secret of the namespace sent to a URL of their choice.
 */
export const SECRET_OPT_IN_LABEL = 'kube-audit.dev/usable-by-sinks';

/** The resource (plural) of each kind. */
export const PLURALS: Readonly<Record<SinkKind, string>> = {
  AuditSink: 'auditsinks',
  AuditPipeline: 'auditpipelines',
};

/** A resource as listed or watched: what the operator reads of it. */
export interface KubeObject extends KubernetesObject {
  metadata?: KubernetesObject['metadata'] & { generation?: number };
  spec?: unknown;
  status?: unknown;
}

/** A Secret as watched. */
export interface SecretObject extends KubernetesObject {
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

/** A ConfigMap as the operator reads and writes it: its status reports and totals. */
export interface ConfigMapObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    ownerReferences?: OwnerReference[];
  };
  data?: Record<string, string>;
}

/** The object a ConfigMap belongs to: the garbage collector deletes it with its owner. */
export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
}

/** One Kubernetes Event about an object (core/v1). */
export interface EventRecord {
  readonly involved: {
    readonly apiVersion: string;
    readonly kind: string;
    readonly name: string;
    readonly namespace: string;
    readonly uid: string;
  };
  readonly type: 'Normal' | 'Warning';
  readonly reason: string;
  readonly message: string;
}

/**
 * A failed API call: the HTTP status and the apiserver's own message, without the response
 * headers and body dump that client-node's ApiException carries into logs.
 */
export class KubeApiError extends Error {
  override readonly name = 'KubeApiError';
  readonly code = 'KUBE_API';
  /** The HTTP status; 0 when no answer came in time. */
  readonly status: number;
  /** The Status reason, e.g. `NotFound`, `Conflict`, `Forbidden`, or `Timeout`. */
  readonly reason: string | undefined;

  constructor(status: number, message: string, reason: string | undefined, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
    this.reason = reason;
  }
}

/** The HTTP status of a failed API call, or undefined for transport errors. */
export function statusOf(err: unknown): number | undefined {
  if (err instanceof KubeApiError) return err.status === 0 ? undefined : err.status;
  if (err instanceof ApiException) return err.code;
  return undefined;
}

/**
 * How long one API call may take. client-go bounds every leader-election call with its renew
 * deadline; 10 s also keeps a stuck call from holding up shutdown or a status pass for long.
 */
export const API_CALL_TIMEOUT_MS = 10_000;

/**
 * Runs an API call with a deadline, and rethrows client-node's ApiException as a
 * {@link KubeApiError}. A call past its deadline is abandoned, not cancelled.
 */
export async function call<T>(what: string, request: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new KubeApiError(0, `${what}: no answer within ${API_CALL_TIMEOUT_MS} ms`, 'Timeout'));
    }, API_CALL_TIMEOUT_MS);
    timer.unref();
  });
  try {
    return await Promise.race([request(), deadline]);
  } catch (err) {
    if (!(err instanceof ApiException)) throw err;
    const status = parseStatus(err.body);
    throw new KubeApiError(
      err.code,
      `${what}: ${status?.message ?? `HTTP ${err.code}`}`,
      status?.reason,
    );
  } finally {
    clearTimeout(timer);
  }
}

function parseStatus(body: unknown): { message?: string; reason?: string } | undefined {
  try {
    const value: unknown = typeof body === 'string' ? JSON.parse(body) : body;
    return typeof value === 'object' && value !== null ? value : undefined;
  } catch {
    return undefined;
  }
}

/** A Lease as the operator reads and writes it (times as MicroTime strings). */
export interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace: string; resourceVersion?: string; uid?: string };
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/**
 * A MicroTime as the apiserver parses it: RFC 3339 with exactly six fractional digits (client-node
 * serialises Dates with three, which the apiserver refuses for Lease times).
 */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Loads credentials: the given kubeconfig file, or the pod's service account in a cluster. */
export function loadKubeConfig(kubeconfig: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfig === undefined) kc.loadFromCluster();
  else kc.loadFromFile(kubeconfig);
  if (kc.getCurrentCluster() === null) {
    throw new Error(`kubeconfig ${kubeconfig ?? '(in-cluster)'} names no current cluster`);
  }
  return kc;
}

/** The API calls the operator makes. */
export class KubeApi {
  readonly kc: KubeConfig;
  readonly #core: CoreV1Api;
  readonly #custom: CustomObjectsApi;
  readonly #apis: ApisApi;
  readonly #watch: Watch;

  constructor(kc: KubeConfig) {
    this.kc = kc;
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#custom = kc.makeApiClient(CustomObjectsApi);
    this.#apis = kc.makeApiClient(ApisApi);
    this.#watch = new Watch(kc);
  }

  /** A list-then-watch of every AuditSink or every AuditPipeline; not started. */
  sinkWatch(kind: SinkKind): ListWatch<KubeObject> {
    const plural = PLURALS[kind];
    return new ListWatch<KubeObject>(
      `/apis/${GROUP}/${VERSION}/${plural}`,
      this.#watch,
      () =>
        this.#custom.listClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural,
        }) as Promise<{
          items: KubeObject[];
          metadata?: { resourceVersion?: string };
        }>,
      false,
    );
  }

  /** Every AuditSink or every AuditPipeline, listed once. */
  async listSinkResources(kind: SinkKind): Promise<KubeObject[]> {
    const list = (await call(`list ${kind}`, () =>
      this.#custom.listClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURALS[kind],
      }),
    )) as { items: KubeObject[] };
    return list.items;
  }

  /**
   * A list-then-watch of one Secret, by name, and only if it carries {@link SECRET_OPT_IN_LABEL}:
   * only referenced Secrets are read, and only those their owners made available to sinks.
   */
  secretWatch(namespace: string, name: string): ListWatch<SecretObject> {
    const fieldSelector = `metadata.name=${name}`;
    const labelSelector = `${SECRET_OPT_IN_LABEL}=true`;
    return new ListWatch<SecretObject>(
      `/api/v1/namespaces/${namespace}/secrets`,
      this.#watch,
      () =>
        call(`list Secret ${namespace}/${name}`, () =>
          this.#core.listNamespacedSecret({ namespace, fieldSelector, labelSelector }),
        ),
      false,
      labelSelector,
      fieldSelector,
    );
  }

  /** Replaces the status of a resource with a merge patch of `status`. */
  async patchStatus(
    kind: SinkKind,
    namespace: string,
    name: string,
    status: unknown,
  ): Promise<void> {
    const options = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    const plural = PLURALS[kind];
    const body = { status };
    await call(`patch ${kind} status`, () =>
      kind === 'AuditSink'
        ? this.#custom.patchClusterCustomObjectStatus(
            { group: GROUP, version: VERSION, plural, name, body },
            options,
          )
        : this.#custom.patchNamespacedCustomObjectStatus(
            { group: GROUP, version: VERSION, namespace, plural, name, body },
            options,
          ),
    );
  }

  /** Creates an Event about an object. */
  async createEvent(event: EventRecord, component: string, now: Date): Promise<void> {
    const { involved } = event;
    // Events about cluster-scoped objects live in `default`, where `kubectl describe` looks.
    const namespace = involved.namespace === '' ? 'default' : involved.namespace;
    await call('create Event', () =>
      this.#core.createNamespacedEvent({
        namespace,
        body: {
          metadata: { generateName: `${involved.name}.`, namespace },
          involvedObject: {
            apiVersion: involved.apiVersion,
            kind: involved.kind,
            name: involved.name,
            ...(involved.namespace === '' ? {} : { namespace: involved.namespace }),
            uid: involved.uid,
          },
          type: event.type,
          reason: event.reason,
          message: event.message,
          source: { component },
          reportingComponent: component,
          reportingInstance: component,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      }),
    );
  }

  /** Reads a Lease, or undefined when there is none. */
  async readLease(namespace: string, name: string): Promise<Lease | undefined> {
    try {
      return (await call('read Lease', () =>
        this.#custom.getNamespacedCustomObject({ ...LEASES, namespace, name }),
      )) as Lease;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
  }

  /** Creates a Lease; rejects with 409 when another replica created it first. */
  async createLease(lease: Lease): Promise<Lease> {
    const body = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', ...lease };
    return (await call('create Lease', () =>
      this.#custom.createNamespacedCustomObject({
        ...LEASES,
        namespace: lease.metadata.namespace,
        body,
      }),
    )) as Lease;
  }

  /** Replaces a Lease; rejects with 409 when it changed since it was read. */
  async replaceLease(lease: Lease): Promise<Lease> {
    const { namespace, name } = lease.metadata;
    return (await call('update Lease', () =>
      this.#custom.replaceNamespacedCustomObject({ ...LEASES, namespace, name, body: lease }),
    )) as Lease;
  }

  /** The ConfigMaps of a namespace that carry `labelSelector`, listed once. */
  async listConfigMaps(namespace: string, labelSelector: string): Promise<ConfigMapObject[]> {
    const list = await call('list ConfigMaps', () =>
      this.#core.listNamespacedConfigMap({ namespace, labelSelector }),
    );
    return list.items as ConfigMapObject[];
  }

  /** Creates a ConfigMap; rejects with 409 when one of that name exists. */
  async createConfigMap(body: ConfigMapObject): Promise<ConfigMapObject> {
    const { namespace } = body.metadata;
    return (await call('create ConfigMap', () =>
      this.#core.createNamespacedConfigMap({
        namespace,
        body: { apiVersion: 'v1', kind: 'ConfigMap', ...body },
      }),
    )) as ConfigMapObject;
  }

  /**
   * Replaces a ConfigMap; with `metadata.resourceVersion`, only if it is still that version
   * (409 otherwise); 404 when it is gone.
   */
  async replaceConfigMap(body: ConfigMapObject): Promise<ConfigMapObject> {
    const { namespace, name } = body.metadata;
    return (await call('update ConfigMap', () =>
      this.#core.replaceNamespacedConfigMap({
        namespace,
        name,
        body: { apiVersion: 'v1', kind: 'ConfigMap', ...body },
      }),
    )) as ConfigMapObject;
  }

  /** Whether the apiserver serves the removed `auditregistration.k8s.io/v1alpha1` API. */
  async servesNativeAuditSinks(): Promise<boolean> {
    const groups = await call('discovery', () => this.#apis.getAPIVersions());
    return groups.groups.some(
      (g) => g.name === NATIVE_GROUP && g.versions.some((v) => v.version === NATIVE_VERSION),
    );
  }

  /** Native AuditSinks carrying `labelSelector`. */
  async listNativeSinks(labelSelector: string): Promise<KubeObject[]> {
    const list = (await call('list native AuditSinks', () =>
      this.#custom.listClusterCustomObject({
        group: NATIVE_GROUP,
        version: NATIVE_VERSION,
        plural: 'auditsinks',
        labelSelector,
      }),
    )) as { items: KubeObject[] };
    return list.items;
  }

  /** Creates or replaces a native AuditSink. */
  async applyNativeSink(body: KubeObject, existing: KubeObject | undefined): Promise<void> {
    const name = body.metadata?.name ?? '';
    const target = { group: NATIVE_GROUP, version: NATIVE_VERSION, plural: 'auditsinks' };
    if (existing === undefined) {
      await call('create native AuditSink', () =>
        this.#custom.createClusterCustomObject({ ...target, body }),
      );
    } else {
      const metadata = { ...body.metadata, resourceVersion: existing.metadata?.resourceVersion };
      await call('update native AuditSink', () =>
        this.#custom.replaceClusterCustomObject({ ...target, name, body: { ...body, metadata } }),
      );
    }
  }

  /** Deletes a native AuditSink; one already gone is not an error. */
  async deleteNativeSink(name: string): Promise<void> {
    try {
      await call('delete native AuditSink', () =>
        this.#custom.deleteClusterCustomObject({
          group: NATIVE_GROUP,
          version: NATIVE_VERSION,
          plural: 'auditsinks',
          name,
        }),
      );
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }
}
