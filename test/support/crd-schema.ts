/**
 * The CRDs and samples under crds/, read as data, and the part of the kube-apiserver's handling of
 * a custom resource that needs no apiserver: OpenAPI validation (type, enum, required, pattern,
 * bounds, set lists, unknown fields) and defaulting. CEL rules (x-kubernetes-validations) are not
 * evaluated here; the control-plane tests check them against a real kube-apiserver. Pure except
 * for reading files.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import type { CelRule, SchemaNode } from '../../src/resource/schema.ts';

/** The directory of the CRDs (generated from src/sinks/crds.ts by `npm run gen:crds`). */
export const CRD_DIR = new URL('../../crds/', import.meta.url);

/** The directory of the sample resources. */
export const SAMPLES_DIR = new URL('../../crds/samples/', import.meta.url);

/** One CEL rule as a CRD carries it: the product's {@link CelRule} without its in-process `holds`. */
export type ValidationRule = Omit<CelRule, 'holds'>;

/**
 * A schema node as read back from a CRD file: the product's {@link SchemaNode} without its
 * in-process parts (`operator`, a rule's `holds`). Only the type is shared; what the functions
 * below check of a CRD they check on their own, so a bug of the generator cannot hide in them.
 * `type` may be absent and `additionalProperties` a boolean: what is read is the file, which
 * the generator's type does not vouch for.
 */
export type Schema = Omit<
  SchemaNode,
  'type' | 'properties' | 'additionalProperties' | 'items' | 'x-kubernetes-validations' | 'operator'
> & {
  readonly type?: SchemaNode['type'];
  readonly properties?: Readonly<Record<string, Schema>>;
  readonly additionalProperties?: Schema | boolean;
  readonly items?: Schema;
  readonly 'x-kubernetes-validations'?: readonly ValidationRule[];
};

/** A printer column of a CRD version. */
export interface PrinterColumn {
  readonly name: string;
  readonly type: string;
  readonly jsonPath: string;
  readonly description?: string;
  readonly priority?: number;
}

/** The parts of a CustomResourceDefinition the tests read. */
export interface Crd {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string };
  readonly spec: {
    readonly group: string;
    readonly scope: 'Cluster' | 'Namespaced';
    readonly names: {
      readonly kind: string;
      readonly listKind: string;
      readonly plural: string;
      readonly singular: string;
      readonly shortNames?: readonly string[];
      readonly categories?: readonly string[];
    };
    readonly versions: readonly {
      readonly name: string;
      readonly served: boolean;
      readonly storage: boolean;
      readonly subresources?: { readonly status?: object };
      readonly additionalPrinterColumns?: readonly PrinterColumn[];
      readonly schema: { readonly openAPIV3Schema: Schema };
    }[];
  };
}

/** Every YAML document of a file, in order. */
export function readDocuments(url: URL): unknown[] {
  return parseAllDocuments(readFileSync(url, 'utf8')).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`${url.pathname}: ${doc.errors[0]?.message}`);
    return doc.toJS() as unknown;
  });
}

/** The CRD of `kind`, read from crds/<plural>.kube-audit.dev.yaml. */
export function readCrd(kind: 'AuditSink' | 'AuditPipeline'): Crd {
  const plural = kind === 'AuditSink' ? 'auditsinks' : 'auditpipelines';
  const [crd] = readDocuments(new URL(`${plural}.kube-audit.dev.yaml`, CRD_DIR));
  return crd as Crd;
}

/** The openAPIV3Schema of the single version of `kind`. */
export function schemaOf(kind: 'AuditSink' | 'AuditPipeline'): Schema {
  const version = readCrd(kind).spec.versions[0];
  if (version === undefined) throw new Error(`${kind}: the CRD has no version`);
  return version.schema.openAPIV3Schema;
}

