/**
 * Builders of AuditSink and AuditPipeline manifests, and the data they often carry, shared by the
 * unit, integration and control-plane tests. Pure data: written out literally, not imported from
 * src/, so the tests do not take the API version or a default from the code they test.
 */

/** A manifest or a part of one. */
export type Json = Record<string, unknown>;

/** The API group and version of both resources. */
export const API_VERSION = 'kube-audit.dev/v1alpha1';

/** A syntactically PEM-shaped bundle: the schema and the operator check the armour, TLS the rest. */
export const PEM_CERTIFICATE =
  '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUDq0hYw2J0f6m\n-----END CERTIFICATE-----\n';

/** {@link PEM_CERTIFICATE} as a `caBundle` carries it: base64. */
export const PEM_BASE64 = Buffer.from(PEM_CERTIFICATE).toString('base64');

/** An AuditSink named `name` with `spec`; `metadata` adds to its metadata (e.g. a generation). */
export function auditSinkResource(spec: Json, name = 'legacy', metadata: Json = {}): Json {
  return { apiVersion: API_VERSION, kind: 'AuditSink', metadata: { name, ...metadata }, spec };
}

/** An AuditPipeline `namespace/name` with `spec`; `metadata` adds to its metadata. */
export function pipelineResource(
  spec: Json,
  namespace = 'shop',
  name = 'orders',
  metadata: Json = {},
): Json {
  return {
    apiVersion: API_VERSION,
    kind: 'AuditPipeline',
    metadata: { name, namespace, ...metadata },
    spec,
  };
}
