/**
 * Building a {@link Sink} from an AuditSink or AuditPipeline resource, with every problem reported
 * at once and named by its field path (`spec.influxdb.bucket: Required value`). Pure.
 */
import { isLevel, isRecord, isStage, STAGES, type Stage } from '../audit/types.ts';
import { parseDuration } from '../config/duration.ts';
import { compilePolicy } from '../policy/checker.ts';
import { decodePolicyBody } from '../policy/load.ts';
import type { Policy } from '../policy/types.ts';
import {
  type InfluxDestination,
  type ReceiverSettings,
  type SecretKeyRef,
  type Sink,
  type SinkRef,
  sinkKey,
  TAG_NAMES,
  type TagName,
  type WebhookDestination,
} from './types.ts';

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

/** Defaults of the InfluxDB destination (SPEC 2.3); each is documented in the resource reference. */
export const INFLUX_DEFAULTS = Object.freeze({
  measurement: 'kubernetes_audit',
  /** 1,000 points: the InfluxDB client's own default, a few apiserver batches per write. */
  batchSize: 1_000,
  /** 1 s: the apiserver's own batching already waits up to 30 s; adding more hides outages. */
  flushIntervalMs: 1_000,
});

/** Defaults of the webhook throttle, as the removed AuditSink API had them. */
export const THROTTLE_DEFAULTS = Object.freeze({ qps: 10, burst: 15 });

// InfluxDB refuses retention periods under one hour (except 0, forever).
const MIN_RETENTION_SECONDS = 3_600;
const MAX_BATCH_SIZE = 100_000;

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
  const influxdb =
    spec.influxdb === undefined || spec.influxdb === null
      ? undefined
      : influxDestination(spec.influxdb, v);
  const webhookSpec = isRecord(spec.webhook) ? spec.webhook : undefined;
  if (spec.webhook !== undefined && spec.webhook !== null && webhookSpec === undefined) {
    v.add('spec.webhook', 'expected an object');
  }
  const webhook =
    webhookSpec?.clientConfig === undefined || webhookSpec.clientConfig === null
      ? undefined
      : webhookDestination(webhookSpec, v);
  if (
    webhookSpec !== undefined &&
    (webhookSpec.clientConfig === undefined || webhookSpec.clientConfig === null) &&
    webhookSpec.throttle !== undefined &&
    webhookSpec.throttle !== null
  ) {
    v.add('spec.webhook.clientConfig', 'Required value: a throttle needs a webhook to throttle');
  }
  // Only a resource that names no destination at all lacks one; a broken one is reported as such.
  const namesDestination =
    (spec.influxdb !== undefined && spec.influxdb !== null) ||
    (webhookSpec?.clientConfig !== undefined && webhookSpec.clientConfig !== null);
  if (settings.requireDestination && !namesDestination) {
    v.add('spec', 'Required value: at least one of spec.influxdb and spec.webhook.clientConfig');
  }
  let receiver: ReceiverSettings | undefined;
  if (kind === 'AuditPipeline' && spec.receiver !== undefined && spec.receiver !== null) {
    receiver = receiverSettings(spec.receiver, v);
  } else if (kind === 'AuditSink' && spec.receiver !== undefined && spec.receiver !== null) {
    v.add('spec.receiver', 'unknown field: dedicated receivers are an AuditPipeline setting');
  }
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
    ...(influxdb === undefined ? {} : { influxdb }),
    ...(webhook === undefined ? {} : { webhook }),
    ...(receiver === undefined ? {} : { receiver }),
  };
}

/**
 * The removed `auditregistration.k8s.io` policy: one level for everything, and the stages to keep.
 * As the dynamic backend did, it becomes one catch-all rule with the other stages omitted.
 */
