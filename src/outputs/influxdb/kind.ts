/** The InfluxDB destination kind (`spec.influxdb`): see {@link DestinationKind}. */
import type { DestinationKind } from '../destination.ts';
import { BucketCreatingOutput } from './bucket-output.ts';
import { INFLUXDB_SCHEMA, type InfluxDestination, influxDestination } from './spec.ts';
import { InfluxOutput } from './writer.ts';

/** Writes each sink's events to its InfluxDB bucket (SPEC 2.3). */
export const INFLUXDB: DestinationKind<InfluxDestination> = {
  schema: INFLUXDB_SCHEMA,
  named: { rule: 'has(self.influxdb)', path: 'spec.influxdb' },
  names: (value) => value !== undefined && value !== null,
  parse: influxDestination,
  secrets: (destination) =>
    destination.tokenSecretRef === undefined ? [] : [destination.tokenSecretRef],
  batching: (destination) => ({
    size: destination.batchSize,
    flushIntervalMs: destination.flushIntervalMs,
  }),
  create(destination, context) {
    const ref = destination.tokenSecretRef;
    const token = () => (ref === undefined ? undefined : context.secret(ref));
    // Writes and bucket checks to one server share its slots.
    const slots = context.serverSlots.for(destination.url);
    const output = new InfluxOutput(destination, context.label, token, { slots });
    return destination.createBucket
      ? new BucketCreatingOutput(output, destination, token, slots)
      : output;
  },
  columns: [
    {
      name: 'Bucket',
      type: 'string',
      description: 'The InfluxDB bucket the sink writes to.',
      jsonPath: '.spec.influxdb.bucket',
    },
  ],
};
