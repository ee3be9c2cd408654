/**
 * The kinds of destination a resource can name, one line each: the key is the `spec` field, the
 * value declares the kind end to end (schema, parsing, Secrets, batching, output). Every place
 * that handles destinations iterates this registry, so a new kind is a folder plus a line here.
 */
import type { Batching, DestinationKind, OutputContext, SecretKeyRef } from './destination.ts';
import { LINE_PROTOCOL_FILE_BATCHING } from './file/file-output.ts';
import { INFLUXDB } from './influxdb/kind.ts';
import type { Output, OutputKind } from './types.ts';
import { WEBHOOK } from './webhook/kind.ts';

/** Every destination kind, by its `spec` field, in the order their outputs are made. */
export const DESTINATION_KINDS = {
  influxdb: INFLUXDB,
  webhook: WEBHOOK,
} as const;

/** The name (and `spec` field) of a destination kind. */
export type DestinationName = keyof typeof DESTINATION_KINDS;

/** What a resource's `spec.<name>` becomes, for destination kind `K`. */
export type DestinationOf<K extends DestinationName> =
  (typeof DESTINATION_KINDS)[K] extends DestinationKind<infer D> ? D : never;

/** The destinations of one sink: at most one of each kind. */
export type Destinations = { readonly [K in DestinationName]?: DestinationOf<K> };

/** The destination kinds, in registry order. */
export const DESTINATION_NAMES = Object.keys(DESTINATION_KINDS) as readonly DestinationName[];

/** Each destination of `destinations` with its kind, in registry order. */
export function destinationsOf(destinations: Destinations): {
  readonly name: DestinationName;
  readonly kind: DestinationKind<unknown>;
  readonly destination: unknown;
}[] {
  return DESTINATION_NAMES.flatMap((name) => {
    const destination = destinations[name];
    return destination === undefined ? [] : [{ name, kind: DESTINATION_KINDS[name], destination }];
  });
}

/** The outputs of `destinations`, in registry order. */
export function createOutputs(destinations: Destinations, context: OutputContext): Output[] {
  return destinationsOf(destinations).map(({ kind, destination }) =>
    kind.create(destination, context),
  );
}

/** The Secret keys `destinations` read. */
export function destinationSecrets(destinations: Destinations): SecretKeyRef[] {
  return destinationsOf(destinations).flatMap(({ kind, destination }) => [
    ...kind.secrets(destination),
  ]);
}

/** How the batches of `destinations`' output of `kind` are cut. */
export function batchingFor(destinations: Destinations, kind: OutputKind): Batching {
  if (kind === 'file') return LINE_PROTOCOL_FILE_BATCHING;
  const found = destinationsOf(destinations).find((d) => d.name === kind);
  return found === undefined ? LINE_PROTOCOL_FILE_BATCHING : found.kind.batching(found.destination);
}