/** The YAML files of crds/samples/, sorted. */
export function sampleFiles(): string[] {
  return readdirSync(SAMPLES_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .sort();
}

/** Every document of every sample, with the file it comes from. */
export function samples(): { file: string; resource: Record<string, unknown> }[] {
  return sampleFiles().flatMap((file) =>
    readDocuments(new URL(file, SAMPLES_DIR)).map((resource) => ({
      file,
      resource: resource as Record<string, unknown>,
    })),
  );
}

/** One schema violation, in the apiserver's `path: detail` form. */
export interface SchemaError {
  /** `spec.policy.rules[0].level`; empty for the root. */
  readonly path: string;
  readonly kind: 'invalid' | 'unknown-field';
  readonly detail: string;
}

/**
 * Validates `value` against `schema` as the apiserver's OpenAPI validation and strict field
 * validation do (root `metadata` excepted: the apiserver validates ObjectMeta itself). Nulls count
 * as absent: the apiserver prunes them from fields that are not nullable.
 */
export function validate(schema: Schema, value: unknown, path = ''): SchemaError[] {
  const errors: SchemaError[] = [];
  const at = (child: string) => (path === '' ? child : `${path}.${child}`);
  const invalid = (detail: string) => errors.push({ path, kind: 'invalid', detail });
  if (value === null || value === undefined) return errors;
  if (schema.enum !== undefined && !schema.enum.includes(value)) {
    invalid(`Unsupported value: ${JSON.stringify(value)}`);
  }
  switch (schema.type) {
    case 'object': {
      if (typeof value !== 'object' || Array.isArray(value)) {
        invalid('must be of type object');
        break;
      }
      const record = value as Record<string, unknown>;
      for (const key of schema.required ?? []) {
        if (record[key] === undefined || record[key] === null) {
          errors.push({ path: at(key), kind: 'invalid', detail: 'Required value' });
        }
      }
      const keys = Object.keys(record);
      if (schema.maxProperties !== undefined && keys.length > schema.maxProperties) {
        invalid(`must have at most ${schema.maxProperties} properties`);
      }
      for (const key of keys) {
        const property = schema.properties?.[key];
        if (property !== undefined) errors.push(...validate(property, record[key], at(key)));
        else if (typeof schema.additionalProperties === 'object') {
          errors.push(...validate(schema.additionalProperties, record[key], at(key)));
        } else if (
          schema['x-kubernetes-preserve-unknown-fields'] !== true &&
          !(path === '' && key === 'metadata') &&
          schema.properties !== undefined
        ) {
          errors.push({ path: at(key), kind: 'unknown-field', detail: 'unknown field' });
        }
      }
      break;
    }
    case 'array': {
      if (!Array.isArray(value)) {
        invalid('must be of type array');
        break;
      }
      if (schema.minItems !== undefined && value.length < schema.minItems) {
        invalid(`should have at least ${schema.minItems} items`);
      }
      if (schema.maxItems !== undefined && value.length > schema.maxItems) {
        invalid(`should have at most ${schema.maxItems} items`);
      }
      value.forEach((item, i) => {
        const itemPath = `${path}[${i}]`;
        if (schema.items !== undefined) errors.push(...validate(schema.items, item, itemPath));
        if (
          schema['x-kubernetes-list-type'] === 'set' &&
          value.slice(0, i).some((earlier) => JSON.stringify(earlier) === JSON.stringify(item))
        ) {
          errors.push({ path: itemPath, kind: 'invalid', detail: 'Duplicate value' });
        }
      });
      break;
    }
    case 'string': {
      if (typeof value !== 'string') {
        invalid('must be of type string');
        break;
      }
      // OpenAPI lengths count characters (Go: runes), not UTF-16 units.
      const length = [...value].length;
      if (schema.minLength !== undefined && length < schema.minLength) {
        invalid(`should be at least ${schema.minLength} chars long`);
      }
      if (schema.maxLength !== undefined && length > schema.maxLength) {
        invalid(`may not be more than ${schema.maxLength} chars long`);
      }
      if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) {
        invalid(`should match '${schema.pattern}'`);
      }
      // Go's base64.StdEncoding: padded standard alphabet.
      if (
        schema.format === 'byte' &&
        !/^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}[A-Za-z0-9+/=]=)?$/.test(value)
      ) {
        invalid('must be of type byte');
      }
      break;
    }
    case 'integer':
    case 'number': {
      if (typeof value !== 'number' || (schema.type === 'integer' && !Number.isInteger(value))) {
        invalid(`must be of type ${schema.type}`);
        break;
      }
      if (schema.minimum !== undefined && value < schema.minimum) {
        invalid(`should be greater than or equal to ${schema.minimum}`);
      }
      if (schema.maximum !== undefined && value > schema.maximum) {
        invalid(`should be less than or equal to ${schema.maximum}`);
      }
      break;
    }
    case 'boolean':
      if (typeof value !== 'boolean') invalid('must be of type boolean');
      break;
    case undefined:
      break;
  }
  return errors;
}

/**
 * A copy of `value` with the schema's defaults applied as the apiserver applies them: a field with
 * a default is set when it is absent and its parent object is present.
 */
export function withDefaults(schema: Schema, value: unknown): unknown {
  if (Array.isArray(value)) {
    const items = schema.items;
    return items === undefined ? value : value.map((item) => withDefaults(items, item));
  }
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  for (const [key, property] of Object.entries(schema.properties ?? {})) {
    if ((out[key] === undefined || out[key] === null) && property.default !== undefined) {
      out[key] = structuredClone(property.default);
    }
    if (out[key] !== undefined) out[key] = withDefaults(property, out[key]);
  }
  return out;
}

/** Calls `visit` on every schema node, with its path (`.spec.policy`, `.spec.policy.rules[*]`). */
export function walkSchema(
  schema: Schema,
  visit: (node: Schema, path: string) => void,
  path = '',
): void {
  visit(schema, path);
  for (const [key, property] of Object.entries(schema.properties ?? {})) {
    walkSchema(property, visit, `${path}.${key}`);
  }
  if (schema.items !== undefined) walkSchema(schema.items, visit, `${path}[*]`);
  if (typeof schema.additionalProperties === 'object') {
    walkSchema(schema.additionalProperties, visit, `${path}.*`);
  }
}

/** The schema node at a dotted path of property names (`spec.influxdb`), if there is one. */
export function nodeAt(schema: Schema, path: string): Schema | undefined {
  let node: Schema | undefined = schema;
  for (const key of path.split('.')) node = node?.properties?.[key];
  return node;
}
