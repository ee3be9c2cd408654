/**
 * Building a {@link Sink} from an AuditSink or AuditPipeline resource, with every problem reported
 * at once and named by its field path (`spec.influxdb.bucket: Required value`). Each field is read
 * through its schema node, the declaration the CRDs are generated from; what the schema cannot say
 * is checked here or by the destination kind. Pure.
 */
import { isLevel, isRecord, LEVELS, STAGES, type Stage } from '../audit/types.ts';
import {
  asSecretKeyRef,
  DNS1123_SUBDOMAIN,
  SECRET_NAME_MESSAGE,
  secretKeyRefNode,
} from '../outputs/fields.ts';
import { DESTINATION_KINDS, DESTINATION_NAMES, type Destinations } from '../outputs/kinds.ts';
import { compilePolicy } from '../policy/checker.ts';
import { decodePolicyBody } from '../policy/load.ts';
import type { Policy } from '../policy/types.ts';
import { FieldCheck, quoted } from '../resource/check.ts';
import type { SchemaNode } from '../resource/schema.ts';
import { type ReceiverSettings, type Sink, type SinkRef, sinkKey } from './types.ts';

/** The API group and version of both resources. */
export const SINK_API_VERSION = 'kube-audit.dev/v1alpha1';

/** Operator settings that shape how a resource becomes a sink. */
export interface SinkSettings {
  /** Pipelines in these namespaces see events of every namespace. */
  readonly clusterWideNamespaces: readonly string[];
  /**
   * Whether a sink must name a destination. The operator requires one; standalone mode gives a
   * sink without one its embedded line-protocol file.
   */
  readonly requireDestination: boolean;
}

/** A resource that cannot become a sink; `problems` names every bad field. */
export class SinkSpecError extends Error {
  override readonly name = 'SinkSpecError';
  readonly code = 'INVALID_SINK';
  readonly problems: readonly string[];

  constructor(what: string, problems: readonly string[]) {
    super(`${what}: invalid: ${problems.join('; ')}`);
    this.problems = problems;
  }
}

/**
 * The removed `auditregistration.k8s.io` policy of an AuditSink: one level for everything, and the
 * stages to keep.
 */
export const LEGACY_POLICY_SCHEMA: SchemaNode = {
  type: 'object',
  description:
    'One level for every event, and the stages to keep, as the removed API had it. For rule-based policies use an AuditPipeline.',
  required: ['level'],
  'x-kubernetes-validations': [
    {
      // As upstream ValidatePolicy: a level that records something needs stages.
      rule: "self.level == 'None' || (has(self.stages) && size(self.stages) > 0)",
      fieldPath: '.stages',
      reason: 'FieldValueRequired',
      message: 'the stages to keep, unless level is None',
      // A bad level or stage is reported as such, not as missing stages too.
      holds: (self) =>
        !isLevel(self.level) ||
        self.level === 'None' ||
        (Array.isArray(self.stages) && self.stages.length > 0) ||
        (self.stages !== undefined && self.stages !== null && !Array.isArray(self.stages)),
    },
  ],
  properties: {
    level: {
      type: 'string',
      description:
        'How much of each request to keep: None (nothing), Metadata (who, what, when; no bodies), Request (plus the request body) or RequestResponse (plus the response body). Never more than the kube-apiserver captured.',
      enum: LEVELS,
    },
    stages: {
      type: 'array',
      description:
        'The stages to keep events of; the others are dropped. Required unless level is None.',
      items: { type: 'string', enum: STAGES },
      operator: { typeMessage: 'expected an array of stages' },
    },
  },
  operator: { typeMessage: 'Required value' },
};

/**
 * `spec.receiver.tokenSecretRef`: the sink's own write credential (ADR 0018), for a kube-apiserver
 * of another cluster that should post to this sink and nowhere else.
 */
function tokenSecretRefNode(where: string): SchemaNode {
  return secretKeyRefNode(
    `A key of a Secret in ${where}, labelled kube-audit.dev/usable-by-sinks: "true", holding bearer tokens, one per line (blank lines and lines starting with # are ignored). They are accepted on this sink's own endpoints only, besides the operator's receiver-wide credentials, and answered 403 on every other endpoint. Changes to the Secret apply without a restart; while it or the key is missing the endpoint accepts the receiver-wide credentials only.`,
    'The key holding the tokens.',
  );
}

