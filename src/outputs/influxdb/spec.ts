/**
 * `spec.influxdb` (SPEC 2.3): its schema, in both CRDs, and what it becomes, checked field by field
 * with the same declarations. Pure.
 */
import { CEL_DURATION_PATTERN, DURATION_PATTERN, parseDuration } from '../../config/duration.ts';
import { type FieldCheck, quoted } from '../../resource/check.ts';
import type { SchemaNode } from '../../resource/schema.ts';
import type { SecretKeyRef } from '../destination.ts';
import { asSecretKeyRef, httpUrlNode, secretKeyRefNode } from '../fields.ts';
import {
  RESERVED_TAG_NAMES,
  SELECTABLE_FIELDS,
  type SelectableField,
  TAG_NAMES,
  type TagName,
} from './schema.ts';

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
  /**
   * Which fields to write, in the schema's order (tags not written as tags among them); absent:
   * all of them. `audit_id` is written either way.
   */
  readonly fields?: readonly SelectableField[];
}

// InfluxDB refuses retention periods under one hour (except 0, forever).
const MIN_RETENTION_MS = 3_600_000;

// Measurements and tag names: InfluxDB drops measurements starting with `#` without an error, and
// Flux cannot read names with quotes or `=`; this keeps every stored point readable.
const NAME_PATTERN = '^[A-Za-z_][A-Za-z0-9_.-]*$';
const NAME_MESSAGE = 'letters, digits, "_", "." and "-", starting with a letter or "_"';

// CEL durations have no d or w: those are left to the operator's check.
const celDuration = (bounds: string) =>
  `!self.matches('${CEL_DURATION_PATTERN.replaceAll('\\', '\\\\')}') || ${bounds}`;

