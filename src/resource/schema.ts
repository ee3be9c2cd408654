/**
 * One declaration per field of a custom resource: the OpenAPI v3 keywords (and CEL rules) the
 * kube-apiserver enforces, which the CRDs are generated from, and beside them how the operator
 * reads the same field in process (standalone mode has no apiserver to check its files). Pure.
 */
import type { FieldCheck } from './check.ts';

/** The reasons a CEL rule may give (apiextensions.k8s.io/v1 `ValidationRule.reason`). */
export type RuleReason = 'FieldValueRequired' | 'FieldValueForbidden' | 'FieldValueInvalid';

/** One `x-kubernetes-validations` rule, with its in-process equivalent when there is one. */
export interface CelRule {
  readonly rule: string;
  readonly message: string;
  /** Where the error is reported, relative to the node (`.retention`). */
  readonly fieldPath?: string;
  readonly reason?: RuleReason;
  /**
   * In process only: whether the rule holds for the node's value as written. Absent when the
   * node's own `operator.parse` checks the same thing (with the value in its message).
   */
  readonly holds?: (self: Readonly<Record<string, unknown>>) => boolean;
}

/** How the operator reads a field in process; never written to a CRD. */
export interface InProcess {
  /** The message for a value of the wrong type, instead of `expected a string, got number`. */
  readonly typeMessage?: string;
  /** What the pattern means, for `Invalid value: "x": <patternMessage>`. */
  readonly patternMessage?: string;
  /**
   * Parses a value that has the node's type (a URL, a duration, PEM): its problems replace those
   * of the node's pattern and format, and what it returns is the value the operator uses.
   */
  readonly parse?: (value: never, path: string, check: FieldCheck) => unknown;
}

/**
 * The part of apiextensions.k8s.io/v1 `JSONSchemaProps` the resources use, plus {@link InProcess}
 * under `operator`.
 */
export interface SchemaNode {
  readonly type: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  readonly format?: string;
  readonly description?: string;
  readonly properties?: Readonly<Record<string, SchemaNode>>;
  readonly additionalProperties?: SchemaNode;
  readonly required?: readonly string[];
  readonly items?: SchemaNode;
  readonly enum?: readonly unknown[];
  readonly default?: unknown;
  readonly pattern?: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly maxProperties?: number;
  readonly 'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  readonly 'x-kubernetes-list-map-keys'?: readonly string[];
  readonly 'x-kubernetes-preserve-unknown-fields'?: boolean;
  readonly 'x-kubernetes-validations'?: readonly CelRule[];
  readonly operator?: InProcess;
}

/** A printer column of a CRD version (`kubectl get`). */
export interface PrinterColumn {
  readonly name: string;
  readonly type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  readonly description?: string;
  readonly jsonPath: string;
  /** 1: shown only with `-o wide`. */
  readonly priority?: number;
}

/** A node as the CRD carries it: the in-process parts left out. */
export function openApiOf(node: SchemaNode): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === 'operator') continue;
    if (key === 'properties') {
      out.properties = Object.fromEntries(
        Object.entries(value as Record<string, SchemaNode>).map(([k, v]) => [k, openApiOf(v)]),
      );
    } else if (key === 'items' || key === 'additionalProperties') {
      out[key] = openApiOf(value as SchemaNode);
    } else if (key === 'x-kubernetes-validations') {
      out[key] = (value as readonly CelRule[]).map(({ holds: _holds, ...rule }) => rule);
    } else out[key] = value;
  }
  return out;
}

/** `message` after the prefix a field error of `reason` gets (`Required value: ...`). */
export function reasonPrefix(reason: RuleReason | undefined): string {
  if (reason === 'FieldValueRequired') return 'Required value';
  if (reason === 'FieldValueForbidden') return 'Forbidden';
  return 'Invalid value';
}
