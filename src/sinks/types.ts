/**
 * The Sink model: what the data path needs to know about one AuditSink or AuditPipeline, built and
 * validated once from the resource (see `spec.ts`), then shared read-only.
 */
import type { CompiledPolicy } from '../policy/checker.ts';
import type { Policy } from '../policy/types.ts';

/** The two resource kinds a sink comes from. */
export type SinkKind = 'AuditSink' | 'AuditPipeline';

/** Which resource a sink comes from. */
export interface SinkRef {
  readonly kind: SinkKind;
  /** Empty for the cluster-scoped AuditSink. */
  readonly namespace: string;
  readonly name: string;
}

/** A reference to one key of a Secret in the sink's own namespace (or the operator's, for AuditSink). */
export interface SecretKeyRef {
  readonly name: string;
  readonly key: string;
}

/** The tags the InfluxDB schema can write, in the documented order. */
export const TAG_NAMES = [
  'level',
  'stage',
  'verb',
  'api_group',
  'api_version',
  'resource',
  'subresource',
  'namespace',
  'user',
  'code',
  'decision',
  'sink',
] as const;

/** One tag of the InfluxDB schema. */
export type TagName = (typeof TAG_NAMES)[number];

/** Where and how a sink writes to InfluxDB (SPEC 2.3). */
export interface InfluxDestination {
  readonly url: string;
  readonly org: string;
  /** A bucket, or `database/retention-policy` on InfluxDB 1.8. */
  readonly bucket: string;
  /** Absent when the server needs no authentication. */
  readonly tokenSecretRef?: SecretKeyRef;
  readonly measurement: string;
  readonly createBucket: boolean;
  /** Retention of a created bucket in seconds; 0 keeps data forever. */
  readonly retentionSeconds: number;
  readonly batchSize: number;
  readonly flushIntervalMs: number;
  /** Which of {@link TAG_NAMES} are written as tags; the others are written as fields. */
  readonly tags: readonly TagName[];
  /** Extra tags on every point, e.g. `cluster: prod-eu`. */
  readonly staticTags: Readonly<Record<string, string>>;
}

/** Forwarding of the filtered events as `audit.k8s.io/v1` EventList POSTs. */
export interface WebhookDestination {
  /** The resolved URL: `clientConfig.url`, or `https://<name>.<namespace>.svc:<port><path>`. */
  readonly url: string;
  /** PEM bundle to verify the server with; absent means the system roots. */
  readonly caBundle?: string;
  /** Batches per second. */
  readonly qps: number;
  /** Batches that may be sent at once before the rate applies. */
  readonly burst: number;
}

/** A sink's own receiver endpoint settings (SPEC 4.2). */
export interface ReceiverSettings {
  /** A dedicated listener port; absent means the shared listener only. */
  readonly port?: number;
  /** A Secret of type kubernetes.io/tls for the dedicated listener. */
  readonly tlsSecretName?: string;
}

/** Which events a sink may see. */
export interface SinkScope {
  /** Only events whose `objectRef.namespace` is this one; null for every event. */
  readonly namespace: string | null;
}

/** One sink, ready for the data path. */
export interface Sink {
  readonly ref: SinkRef;
  /** Stable identity: `AuditSink/<name>` or `AuditPipeline/<namespace>/<name>`. */
  readonly key: string;
  /** Value of the `sink` tag: `<name>` or `<namespace>/<name>`. */
  readonly label: string;
  /** The resource generation this sink was built from, when it has one. */
  readonly generation?: number;
  readonly policy: Policy;
  readonly compiledPolicy: CompiledPolicy;
  /** Accepted but probably unintended, e.g. unknown policy fields; each names its field path. */
  readonly warnings: readonly string[];
  readonly scope: SinkScope;
  readonly influxdb?: InfluxDestination;
  readonly webhook?: WebhookDestination;
  readonly receiver?: ReceiverSettings;
}

/** The identity key of a sink reference. */
export function sinkKey(ref: SinkRef): string {
  return ref.kind === 'AuditSink'
    ? `AuditSink/${ref.name}`
    : `AuditPipeline/${ref.namespace}/${ref.name}`;
}