/** The schema of `spec.influxdb`, with the defaults the apiserver fills in. */
export const INFLUXDB_SCHEMA: SchemaNode = {
  type: 'object',
  description:
    'Where and how to write the kept events to InfluxDB (2.x, 3.x, Cloud, or 1.8 with a db/rp bucket), over the v2 write API. Optional.',
  required: ['url', 'org', 'bucket'],
  'x-kubernetes-validations': [
    {
      rule: `!has(self.fields) || self.fields.all(f, !(f in (has(self.tags) ? self.tags : [${TAG_NAMES.map((t) => `'${t}'`).join(', ')}])))`,
      fieldPath: '.fields',
      reason: 'FieldValueInvalid',
      message:
        'a tag written as a tag (see tags; all of them by default) cannot be listed in fields',
      holds: (self) => {
        if (!Array.isArray(self.fields)) return true;
        const tags: readonly unknown[] = Array.isArray(self.tags) ? self.tags : TAG_NAMES;
        return self.fields.every((field) => !tags.includes(field));
      },
    },
    {
      rule: '!has(self.retention) || (has(self.createBucket) && self.createBucket)',
      fieldPath: '.retention',
      reason: 'FieldValueForbidden',
      message: 'retention applies only to a bucket the operator creates (createBucket: true)',
      holds: (self) =>
        self.retention === undefined || self.retention === null || self.createBucket === true,
    },
  ],
  properties: {
    url: httpUrlNode(
      'The InfluxDB server, e.g. http://influxdb.monitoring:8086: http or https, without user information (use tokenSecretRef) or fragment.',
    ),
    org: {
      type: 'string',
      description: 'The organization (name or ID); any non-empty value on InfluxDB 1.8.',
      minLength: 1,
    },
    bucket: {
      type: 'string',
      description: 'The bucket to write to, or database/retention-policy on InfluxDB 1.8.',
      minLength: 1,
    },
    tokenSecretRef: secretKeyRefNode(
      "The key of a Secret holding the API token: in the resource's namespace, or the operator's for the cluster-scoped AuditSink. Omit it when the server needs no authentication.",
      "The key in the Secret's data whose value is the token.",
    ),
    measurement: {
      type: 'string',
      description:
        'The measurement to write. Default kubernetes_audit. Letters, digits, "_", "." and "-", starting with a letter or "_", so every point stays readable from Flux and InfluxQL.',
      pattern: NAME_PATTERN,
      default: 'kubernetes_audit',
      operator: { patternMessage: NAME_MESSAGE },
    },
    createBucket: {
      type: 'boolean',
      description:
        'Create the bucket through the v2 buckets API when it is missing. Default false: a missing bucket is reported in status.',
    },
    retention: {
      type: 'string',
      description:
        "Retention of a bucket the operator creates, e.g. 720h, 30d or 2w; 0 keeps data forever. At least 1h (InfluxDB's minimum). Needs createBucket: true.",
      maxLength: 64,
      // Go duration syntax plus d and w, as the operator parses durations.
      pattern: DURATION_PATTERN,
      'x-kubernetes-validations': [
        {
          rule: celDuration("duration(self) == duration('0s') || duration(self) >= duration('1h')"),
          message: 'InfluxDB needs at least 1h, or 0 to keep data forever',
        },
      ],
      operator: {
        parse: (text: string, path: string, check: FieldCheck) =>
          duration(text, path, check, (ms) =>
            ms !== 0 && ms < MIN_RETENTION_MS
              ? 'InfluxDB needs at least 1h, or 0 to keep data forever'
              : undefined,
          ),
      },
    },
    batchSize: {
      type: 'integer',
      format: 'int32',
      description: 'Points per write request. Default 2500.',
      minimum: 1,
      maximum: 100_000,
      // 2,500 points: influxd spends 15% less CPU per point than on 1,000 (the client library's
      // default), for a few MiB more held while a write is in flight (ADR 0008).
      default: 2_500,
    },
    flushInterval: {
      type: 'string',
      description:
        'The longest a point waits for its batch to fill before it is written, from 10ms to 1h. Default 1s.',
      maxLength: 64,
      pattern: DURATION_PATTERN,
      // 1 s: the apiserver's own batching already waits up to 30 s; adding more hides outages.
      default: '1s',
      'x-kubernetes-validations': [
        {
          rule: celDuration(
            "(duration(self) >= duration('10ms') && duration(self) <= duration('1h'))",
          ),
          message: 'must be between 10ms and 1h',
        },
      ],
      operator: {
        parse: (text: string, path: string, check: FieldCheck) =>
          duration(text, path, check, (ms) =>
            ms < 10 || ms > 3_600_000 ? 'must be between 10ms and 1h' : undefined,
          ),
      },
    },
    tags: {
      type: 'array',
      description:
        "Which of the schema's tags to write as tags; the others become fields. Default all of them. Each tag multiplies series cardinality.",
      'x-kubernetes-list-type': 'set',
      maxItems: TAG_NAMES.length,
      items: { type: 'string', enum: TAG_NAMES },
      operator: {
        typeMessage: 'expected an array of tag names',
        // In the documented order, whatever order the resource lists them in.
        parse: (tags: readonly TagName[]) => TAG_NAMES.filter((t) => tags.includes(t)),
      },
    },
    fields: {
      type: 'array',
      description:
        "Which of the schema's fields to write, tags not written as tags among them. Default all of them. audit_id is written either way, as is a cut tag's <tag>_full; a cut field's <field>_bytes goes with the field. Fewer fields make smaller points and writes.",
      'x-kubernetes-list-type': 'set',
      maxItems: SELECTABLE_FIELDS.length,
      items: { type: 'string', enum: SELECTABLE_FIELDS },
      operator: {
        typeMessage: 'expected an array of field and tag names',
        // In the documented order, whatever order the resource lists them in.
        parse: (fields: readonly SelectableField[]) =>
          SELECTABLE_FIELDS.filter((f) => fields.includes(f)),
      },
    },
    staticTags: {
      type: 'object',
      description:
        'Tags added to every point, e.g. cluster: prod-eu. A name is letters, digits, "_", "." and "-", starting with a letter or "_", and may not be a tag, field or column name of the audit schema.',
      maxProperties: 32,
      'x-kubernetes-validations': [
        {
          rule: `self.all(k, k.matches('${NAME_PATTERN}'))`,
          message: `a tag name is ${NAME_MESSAGE}`,
        },
        {
          rule: `self.all(k, !(k in [${RESERVED_TAG_NAMES.map((n) => `'${n}'`).join(', ')}]))`,
          message: 'a tag name may not be a tag or field of the audit schema',
        },
      ],
      additionalProperties: {
        type: 'string',
        // Line protocol cannot carry a line break in a tag.
        pattern: '^[^\\n\\r]+$',
        description: "The tag's value; not empty, without line breaks.",
        operator: {
          typeMessage: 'Invalid value: must be a non-empty string',
          parse: (value: string, path: string, check: FieldCheck) => {
            if (value === '') check.add(path, 'Invalid value: must be a non-empty string');
            else if (/[\n\r]/.test(value)) {
              check.add(path, 'Invalid value: line protocol cannot carry a line break in a tag');
            } else return value;
            return undefined;
          },
        },
      },
      operator: {
        typeMessage: 'expected a map of tag names to values',
        parse: (tags: Record<string, string>, path: string, check: FieldCheck) => {
          for (const key of Object.keys(tags)) {
            const at = `${path}[${quoted(key)}]`;
            if (!new RegExp(NAME_PATTERN).test(key)) {
              check.add(at, `Invalid value: a tag name is ${NAME_MESSAGE}`);
            } else if (RESERVED_TAG_NAMES.includes(key)) {
              check.add(at, `Invalid value: ${quoted(key)} is a tag or field of the audit schema`);
            }
          }
          return tags;
        },
      },
    },
  },
  operator: { typeMessage: 'expected an object' },
};

