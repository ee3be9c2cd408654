/** The InfluxDB output: schema and line protocol, the writer, and bucket creation. */
export { BucketCreatingOutput } from './bucket-output.ts';
export { BucketError, type BucketErrorCode, type BucketState, ensureBucket } from './buckets.ts';
export { InfluxRequestError } from './http.ts';
export {
  LineProtocolEncoder,
  MAX_FIELD_BYTES,
  type PointSchema,
  PointTimestamps,
} from './line-protocol.ts';
export { SCHEMA_VERSION, TAG_NAMES, type TagName } from './schema.ts';
export { INFLUX_DEFAULTS, type InfluxDestination } from './spec.ts';
export {
  INFLUX_OUTPUT_DEFAULTS,
  InfluxOutput,
  type InfluxOutputOptions,
  influxTarget,
  type TokenProvider,
} from './writer.ts';
