/**
 * The Sink model: what the data path needs to know about one AuditSink or AuditPipeline, built and
 * validated once from the resource (see `spec.ts`), then shared read-only.
 */
import type { SecretKeyRef } from '../outputs/destination.ts';
import type { Destinations } from '../outputs/kinds.ts';
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

/** A sink's own receiver endpoint settings (SPEC 4.2). */
export interface ReceiverSettings {
  /** A dedicated listener port; absent means the shared listener only. */
  readonly port?: number;
  /** A Secret of type kubernetes.io/tls for the dedicated listener. */
  readonly tlsSecretName?: string;
  /**
   * A Secret key of bearer tokens, one per line, accepted on this sink's own endpoints only
   * (besides the receiver-wide credentials).
   */
  readonly tokenSecretRef?: SecretKeyRef;
}

/** Which events a sink may see. */
export interface SinkScope {
  /** Only events whose `objectRef.namespace` is this one; null for every event. */
  readonly namespace: string | null;
}

/**
 * One sink, ready for the data path; its destinations are under their `spec` field names
 * (`influxdb`, `webhook`), one property per kind of `outputs/kinds.ts`.
 */
export interface Sink extends Destinations {
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
  readonly receiver?: ReceiverSettings;
}

/** The identity key of a sink reference. */
export function sinkKey(ref: SinkRef): string {
  return ref.kind === 'AuditSink'
    ? `AuditSink/${ref.name}`
    : `AuditPipeline/${ref.namespace}/${ref.name}`;
}