/** `spec.receiver` of an AuditSink: its own write credential only (no dedicated listener). */
export const SINK_RECEIVER_SCHEMA: SchemaNode = {
  type: 'object',
  description:
    "Who may post to the sink's own endpoint (status.endpoint) besides the operator's receiver-wide credentials.",
  properties: { tokenSecretRef: tokenSecretRefNode("the operator's namespace") },
  operator: { typeMessage: 'expected an object' },
};

/** `spec.receiver` of an AuditPipeline: its own listener and write credential (SPEC 4.2). */
export const RECEIVER_SCHEMA: SchemaNode = {
  type: 'object',
  description:
    "The pipeline's own listener, for a kube-apiserver of another cluster that should post to this pipeline only. Without it the pipeline is still reachable at its path on the operator's shared listener (status.endpoint).",
  'x-kubernetes-validations': [
    {
      rule: '!has(self.tlsSecretName) || has(self.port)',
      fieldPath: '.tlsSecretName',
      reason: 'FieldValueForbidden',
      message: 'a TLS Secret needs a dedicated port',
      holds: (self) =>
        self.tlsSecretName === undefined ||
        self.tlsSecretName === null ||
        (self.port !== undefined && self.port !== null),
    },
  ],
  properties: {
    port: {
      type: 'integer',
      format: 'int32',
      description:
        'A dedicated HTTPS port for this pipeline only, from 1024 (the operator runs unprivileged) to 65535.',
      minimum: 1024,
      maximum: 65_535,
    },
    tlsSecretName: {
      type: 'string',
      description:
        "A kubernetes.io/tls Secret in the pipeline's namespace with the dedicated listener's certificate. Needs port; default the operator's own certificate.",
      maxLength: 253,
      pattern: DNS1123_SUBDOMAIN,
      operator: { patternMessage: SECRET_NAME_MESSAGE },
    },
    tokenSecretRef: tokenSecretRefNode("the pipeline's namespace"),
  },
  operator: { typeMessage: 'expected an object' },
};

/**
 * Builds the sink a resource declares.
 *
 * @throws SinkSpecError listing every problem of the resource.
 */
export function sinkFromResource(resource: unknown, settings: SinkSettings): Sink {
  const v = new FieldCheck();
  if (!isRecord(resource)) throw new SinkSpecError('resource', ['expected an object']);
  const kind = resource.kind;
  if (kind !== 'AuditSink' && kind !== 'AuditPipeline') {
    throw new SinkSpecError('resource', [
      `kind: Unsupported value: ${quoted(kind ?? null)}: supported values: "AuditSink", "AuditPipeline"`,
    ]);
  }
  if (resource.apiVersion !== SINK_API_VERSION) {
    v.add(
      'apiVersion',
      `Unsupported value: ${quoted(resource.apiVersion ?? null)}: supported values: "${SINK_API_VERSION}"`,
    );
  }
  const metadata = isRecord(resource.metadata) ? resource.metadata : {};
  const name = typeof metadata.name === 'string' ? metadata.name : '';
  const namespace = typeof metadata.namespace === 'string' ? metadata.namespace : '';
  if (name === '') v.add('metadata.name', 'Required value');
  if (kind === 'AuditPipeline' && namespace === '') v.add('metadata.namespace', 'Required value');
  const ref: SinkRef = { kind, name, namespace: kind === 'AuditSink' ? '' : namespace };
  const what = kind === 'AuditSink' ? `AuditSink ${name}` : `AuditPipeline ${namespace}/${name}`;

  const spec = resource.spec;
  if (!isRecord(spec)) {
    v.add('spec', 'Required value');
    throw new SinkSpecError(what, v.problems);
  }
  const policy =
    kind === 'AuditSink' ? legacyPolicy(spec.policy, v) : pipelinePolicy(spec.policy, v);
  const destinations: Record<string, unknown> = {};
  for (const destination of DESTINATION_NAMES) {
    const parsed = DESTINATION_KINDS[destination].parse(
      spec[destination],
      `spec.${destination}`,
      v,
    );
    if (parsed !== undefined) destinations[destination] = parsed;
  }
  // Only a resource that names no destination at all lacks one; a broken one is reported as such.
  const named = DESTINATION_NAMES.some((d) => DESTINATION_KINDS[d].names(spec[d]));
  if (settings.requireDestination && !named) {
    v.add('spec', `Required value: ${DESTINATION_REQUIRED.message}`);
  }
  const receiver = receiverSettings(kind, spec.receiver, v);
  if (v.problems.length > 0 || policy === undefined) throw new SinkSpecError(what, v.problems);

  const clusterWide = kind === 'AuditSink' || settings.clusterWideNamespaces.includes(namespace);
  const generation = typeof metadata.generation === 'number' ? metadata.generation : undefined;
  return {
    ref,
    key: sinkKey(ref),
    label: kind === 'AuditSink' ? name : `${namespace}/${name}`,
    ...(generation === undefined ? {} : { generation }),
    policy,
    compiledPolicy: compilePolicy(policy),
    warnings: v.warnings,
    scope: { namespace: clusterWide ? null : namespace },
    ...(destinations as Destinations),
    ...(receiver === undefined ? {} : { receiver }),
  };
}