function legacyPolicy(value: unknown, v: FieldCheck): Policy | undefined {
  if (!isRecord(value)) {
    v.add('spec.policy', 'Required value');
    return undefined;
  }
  const level = value.level;
  if (level === undefined || level === null || level === '')
    v.add('spec.policy.level', 'Required value');
  else if (!isLevel(level)) {
    v.add(
      'spec.policy.level',
      `Unsupported value: ${quoted(level)}: supported values: "None", "Metadata", "Request", "RequestResponse"`,
    );
  }
  const stages: Stage[] = [];
  const problemsBefore = v.problems.length;
  if (value.stages !== undefined && value.stages !== null) {
    if (!Array.isArray(value.stages)) v.add('spec.policy.stages', 'expected an array of stages');
    else {
      value.stages.forEach((stage, i) => {
        if (isStage(stage)) stages.push(stage);
        else
          v.add(
            `spec.policy.stages[${i}]`,
            `Unsupported value: ${quoted(stage)}: supported values: ${STAGES.map((s) => `"${s}"`).join(', ')}`,
          );
      });
    }
  }
  // As upstream ValidatePolicy: no stages is an error unless the level records nothing anyway.
  const stagesValid = v.problems.length === problemsBefore;
  if (isLevel(level) && level !== 'None' && stages.length === 0 && stagesValid) {
    v.add('spec.policy.stages', 'Required value: the stages to keep, unless level is None');
  }
  if (!isLevel(level)) return undefined;
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

function influxDestination(value: unknown, v: FieldCheck): InfluxDestination | undefined {
  const path = 'spec.influxdb';
  if (!isRecord(value)) {
    v.add(path, 'expected an object');
    return undefined;
  }
  const url = v.httpUrl(value.url, `${path}.url`);
  const org = v.requiredString(value.org, `${path}.org`);
  const bucket = v.requiredString(value.bucket, `${path}.bucket`);
  const tokenSecretRef =
    value.tokenSecretRef === undefined || value.tokenSecretRef === null
      ? undefined
      : secretKeyRef(value.tokenSecretRef, `${path}.tokenSecretRef`, v);
  const measurement =
    v.optionalString(value.measurement, `${path}.measurement`) ?? INFLUX_DEFAULTS.measurement;
  // InfluxDB drops measurements starting with `#` without an error, and Flux cannot read names
  // with quotes or `=`: the same rule as tag names keeps every stored point readable.
  if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(measurement)) {
    v.add(
      `${path}.measurement`,
      `Invalid value: ${quoted(measurement)}: letters, digits, "_", "." and "-", starting with a letter or "_"`,
    );
  }
  const createBucket = v.optionalBoolean(value.createBucket, `${path}.createBucket`) ?? false;
  let retentionSeconds = 0;
  const retention = v.optionalString(value.retention, `${path}.retention`);
  if (retention !== undefined) {
    const ms = parseDuration(retention);
    if (typeof ms !== 'number')
      v.add(`${path}.retention`, `Invalid value: ${quoted(retention)}: ${ms.error}`);
    else if (ms !== 0 && ms < MIN_RETENTION_SECONDS * 1000) {
      v.add(
        `${path}.retention`,
        `Invalid value: ${quoted(retention)}: InfluxDB needs at least 1h, or 0 to keep data forever`,
      );
    } else retentionSeconds = Math.round(ms / 1000);
    if (!createBucket)
      v.add(
        `${path}.retention`,
        'Forbidden: retention applies only to a bucket the operator creates (createBucket: true)',
      );
  }
  const batchSize =
    v.optionalInteger(value.batchSize, `${path}.batchSize`, 1, MAX_BATCH_SIZE) ??
    INFLUX_DEFAULTS.batchSize;
  let flushIntervalMs: number = INFLUX_DEFAULTS.flushIntervalMs;
  const flush = v.optionalString(value.flushInterval, `${path}.flushInterval`);
  if (flush !== undefined) {
    const ms = parseDuration(flush);
    if (typeof ms !== 'number')
      v.add(`${path}.flushInterval`, `Invalid value: ${quoted(flush)}: ${ms.error}`);
    else if (ms < 10 || ms > 3_600_000)
      v.add(
        `${path}.flushInterval`,
        `Invalid value: ${quoted(flush)}: must be between 10ms and 1h`,
      );
    else flushIntervalMs = ms;
  }
  const tags = tagSet(value.tags, `${path}.tags`, v);
  const staticTags = staticTagSet(value.staticTags, `${path}.staticTags`, v);
  if (url === undefined || org === undefined || bucket === undefined) return undefined;
  return {
    url,
    org,
    bucket,
    ...(tokenSecretRef === undefined ? {} : { tokenSecretRef }),
    measurement,
    createBucket,
    retentionSeconds,
    batchSize,
    flushIntervalMs,
    tags,
    staticTags,
  };
}

