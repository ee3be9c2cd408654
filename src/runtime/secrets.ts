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

/** The Secrets a sink reads, as `namespace/name` with the keys it needs from each. */
export function referencedSecrets(
  sink: Sink,
  operatorNamespace: string,
): { readonly id: string; readonly keys: readonly string[] }[] {
  const namespace = secretNamespace(sink.ref, operatorNamespace);
  const refs: { id: string; keys: string[] }[] = [];
  for (const ref of destinationSecrets(sink)) {
    refs.push({ id: `${namespace}/${ref.name}`, keys: [ref.key] });
  }
  const tls = sink.receiver?.tlsSecretName;
  if (tls !== undefined)
    refs.push({ id: `${sink.ref.namespace}/${tls}`, keys: ['tls.crt', 'tls.key'] });
  return refs;
}
