/**
 * What a kind of destination declares, end to end: the `spec.<field>` it is named by, that field's
 * schema (the CRDs are generated from it), how it is read and checked, the Secret keys it needs,
 * how its batches are cut, and how its output is made. The kinds are registered in `kinds.ts`.
 */
import type { FieldCheck } from '../resource/check.ts';
import type { PrinterColumn, SchemaNode } from '../resource/schema.ts';
import type { ServerSlots } from './server-slots.ts';
import type { Output } from './types.ts';

/** A reference to one key of a Secret in the sink's own namespace (or the operator's, for AuditSink). */
export interface SecretKeyRef {
  readonly name: string;
  readonly key: string;
}

/** How the delivery loop cuts a destination's batches. */
export interface Batching {
  /** The most events in one write. */
  readonly size: number;
  /** How long a batch that is not full waits for more events; 0 writes at once. */
  readonly flushIntervalMs: number;
}

/** What an output gets from the composition root. */
export interface OutputContext {
  /** The sink's label (`<name>` or `<namespace>/<name>`), e.g. for the InfluxDB `sink` tag. */
  readonly label: string;
  /**
   * Reads the current value of a Secret key the destination references, on every call, so that a
   * rotated Secret applies at once; undefined while the Secret or key is missing.
   */
  readonly secret: (ref: SecretKeyRef) => string | undefined;
  /**
   * The process's requests in flight per server, shared by every output writing to one server
   * (InfluxDB outputs take a slot for each request; ADR 0008).
   */
  readonly serverSlots: ServerSlots;
}

/** One kind of destination, `D` being what a resource's `spec.<field>` becomes. */
export interface DestinationKind<D> {
  /** The schema of `spec.<field>`, in both CRDs. */
  readonly schema: SchemaNode;
  /**
   * When a resource names this destination, as CEL on `spec` and as the field path the error
   * message gives: `has(self.influxdb)`, `spec.influxdb`.
   */
  readonly named: { readonly rule: string; readonly path: string };
  /** Whether `spec.<field>` names this destination (a broken one counts: it is reported as such). */
  names(value: unknown): boolean;
  /**
   * The destination `value` (`spec.<field>`) declares, undefined when it names none or has a
   * problem; every problem is recorded in `check`, under `path`.
   */
  parse(value: unknown, path: string, check: FieldCheck): D | undefined;
  /** The Secret keys the destination reads. */
  secrets(destination: D): readonly SecretKeyRef[];
  /** How its batches are cut. */
  batching(destination: D): Batching;
  /** Its output. */
  create(destination: D, context: OutputContext): Output;
  /** Printer columns it adds to both CRDs, after Ready. */
  readonly columns?: readonly PrinterColumn[];
}
