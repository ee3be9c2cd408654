/**
 * The InfluxDB schema of an audit event (SPEC 4.3, docs/influxdb-schema.md): its tags, its fields
 * and the names a static tag may not take. One declaration that the encoder, the validation of
 * `spec.influxdb`, the CRDs and the resource reference all read. Pure.
 */

/** Schema version (docs/influxdb-schema.md); bumped on any incompatible change. */
export const SCHEMA_VERSION = 2;

/** The tags the schema can write, in the documented order. */
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

/** One tag of the schema. */
export type TagName = (typeof TAG_NAMES)[number];

/** The string fields of the schema, apart from tags written as fields and `<tag>_full`. */
export const STRING_FIELDS = [
  'audit_id',
  'request_uri',
  'name',
  'user_groups',
  'impersonated_user',
  'source_ip',
  'user_agent',
  'reason',
  'annotations',
  'request_object',
  'response_object',
] as const;

/** One string field of {@link STRING_FIELDS}. */
export type StringFieldName = (typeof STRING_FIELDS)[number];

/** The fields of the schema in the documented order: the string fields and `latency_ms`. */
export const FIELD_NAMES = [
  ...STRING_FIELDS.slice(0, STRING_FIELDS.indexOf('user_agent') + 1),
  'latency_ms',
  ...STRING_FIELDS.slice(STRING_FIELDS.indexOf('user_agent') + 1),
] as const;

/** One field of {@link FIELD_NAMES}. */
export type FieldName = (typeof FIELD_NAMES)[number];

/**
 * What `spec.influxdb.fields` may name: the schema's fields and its tags, which are written as
 * fields when they are not written as tags.
 */
export const SELECTABLE_FIELDS = [...FIELD_NAMES, ...TAG_NAMES] as const;

/** One name of {@link SELECTABLE_FIELDS}. */
export type SelectableField = (typeof SELECTABLE_FIELDS)[number];

/**
 * Every field key a point can have (docs/influxdb-schema.md, "Fields"): the string fields, each
 * possibly with `<field>_bytes` beside it, and `latency_ms`.
 */
export const FIELD_KEYS: readonly string[] = Object.freeze([
  ...[...STRING_FIELDS, ...TAG_NAMES, ...TAG_NAMES.map((t) => `${t}_full`)].flatMap((key) => [
    key,
    `${key}_bytes`,
  ]),
  'latency_ms',
]);

/** The fields whose values reach InfluxDB's 1 MiB limit in practice: `<field>_bytes` beside them. */
const LARGE_FIELDS = ['request_object', 'response_object', 'annotations'] as const;

/** InfluxDB's own column names: a tag with one of them fails every write or every query. */
const INFLUX_COLUMNS = ['time', '_time', '_field', '_value', '_measurement', '_start', '_stop'];

/**
 * The names a static tag may not take: the schema's tags and fields, `<field>_bytes` of the
 * fields that are cut in practice, `<tag>_full` of every tag, and InfluxDB's own column names.
 */
export const RESERVED_TAG_NAMES: readonly string[] = Object.freeze([
  ...TAG_NAMES,
  ...FIELD_NAMES,
  ...LARGE_FIELDS.map((f) => `${f}_bytes`),
  ...TAG_NAMES.map((t) => `${t}_full`),
  ...INFLUX_COLUMNS,
]);
