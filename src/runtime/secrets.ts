/**
 * Secrets as the data plane sees them: decoded string values by `namespace/name`, whether they
 * come from manifest files (standalone) or from the cluster (the operator).
 */
import { destinationSecrets } from '../outputs/kinds.ts';
import type { Sink, SinkRef } from '../sinks/types.ts';

/** Secret data (decoded) by `namespace/name`. */
export type SecretStore = ReadonlyMap<string, Readonly<Record<string, string>>>;

/**
 * The namespace a sink's Secrets live in: a pipeline's own, or the operator's for the
 * cluster-scoped AuditSink (SPEC 2.3).
 */
export function secretNamespace(ref: SinkRef, operatorNamespace: string): string {
  return ref.kind === 'AuditSink' ? operatorNamespace : ref.namespace;
}

/** A Secret a sink reads: `namespace/name`, the keys it needs, and what for. */
export interface SecretReference {
  readonly id: string;
  readonly keys: readonly string[];
  /**
   * `credentials`: the sink's own write tokens, whose absence only narrows who may post to it
   * (reported on ReceiverReady); `delivery`: what its destinations and listener need.
   */
  readonly use: 'delivery' | 'credentials';
}

/** The Secrets a sink reads, as `namespace/name` with the keys it needs from each. */
export function referencedSecrets(sink: Sink, operatorNamespace: string): SecretReference[] {
  const namespace = secretNamespace(sink.ref, operatorNamespace);
  const refs: SecretReference[] = [];
  for (const ref of destinationSecrets(sink)) {
    refs.push({ id: `${namespace}/${ref.name}`, keys: [ref.key], use: 'delivery' });
  }
  const tls = sink.receiver?.tlsSecretName;
  if (tls !== undefined) {
    refs.push({
      id: `${sink.ref.namespace}/${tls}`,
      keys: ['tls.crt', 'tls.key'],
      use: 'delivery',
    });
  }
  const tokens = sink.receiver?.tokenSecretRef;
  if (tokens !== undefined) {
    refs.push({ id: `${namespace}/${tokens.name}`, keys: [tokens.key], use: 'credentials' });
  }
  return refs;
}