/** `spec.receiver` as the sink model keeps it. */
function receiverSettings(
  kind: SinkRef['kind'],
  value: unknown,
  v: FieldCheck,
): ReceiverSettings | undefined {
  if (kind === 'AuditSink' && isRecord(value)) {
    // Said plainly: the CRD would prune these, and the user would wonder where they went.
    for (const field of ['port', 'tlsSecretName']) {
      if (value[field] !== undefined && value[field] !== null) {
        v.add(
          `spec.receiver.${field}`,
          'unknown field: dedicated receivers are an AuditPipeline setting',
        );
      }
    }
  }
  const schema = kind === 'AuditSink' ? SINK_RECEIVER_SCHEMA : RECEIVER_SCHEMA;
  const read = v.read(schema, value, 'spec.receiver') as
    (ReceiverSettings & { tokenSecretRef?: unknown }) | undefined;
  if (read === undefined) return undefined;
  const { tokenSecretRef: ref, ...rest } = read;
  const tokenSecretRef = asSecretKeyRef(ref);
  const settings: ReceiverSettings = {
    ...rest,
    ...(tokenSecretRef === undefined ? {} : { tokenSecretRef }),
  };
  return Object.keys(settings).length === 0 ? undefined : settings;
}

/**
 * The CEL rule on `spec` that a resource names at least one destination, as the operator requires
 * (standalone mode gives a sink without one its embedded line-protocol file).
 */
export const DESTINATION_REQUIRED = {
  rule: DESTINATION_NAMES.map((d) => DESTINATION_KINDS[d].named.rule).join(' || '),
  reason: 'FieldValueRequired',
  message: `at least one of ${listed(DESTINATION_NAMES.map((d) => DESTINATION_KINDS[d].named.path))}`,
} as const;

/** `a`, `a and b`, `a, b and c`. */
function listed(items: readonly string[]): string {
  return items.length <= 1
    ? (items[0] ?? '')
    : `${items.slice(0, -1).join(', ')} and ${items[items.length - 1] ?? ''}`;
}

/**
 * The removed `auditregistration.k8s.io` policy: one level for everything, and the stages to keep.
 * As the dynamic backend did, it becomes one catch-all rule with the other stages omitted.
 */
function legacyPolicy(value: unknown, v: FieldCheck): Policy | undefined {
  if (value === undefined || value === null) {
    v.add('spec.policy', 'Required value');
    return undefined;
  }
  const read = v.read(LEGACY_POLICY_SCHEMA, value, 'spec.policy') as
    { level: Policy['rules'][number]['level']; stages?: Stage[] } | undefined;
  if (read === undefined) return undefined;
  const { level } = read;
  const stages = read.stages ?? [];
  const omitStages = STAGES.filter((stage) => !stages.includes(stage));
  return {
    rules: [{ level }],
    ...(level === 'None' || omitStages.length === 0 ? {} : { omitStages }),
  };
}

function pipelinePolicy(value: unknown, v: FieldCheck): Policy | undefined {
  if (value === undefined || value === null) {
    v.add('spec.policy', 'Required value');
    return undefined;
  }
  if (!isRecord(value)) {
    v.add(
      'spec.policy',
      `expected a Policy object, got ${Array.isArray(value) ? 'an array' : typeof value}`,
    );
    return undefined;
  }
  const decoded = decodePolicyBody(value);
  for (const problem of decoded.problems) v.addRaw(`spec.policy.${problem}`);
  for (const warning of decoded.warnings) v.warnings.push(`spec.policy.${warning}`);
  return decoded.problems.length === 0 ? decoded.policy : undefined;
}