function tagSet(value: unknown, path: string, v: FieldCheck): readonly TagName[] {
  if (value === undefined || value === null) return TAG_NAMES;
  if (!Array.isArray(value)) {
    v.add(path, 'expected an array of tag names');
    return TAG_NAMES;
  }
  const tags: TagName[] = [];
  value.forEach((tag, i) => {
    if (!(TAG_NAMES as readonly unknown[]).includes(tag)) {
      v.add(
        `${path}[${i}]`,
        `Unsupported value: ${quoted(tag)}: supported values: ${TAG_NAMES.map((t) => `"${t}"`).join(', ')}`,
      );
    } else if (tags.includes(tag as TagName))
      v.add(`${path}[${i}]`, `Duplicate value: ${quoted(tag)}`);
    else tags.push(tag as TagName);
  });
  return TAG_NAMES.filter((t) => tags.includes(t));
}

// Field names of the schema: a static tag may not shadow them.
const SCHEMA_FIELDS = [
  'audit_id',
  'request_uri',
  'name',
  'user_groups',
  'impersonated_user',
  'source_ip',
  'user_agent',
  'latency_ms',
  'reason',
  'annotations',
  'request_object',
  'response_object',
  // Written beside a string field cut at InfluxDB's 1 MiB limit.
  'request_object_bytes',
  'response_object_bytes',
  'annotations_bytes',
  // Written beside a tag cut to fit InfluxDB's series key, with the whole value.
  'level_full',
  'stage_full',
  'verb_full',
  'api_group_full',
  'api_version_full',
  'resource_full',
  'subresource_full',
  'namespace_full',
  'user_full',
  'code_full',
  'decision_full',
  'sink_full',
  // InfluxDB's own column names: a tag with one of them fails every write or every query.
  'time',
  '_time',
  '_field',
  '_value',
  '_measurement',
  '_start',
  '_stop',
];

function staticTagSet(
  value: unknown,
  path: string,
  v: FieldCheck,
): Readonly<Record<string, string>> {
  if (value === undefined || value === null) return {};
  if (!isRecord(value)) {
    v.add(path, 'expected a map of tag names to values');
    return {};
  }
  const tags: Record<string, string> = {};
  for (const [key, tagValue] of Object.entries(value)) {
    const at = `${path}[${quoted(key)}]`;
    if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(key)) {
      v.add(
        at,
        'Invalid value: a tag name is letters, digits, "_", "." and "-", starting with a letter or "_"',
      );
    } else if ((TAG_NAMES as readonly string[]).includes(key) || SCHEMA_FIELDS.includes(key)) {
      v.add(at, `Invalid value: ${quoted(key)} is a tag or field of the audit schema`);
    } else if (typeof tagValue !== 'string' || tagValue === '') {
      v.add(at, 'Invalid value: must be a non-empty string');
    } else if (/[\n\r]/.test(tagValue)) {
      v.add(at, 'Invalid value: line protocol cannot carry a line break in a tag');
    } else tags[key] = tagValue;
  }
  return tags;
}

