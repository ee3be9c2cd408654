/**
 * The operator's view of the Kubernetes API: the calls its parts make, grouped by what they are
 * about, as interfaces over plain objects. `kube-client.ts` implements them on
 * `@kubernetes/client-node` (the only module that imports it); the unit tests run the same parts
 * against an in-memory fake of the API (`test/support/fake-kube-api.ts`).
 */
import type { SinkKind } from '../sinks/types.ts';

/** The API group and version of AuditSink and AuditPipeline. */
export const GROUP = 'kube-audit.dev';
export const VERSION = 'v1alpha1';

/** The removed dynamic audit API, still served by 1.13–1.18 with `--audit-dynamic-configuration`. */
export const NATIVE_GROUP = 'auditregistration.k8s.io';
export const NATIVE_VERSION = 'v1alpha1';

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

/** The metadata the operator reads of an object. */
export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** A resource as listed or watched: what the operator reads of it. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  spec?: unknown;
  status?: unknown;
}

/** A Secret as watched. */
export interface SecretObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
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

/** Who a bearer token belongs to, as a TokenReview says. */
export interface ReviewedUser {
  readonly username: string;
  readonly uid?: string;
  readonly groups?: readonly string[];
  readonly extra?: Readonly<Record<string, readonly string[]>>;
}

/**
 * A list-then-watch of some objects with a local cache, as client-node's ListWatch: `start`
 * lists (reporting adds, updates and the deletions a relist finds) and then watches; a watch
 * that fails after it was established is reported as `error` and not resumed (the Informer
 * restarts it). Not started when handed out.
 */
export interface ObjectWatch<T> {
  on(event: 'add' | 'update' | 'delete', callback: (obj: T) => void): void;
  on(event: 'error', callback: (err?: unknown) => void): void;
  /** Lists, then watches; rejects when the list fails. */
  start(): Promise<void>;
  /** Stops watching; the cache keeps its contents. */
  stop(): Promise<void>;
  /** Every cached object. */
  list(): readonly T[];
  /** A cached object. */
  get(name: string, namespace?: string): T | undefined;
}

/** AuditSink and AuditPipeline resources: read by every replica, status written by the leader. */
export interface SinkResourcesApi {
  /** A list-then-watch of every AuditSink or every AuditPipeline; not started. */
  sinkWatch(kind: SinkKind): ObjectWatch<KubeObject>;
  /** Every AuditSink or every AuditPipeline, listed once. */
  listSinkResources(kind: SinkKind): Promise<KubeObject[]>;
  /** Replaces the status of a resource with a merge patch of `status`; 404 when it is gone. */
  patchStatus(kind: SinkKind, namespace: string, name: string, status: unknown): Promise<void>;
}

/** The Secrets that sinks reference, one watch each. */
export interface SecretsApi {
  /**
   * A list-then-watch of one Secret, by name, and only if it carries {@link SECRET_OPT_IN_LABEL}:
   * only referenced Secrets are read, and only those their owners made available to sinks.
   */
  secretWatch(namespace: string, name: string): ObjectWatch<SecretObject>;
}

/** Events about the resources. */
export interface EventsApi {
  /** Creates an Event about an object; one about a cluster-scoped object goes to `default`. */
  createEvent(event: EventRecord, component: string, now: Date): Promise<void>;
}

/** The leader-election Lease. */
export interface LeasesApi {
  /** Reads a Lease, or undefined when there is none. */
  readLease(namespace: string, name: string): Promise<Lease | undefined>;
  /** Creates a Lease; rejects with 409 when another replica created it first. */
  createLease(lease: Lease): Promise<Lease>;
  /** Replaces a Lease; rejects with 409 when it changed since it was read. */
  replaceLease(lease: Lease): Promise<Lease>;
}

/** The ConfigMaps that hold the replicas' reports and the leader's totals (ADR 0013). */
export interface ConfigMapsApi {
  /** The ConfigMaps of a namespace that carry `labelSelector`, listed once. */
  listConfigMaps(namespace: string, labelSelector: string): Promise<ConfigMapObject[]>;
  /** Creates a ConfigMap; rejects with 409 when one of that name exists. */
  createConfigMap(body: ConfigMapObject): Promise<ConfigMapObject>;
  /**
   * Replaces a ConfigMap; with `metadata.resourceVersion`, only if it is still that version
   * (409 otherwise); 404 when it is gone.
   */
  replaceConfigMap(body: ConfigMapObject): Promise<ConfigMapObject>;
}

/** Native AuditSinks of the removed `auditregistration.k8s.io/v1alpha1` API. */
export interface NativeAuditSinksApi {
  /** Whether the apiserver serves the removed `auditregistration.k8s.io/v1alpha1` API. */
  servesNativeAuditSinks(): Promise<boolean>;
  /** Native AuditSinks carrying `labelSelector`. */
  listNativeSinks(labelSelector: string): Promise<KubeObject[]>;
  /** Creates (no `existing`) or replaces (at `existing`'s resourceVersion) a native AuditSink. */
  applyNativeSink(body: KubeObject, existing: KubeObject | undefined): Promise<void>;
  /** Deletes a native AuditSink; one already gone is not an error. */
  deleteNativeSink(name: string): Promise<void>;
}

/** TokenReview and SubjectAccessReview, as the operator's own identity. */
export interface AccessReviewsApi {
  /** Who a bearer token belongs to; undefined when it does not authenticate. */
  reviewToken(token: string): Promise<ReviewedUser | undefined>;
  /** Whether `user` may `verb` the non-resource URL `path`. */
  reviewNonResourceAccess(user: ReviewedUser, path: string, verb: string): Promise<boolean>;
}

/** Every API call the operator makes. */
export interface KubeApi
  extends
    SinkResourcesApi,
    SecretsApi,
    EventsApi,
    LeasesApi,
    ConfigMapsApi,
    NativeAuditSinksApi,
    AccessReviewsApi {}

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

/** The HTTP status of a failed API call, or undefined for transport errors and timeouts. */
export function statusOf(err: unknown): number | undefined {
  if (err instanceof KubeApiError) return err.status === 0 ? undefined : err.status;
  return undefined;
}

/**
 * A MicroTime as the apiserver parses it: RFC 3339 with exactly six fractional digits (client-node
 * serialises Dates with three, which the apiserver refuses for Lease times).
 */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}
