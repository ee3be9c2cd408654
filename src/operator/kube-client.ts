/**
 * The operator's API calls ({@link KubeApi}) on `@kubernetes/client-node`, the only module that
 * imports it: every call with a deadline, and client-node's ApiException turned into a
 * {@link KubeApiError} that carries the apiserver's status and message only.
 */
import {
  ApiException,
  ApisApi,
  AuthenticationV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  ListWatch,
  PatchStrategy,
  setHeaderOptions,
  Watch,
} from '@kubernetes/client-node';
import type { SinkKind } from '../sinks/types.ts';
import {
  type ConfigMapObject,
  type EventRecord,
  GROUP,
  type KubeApi,
  KubeApiError,
  type KubeObject,
  type Lease,
  NATIVE_GROUP,
  NATIVE_VERSION,
  type ObjectWatch,
  PLURALS,
  type ReviewedUser,
  SECRET_OPT_IN_LABEL,
  type SecretObject,
  statusOf,
  VERSION,
} from './kube.ts';

const LEASES = { group: 'coordination.k8s.io', version: 'v1', plural: 'leases' } as const;

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

/** The operator's API calls, made with the credentials of a kubeconfig. */
export class ClientNodeKubeApi implements KubeApi {
  readonly #core: CoreV1Api;
  readonly #custom: CustomObjectsApi;
  readonly #apis: ApisApi;
  readonly #authentication: AuthenticationV1Api;
  readonly #authorization: AuthorizationV1Api;
  readonly #watch: Watch;

  constructor(kc: KubeConfig) {
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#custom = kc.makeApiClient(CustomObjectsApi);
    this.#apis = kc.makeApiClient(ApisApi);
    this.#authentication = kc.makeApiClient(AuthenticationV1Api);
    this.#authorization = kc.makeApiClient(AuthorizationV1Api);
    this.#watch = new Watch(kc);
  }

  /** A list-then-watch of every AuditSink or every AuditPipeline; not started. */
  sinkWatch(kind: SinkKind): ObjectWatch<KubeObject> {
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
  secretWatch(namespace: string, name: string): ObjectWatch<SecretObject> {
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

  /** Who a bearer token belongs to; undefined when it does not authenticate. */
  async reviewToken(token: string): Promise<ReviewedUser | undefined> {
    // No audiences: the token must be valid for the apiserver itself, as a ServiceAccount's
    // mounted token and a user's kubeconfig token are.
    const review = await call('create TokenReview', () =>
      this.#authentication.createTokenReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } },
      }),
    );
    const user = review.status?.user;
    const username = user?.username;
    if (review.status?.authenticated !== true || username === undefined) return undefined;
    return {
      username,
      ...(user?.uid === undefined ? {} : { uid: user.uid }),
      ...(user?.groups === undefined ? {} : { groups: user.groups }),
      ...(user?.extra === undefined ? {} : { extra: user.extra }),
    };
  }

  /** Whether `user` may `verb` the non-resource URL `path`. */
  async reviewNonResourceAccess(user: ReviewedUser, path: string, verb: string): Promise<boolean> {
    const access = await call('create SubjectAccessReview', () =>
      this.#authorization.createSubjectAccessReview({
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: {
            user: user.username,
            ...(user.uid === undefined ? {} : { uid: user.uid }),
            ...(user.groups === undefined ? {} : { groups: [...user.groups] }),
            ...(user.extra === undefined
              ? {}
              : {
                  extra: Object.fromEntries(
                    Object.entries(user.extra).map(([k, v]) => [k, [...v]]),
                  ),
                }),
            nonResourceAttributes: { path, verb },
          },
        },
      }),
    );
    return access.status?.allowed === true;
  }
}