function secretKeyRef(value: unknown, path: string, v: FieldCheck): SecretKeyRef | undefined {
  if (!isRecord(value)) {
    v.add(path, 'expected an object with name and key');
    return undefined;
  }
  const name = v.requiredString(value.name, `${path}.name`);
  const key = v.requiredString(value.key, `${path}.key`);
  // Kubernetes' own limits on Secret names (a DNS subdomain) and data keys, 253 characters each.
  if (name !== undefined && name.length > 253) {
    v.add(`${path}.name`, 'Invalid value: may not be more than 253 chars long');
  } else if (name !== undefined && !DNS1123_SUBDOMAIN.test(name)) {
    v.add(
      `${path}.name`,
      `Invalid value: ${quoted(name)}: a Secret name is a lowercase RFC 1123 subdomain`,
    );
  }
  if (key !== undefined && key.length > 253) {
    v.add(`${path}.key`, 'Invalid value: may not be more than 253 chars long');
  } else if (key !== undefined && !/^[-._a-zA-Z0-9]+$/.test(key)) {
    v.add(
      `${path}.key`,
      `Invalid value: ${quoted(key)}: a Secret key is letters, digits, "-", "_" and "."`,
    );
  }
  return name === undefined || key === undefined ? undefined : { name, key };
}

function webhookDestination(
  webhook: Record<string, unknown>,
  v: FieldCheck,
): WebhookDestination | undefined {
  const path = 'spec.webhook';
  let qps: number = THROTTLE_DEFAULTS.qps;
  let burst: number = THROTTLE_DEFAULTS.burst;
  if (webhook.throttle !== undefined && webhook.throttle !== null) {
    if (!isRecord(webhook.throttle))
      v.add(`${path}.throttle`, 'expected an object with qps and burst');
    else {
      qps = v.optionalInteger(webhook.throttle.qps, `${path}.throttle.qps`, 1, 1_000_000) ?? qps;
      burst =
        v.optionalInteger(webhook.throttle.burst, `${path}.throttle.burst`, 1, 1_000_000) ?? burst;
    }
  }
  const cc = webhook.clientConfig;
  if (!isRecord(cc)) {
    v.add(`${path}.clientConfig`, 'expected an object with url or service');
    return undefined;
  }
  const hasUrl = cc.url !== undefined && cc.url !== null;
  const hasService = cc.service !== undefined && cc.service !== null;
  if (hasUrl === hasService) {
    v.add(`${path}.clientConfig`, 'Required value: exactly one of url or service');
    return undefined;
  }
  let url: string | undefined;
  // http is allowed, as the removed API allowed it: old manifests must migrate unchanged.
  if (hasUrl) url = v.httpUrl(cc.url, `${path}.clientConfig.url`);
  else url = serviceUrl(cc.service, `${path}.clientConfig.service`, v);
  let caBundle: string | undefined;
  if (cc.caBundle !== undefined && cc.caBundle !== null) {
    caBundle = decodeCaBundle(cc.caBundle, `${path}.clientConfig.caBundle`, v);
  }
  if (url === undefined) return undefined;
  return { url, qps, burst, ...(caBundle === undefined ? {} : { caBundle }) };
}

/** `https://<name>.<namespace>.svc:<port><path>`, as the apiserver's service resolver builds it. */
function serviceUrl(value: unknown, path: string, v: FieldCheck): string | undefined {
  if (!isRecord(value)) {
    v.add(path, 'expected an object with namespace and name');
    return undefined;
  }
  const namespace = v.requiredString(value.namespace, `${path}.namespace`);
  const name = v.requiredString(value.name, `${path}.name`);
  const port = v.optionalInteger(value.port, `${path}.port`, 1, 65_535) ?? 443;
  const urlPath = v.optionalString(value.path, `${path}.path`) ?? '';
  if (urlPath !== '' && !urlPath.startsWith('/'))
    v.add(`${path}.path`, `Invalid value: ${quoted(urlPath)}: must start with "/"`);
  if (namespace === undefined || name === undefined) return undefined;
  return `https://${name}.${namespace}.svc:${port}${urlPath}`;
}