/** Defaults of the InfluxDB destination, as its schema declares them. */
export const INFLUX_DEFAULTS = Object.freeze({
  measurement: defaultOf('measurement') as string,
  batchSize: defaultOf('batchSize') as number,
  flushIntervalMs: parseDuration(defaultOf('flushInterval') as string) as number,
});

function defaultOf(field: string): unknown {
  return INFLUXDB_SCHEMA.properties?.[field]?.default;
}

/** A duration in milliseconds; `outOfBounds` says what is wrong with one that parses. */
function duration(
  text: string,
  path: string,
  check: FieldCheck,
  outOfBounds: (ms: number) => string | undefined,
): number | undefined {
  const ms = parseDuration(text);
  if (typeof ms !== 'number') {
    check.add(path, `Invalid value: ${quoted(text)}: ${ms.error}`);
    return undefined;
  }
  const problem = outOfBounds(ms);
  if (problem === undefined) return ms;
  check.add(path, `Invalid value: ${quoted(text)}: ${problem}`);
  return undefined;
}

/** The InfluxDB destination `value` (`spec.influxdb`) declares; see {@link INFLUXDB_SCHEMA}. */
export function influxDestination(
  value: unknown,
  path: string,
  check: FieldCheck,
): InfluxDestination | undefined {
  const spec = check.read(INFLUXDB_SCHEMA, value, path) as Record<string, unknown> | undefined;
  if (spec === undefined) return undefined;
  const tokenSecretRef = asSecretKeyRef(spec.tokenSecretRef);
  const fields = spec.fields as readonly SelectableField[] | undefined;
  return {
    url: spec.url as string,
    org: spec.org as string,
    bucket: spec.bucket as string,
    ...(tokenSecretRef === undefined ? {} : { tokenSecretRef }),
    measurement: spec.measurement as string,
    createBucket: (spec.createBucket as boolean | undefined) ?? false,
    retentionSeconds: Math.round(((spec.retention as number | undefined) ?? 0) / 1000),
    batchSize: spec.batchSize as number,
    flushIntervalMs: spec.flushInterval as number,
    tags: (spec.tags as readonly TagName[] | undefined) ?? TAG_NAMES,
    staticTags: (spec.staticTags as Record<string, string> | undefined) ?? {},
    ...(fields === undefined ? {} : { fields }),
  };
}