// caBundle is base64 of PEM in the Kubernetes API ([]byte); a PEM string is accepted as-is.
function decodeCaBundle(value: unknown, path: string, v: FieldCheck): string | undefined {
  if (typeof value !== 'string' || value === '') {
    v.add(path, 'expected base64-encoded PEM certificates');
    return undefined;
  }
  const pem = value.includes('-----BEGIN') ? value : Buffer.from(value, 'base64').toString('utf8');
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    v.add(path, 'Invalid value: no PEM certificate found (expected base64-encoded PEM)');
    return undefined;
  }
  return pem;
}

function receiverSettings(value: unknown, v: FieldCheck): ReceiverSettings | undefined {
  const path = 'spec.receiver';
  if (!isRecord(value)) {
    v.add(path, 'expected an object');
    return undefined;
  }
  const port = v.optionalInteger(value.port, `${path}.port`, 1024, 65_535);
  const tlsSecretName = v.optionalString(value.tlsSecretName, `${path}.tlsSecretName`);
  if (tlsSecretName !== undefined && port === undefined) {
    v.add(`${path}.tlsSecretName`, 'Forbidden: a TLS Secret needs a dedicated port');
  }
  return {
    ...(port === undefined ? {} : { port }),
    ...(tlsSecretName === undefined ? {} : { tlsSecretName }),
  };
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Collects field problems in `path: message` form. */
class FieldCheck {
  readonly problems: string[] = [];
  readonly warnings: string[] = [];

  add(path: string, message: string): void {
    this.problems.push(`${path}: ${message}`);
  }

  addRaw(problem: string): void {
    this.problems.push(problem);
  }

  requiredString(value: unknown, path: string): string | undefined {
    if (value === undefined || value === null || value === '') {
      this.add(path, 'Required value');
      return undefined;
    }
    if (typeof value !== 'string') {
      this.add(path, `expected a string, got ${typeof value}`);
      return undefined;
    }
    return value;
  }

  optionalString(value: unknown, path: string): string | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string') {
      this.add(path, `expected a string, got ${typeof value}`);
      return undefined;
    }
    return value;
  }

  optionalBoolean(value: unknown, path: string): boolean | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'boolean') {
      this.add(path, `expected true or false, got ${typeof value}`);
      return undefined;
    }
    return value;
  }

  optionalInteger(value: unknown, path: string, min: number, max: number): number | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.add(path, `Invalid value: ${quoted(value)}: must be an integer from ${min} to ${max}`);
      return undefined;
    }
    return value;
  }

  httpUrl(value: unknown, path: string): string | undefined {
    const text = this.requiredString(value, path);
    if (text === undefined) return undefined;
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      this.add(path, `Invalid value: ${quoted(text)}: not a URL`);
      return undefined;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      this.add(path, `Invalid value: ${quoted(text)}: the scheme must be http or https`);
      return undefined;
    }
    if (url.username !== '' || url.password !== '') {
      this.add(path, 'Invalid value: credentials do not belong in the URL: use a token Secret');
      return undefined;
    }
    if (url.hash !== '') {
      this.add(path, `Invalid value: ${quoted(text)}: fragments are not allowed`);
      return undefined;
    }
    return text;
  }
}

/**
 * A value as error messages quote it: JSON, cut to 100 characters, and never deeper than a few
 * levels, so that a hostile manifest (nested thousands deep, megabytes long) costs nothing to
 * report.
 */
function quoted(value: unknown): string {
  const text = JSON.stringify(shallow(value, 3)) ?? String(value);
  return text.length > 100 ? `${text.slice(0, 97)}...` : text;
}

function shallow(value: unknown, depth: number): unknown {
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || typeof value !== 'object') return value;
  if (depth === 0) return Array.isArray(value) ? '[...]' : '{...}';
  if (Array.isArray(value)) return value.slice(0, 10).map((v) => shallow(v, depth - 1));
  return Object.fromEntries(
    Object.entries(value)
      .slice(0, 10)
      .map(([k, v]) => [k, shallow(v, depth - 1)]),
  );
}
